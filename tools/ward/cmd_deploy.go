package main

import (
	"context"
	"errors"
	"flag"

	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/tools/image"
	"github.com/wardml/ward/tools/manifest"
	"github.com/wardml/ward/tools/registry"
)

// imageVerifier returns the signature check of ward deploy and ward
// agent: image.ManifestVerifier with WARD_VERIFY_KEY and the registry
// settings.
func imageVerifier(app *App) (manifest.Verifier, error) {
	pub, err := verifyKey(app, "")
	if err != nil {
		return nil, err
	}
	client, err := registry.FromConfig(app.Config)
	if err != nil {
		return nil, err
	}
	return image.ManifestVerifier(client, pub), nil
}

func init() {
	var f manifestFlags
	register(&Command{
		Name:    "deploy",
		Summary: "Deploy a signed image to a hospital: one commit in the manifest repo",
		Usage:   "deploy --hospital ID --image REPOSITORY@sha256:DIGEST [--force] [--dry-run] [--output json]",
		Help: `Verifies the image's signature (WARD_VERIFY_KEY) first: an unsigned image,
a signature by another key, a digest that does not match, an image of
another hospital, or a reference by tag is refused. Then it pins the image
by digest in hospitals/<id>/ (kustomization.yaml and release.yaml) as one
commit, "deploy(<id>): <version>" with the trailers Ward-Hospital,
Ward-Version, Ward-Digest and Ward-Previous-Digest, and pushes it. When
another deploy landed first, it fetches and tries again (never a force
push).

A digest that is live already changes nothing (exit 0). A digest that was
rolled back (by ward rollback or by a git revert of its deploy) is refused
unless --force, so a scheduled run does not undo a rollback.

Exit codes: 0 deployed or nothing to do; 1 refused (unverified image,
rolled-back digest, invalid manifest content); 2 usage, a reference by
tag, no verification key, an unreachable or uninitialized manifest repo.`,
		Example: "ward deploy --hospital st-olaf --image registry.example/ward/st-olaf@sha256:4b1d...",
		Output:  true,
		Flags: func(fs *flag.FlagSet) {
			f.bind(fs, true)
			fs.StringVar(&f.image, "image", "", "the image, REPOSITORY@sha256:DIGEST as ward package prints it")
			fs.BoolVar(&f.force, "force", false, "deploy a digest that was rolled back")
		},
		Run: func(ctx context.Context, app *App, _ []string) error {
			if f.hospital == "" || f.image == "" {
				return exit.With(exit.Config, errors.New("want --hospital ID and --image REPOSITORY@sha256:DIGEST"))
			}
			// A reference by tag is refused before anything else.
			if _, err := manifest.ParseImageRef(f.image); err != nil {
				return manifestError(err)
			}
			verify, err := imageVerifier(app)
			if err != nil {
				return exit.With(exit.Config, err)
			}
			r, err := openManifest(app, &f, manifest.WithVerifier(verify))
			if err != nil {
				return err
			}
			res, err := r.Deploy(ctx, manifest.Deployment{Hospital: f.hospital, Image: f.image, Force: f.force, DryRun: f.dryRun})
			if err != nil {
				return manifestError(err)
			}
			return printResult(app, r, res)
		},
	})
}
