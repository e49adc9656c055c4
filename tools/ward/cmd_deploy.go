package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

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

// deployVerifier is imageVerifier that also reads the data window of the
// image's model, which orders it against the live one (no downgrade
// without --allow-downgrade).
func deployVerifier(app *App) (manifest.Verifier, error) {
	verify, err := imageVerifier(app)
	if err != nil {
		return nil, err
	}
	client, err := registry.FromConfig(app.Config)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, ref string) (manifest.Image, error) {
		img, err := verify(ctx, ref)
		if err != nil {
			return img, err
		}
		d, err := client.ParseDigest(img.Ref)
		if err != nil {
			return img, err
		}
		data, err := image.ReadModel(ctx, d, client.Remote(ctx)...)
		if err != nil {
			return img, err
		}
		if img.Window, err = manifest.ModelWindow(data); err != nil {
			return img, fmt.Errorf("%s: %w", ref, err)
		}
		return img, nil
	}, nil
}

// deployCmd is one command line of ward deploy: its flags.
type deployCmd struct {
	f            manifestFlags
	images       string
	skipRejected bool
}

func init() {
	register(&Command{
		Name:    "deploy",
		Summary: "Deploy a signed image to a hospital: one commit in the manifest repo",
		Usage:   "deploy (--hospital ID --image REPOSITORY@sha256:DIGEST | --images FILE) [--expect-digest DIGEST] [--allow-downgrade] [--force] [--skip-rejected] [--dry-run] [--output json]",
		Help: `Verifies the image's signature (WARD_VERIFY_KEY) first: an unsigned image,
a signature by another key, a digest that does not match, an image of
another hospital, or a reference by tag is refused. Then it pins the image
by digest in hospitals/<id>/ (kustomization.yaml and release.yaml) as one
commit, "deploy(<id>): <version>" with the trailers Ward-Hospital,
Ward-Version, Ward-Digest and Ward-Previous-Digest, and pushes it. When
another deploy of another hospital landed first, it fetches and tries
again (never a force push).

It replaces only the release it read first (or --expect-digest DIGEST,
"none" for a hospital without one): when the hospital's release.yaml holds
another digest, at the start or after a fetch, nothing is committed and the
error names the digest found, so two racing deploys never lose an update.
A model older than the live one (its data window, then its version) is
refused unless --allow-downgrade, which records a Ward-Allow-Downgrade
trailer in the commit (signed like every commit: the agents follow it).
With a trust file (base/trust.txt or WARD_MANIFEST_TRUST), the manifest's
history must verify first, and WARD_MANIFEST_SIGN_KEY must be a listed key.

A digest that is live already changes nothing (exit 0). A digest that was
rolled back (by ward rollback or by a git revert of its deploy) is refused
unless --force, so a scheduled run does not undo a rollback.

--images FILE deploys every image that ward package --output json wrote to
FILE (a scheduled pipeline: ward package --all ... --output json > FILE);
with --skip-rejected, a digest that was rolled back is reported and
skipped instead of failing the run (the same inputs give the same digest,
so the next scheduled run would otherwise fail until new data arrives).

Exit codes: 0 deployed or nothing to do; 1 refused (unverified image,
rolled-back digest, invalid manifest content, another release than
expected, a downgrade, an untrusted manifest history); 2 usage, a reference by
tag, no verification key, an unreachable or uninitialized manifest repo.`,
		Example: `ward deploy --hospital st-olaf --image registry.example/ward/st-olaf@sha256:4b1d...
ward package --all --models models --output json > images.json && ward deploy --images images.json --skip-rejected`,
		Output: true,
		New:    func() Runner { return &deployCmd{} },
	})
}

func (cmd *deployCmd) Flags(fs *flag.FlagSet) {
	cmd.f.bind(fs, true)
	fs.StringVar(&cmd.f.image, "image", "", "the image, REPOSITORY@sha256:DIGEST as ward package prints it")
	fs.BoolVar(&cmd.f.force, "force", false, "deploy a digest that was rolled back")
	fs.StringVar(&cmd.f.expect, "expect-digest", "", "commit only if the hospital's release holds `DIGEST` (\"none\": no release); default: the one live when the deploy starts")
	fs.BoolVar(&cmd.f.allowDowngrade, "allow-downgrade", false, "deploy a model older than the live one (a signed Ward-Allow-Downgrade trailer)")
	fs.StringVar(&cmd.images, "images", "", "deploy every image of `FILE`, the output of ward package --output json")
	fs.BoolVar(&cmd.skipRejected, "skip-rejected", false, "report and skip a digest that was rolled back, instead of failing")
}

func (cmd *deployCmd) Run(ctx context.Context, app *App, _ []string) error {
	if cmd.images != "" {
		return deployImages(ctx, app, &cmd.f, cmd.images, cmd.skipRejected)
	}
	if cmd.f.hospital == "" || cmd.f.image == "" {
		return exit.With(exit.Config, errors.New("want --hospital ID and --image REPOSITORY@sha256:DIGEST, or --images FILE"))
	}
	// A reference by tag is refused before anything else.
	if _, err := manifest.ParseImageRef(cmd.f.image); err != nil {
		return manifestError(err)
	}
	verify, err := deployVerifier(app)
	if err != nil {
		return exit.With(exit.Config, err)
	}
	r, err := openManifest(app, &cmd.f, manifest.WithVerifier(verify))
	if err != nil {
		return err
	}
	res, err := r.Deploy(ctx, manifest.Deployment{Hospital: cmd.f.hospital, Image: cmd.f.image, Force: cmd.f.force, DryRun: cmd.f.dryRun,
		ExpectDigest: cmd.f.expect, AllowDowngrade: cmd.f.allowDowngrade})
	if cmd.skipRejected && errors.Is(err, manifest.ErrRejected) {
		app.Log.Warn("deploy skipped: the digest was rolled back", "hospital", cmd.f.hospital, "image", cmd.f.image, "error", err)
		fmt.Fprintf(app.Stdout, "deploy %s: skipped: %v\n", cmd.f.hospital, err)
		return nil
	}
	if err != nil {
		return manifestError(err)
	}
	return printResult(app, r, res)
}

// deployImages deploys every image that ward package wrote to file
// (image.DeployAll), and prints what it did.
func deployImages(ctx context.Context, app *App, f *manifestFlags, file string, skipRejected bool) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return exit.With(exit.Config, fmt.Errorf("--images: %w", err))
	}
	packaged, err := image.ParseLines(b)
	if err != nil {
		return exit.With(exit.Config, fmt.Errorf("--images %s: not the output of ward package --output json: %v", file, err))
	}
	if f.expect != "" {
		return exit.With(exit.Config, errors.New("--expect-digest names one hospital's release: use it with --hospital and --image, not --images"))
	}
	verify, err := deployVerifier(app)
	if err != nil {
		return exit.With(exit.Config, err)
	}
	r, err := openManifest(app, f, manifest.WithVerifier(verify))
	if err != nil {
		return err
	}
	out, derr := image.DeployAll(ctx, r, packaged, image.Batch{Hospital: f.hospital, Force: f.force, DryRun: f.dryRun,
		AllowDowngrade: f.allowDowngrade, SkipRejected: skipRejected, Log: app.Log})
	if err := app.Print(out, func(w io.Writer) {
		for _, o := range out {
			switch {
			case o.Result != nil && o.Result.Status == manifest.StatusUnchanged:
				fmt.Fprintf(w, "deploy %s: nothing to do: %s\n", o.Hospital, o.Result.Reason)
			case o.Result != nil:
				fmt.Fprintf(w, "deploy %s: %s; pushed %s\n", o.Hospital, change(o.Result), shortList(o.Result.Commits))
			default:
				fmt.Fprintf(w, "deploy %s: %s: %s\n", o.Hospital, o.Outcome, o.Error)
			}
		}
	}); err != nil {
		return err
	}
	if errors.Is(derr, image.ErrDeployFailed) {
		return exit.With(exit.Failure, derr)
	}
	return derr
}
