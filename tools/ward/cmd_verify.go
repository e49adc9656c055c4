package main

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"

	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/tools/image"
	"github.com/wardml/ward/tools/registry"
	"github.com/wardml/ward/tools/signing"
)

// verifyCmd is one command line of ward verify: its flags.
type verifyCmd struct {
	key string
}

func init() {
	register(&Command{
		Name:    "verify",
		Summary: "Check an image's signatures before it is deployed",
		Usage:   "verify REF@sha256:DIGEST [--key PUB] [--output json]",
		Help: `Checks that the image's manifest hashes to its digest, and that it
carries a signature by the public key (--key, else WARD_VERIFY_KEY) that
names this digest (and this repository, where the signature names one), in
either of cosign's formats: the legacy sha256-<hex>.sig tag (cosign v2), or a
Sigstore bundle (v0.3, a DSSE envelope of an in-toto statement, as cosign v3
writes by default) among its OCI 1.1 referrers, from the referrers API or
the sha256-<hex> fallback tag. A signed index covers the platform manifests
it pins (cosign sign without --recursive); each must hash to its digest.
Key-based, no transparency log, as cosign verify --key --insecure-ignore-tlog.
A reference by tag is refused: deploys pin digests. Exit code 1 when the
image fails verification, 2 for usage, a missing key or an unreachable
registry.`,
		Example: "ward verify registry.example.org/ward/st-olaf@sha256:4f1c... --key ward.pub",
		Output:  true,
		New:     func() Runner { return &verifyCmd{} },
	})
}

func (cmd *verifyCmd) Flags(fs *flag.FlagSet) {
	fs.StringVar(&cmd.key, "key", "", "public key (PEM) the signatures must verify with; default WARD_VERIFY_KEY")
}

func (cmd *verifyCmd) Run(ctx context.Context, app *App, args []string) error {
	if len(args) != 1 {
		return exit.With(exit.Config, errors.New("name one image: ward verify REF@sha256:DIGEST"))
	}
	client, err := registry.FromConfig(app.Config)
	if err != nil {
		return exit.With(exit.Config, err)
	}
	ref, err := client.ParseDigest(args[0])
	if err != nil {
		return exit.With(exit.Config, err)
	}
	pub, err := verifyKey(app, cmd.key)
	if err != nil {
		return err
	}
	v, err := image.Verify(ctx, ref, pub, client.Remote(ctx)...)
	if err != nil {
		return verifyError(err)
	}
	app.Log.Info("verified", "image", ref.String(), "hospital", v.Hospital, "version", v.Version, "event.outcome", "success")
	res := struct {
		Image       string             `json:"image"`
		Hospital    string             `json:"hospital,omitempty"`
		Version     string             `json:"version,omitempty"`
		Family      string             `json:"family,omitempty"`
		Metrics     map[string]float64 `json:"metrics,omitempty"`
		Platforms   map[string]string  `json:"platforms"`
		Annotations map[string]string  `json:"annotations,omitempty"`
		Key         string             `json:"key"`
	}{ref.String(), v.Hospital, v.Version, v.Family, v.Metrics, map[string]string{}, v.Annotations, signing.Fingerprint(pub)}
	for p, d := range v.Platforms {
		res.Platforms[p] = d.String()
	}
	return app.Print(res, func(w io.Writer) {
		fmt.Fprintf(w, "verified %s\n  signed by key %s\n", res.Image, res.Key)
		if v.Hospital != "" {
			fmt.Fprintf(w, "  hospital %s, model %s (%s)\n", v.Hospital, v.Version, v.Family)
		}
		for _, p := range slices.Sorted(maps.Keys(res.Platforms)) {
			fmt.Fprintf(w, "  %-12s %s\n", p, res.Platforms[p])
		}
	})
}

// verifyKey reads the public key that signatures must verify with: the
// given file, else WARD_VERIFY_KEY.
func verifyKey(app *App, file string) (*ecdsa.PublicKey, error) {
	if file == "" {
		file = app.Config.Get("verify_key")
	}
	if file == "" {
		return nil, exit.With(exit.Config, errors.New("no public key: pass --key PUB or set WARD_VERIFY_KEY"))
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, exit.With(exit.Config, fmt.Errorf("public key: %w", err))
	}
	pub, err := signing.ParsePublicKey(b)
	if err != nil {
		return nil, exit.With(exit.Config, fmt.Errorf("public key %s: %w", file, err))
	}
	return pub, nil
}

// verifyError maps a failed verification to its exit code: 1 when the image
// is not what it should be, 2 when the registry could not be asked.
func verifyError(err error) error {
	if errors.Is(err, signing.ErrUnsigned) || errors.Is(err, signing.ErrWrongKey) ||
		errors.Is(err, signing.ErrMismatch) || errors.Is(err, image.ErrTampered) {
		return exit.With(exit.Failure, err)
	}
	return exit.With(exit.Config, err)
}
