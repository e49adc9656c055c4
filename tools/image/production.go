package image

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"log/slog"

	"github.com/wardml/ward/models"
	"github.com/wardml/ward/tools/manifest"
	"github.com/wardml/ward/tools/registry"
)

// The kinds of error of Production and DeployedModel beside those of Pull,
// so that the CLI can map each to its exit code.
var (
	// ErrManifest: the manifest repo could not be read; the error holds
	// the manifest's own kind too (manifest.ErrUnreachable, ...).
	ErrManifest = errors.New("manifest repo not read")
	// ErrUnverified: the image's signature did not check; the error holds
	// signing's kind (signing.ErrUnsigned, ...) or ErrTampered.
	ErrUnverified = errors.New("image not verified")
)

// DeployedModel reads the model of the deployed image ref
// (REPOSITORY@sha256:DIGEST): its signature checked with pub first (an
// ErrUnverified), when pub is not nil, then pulled (ReadModel) and decoded.
// Training gates against such a model, and feedback scores it.
func DeployedModel(ctx context.Context, client *registry.Client, pub *ecdsa.PublicKey, ref string) (*models.Artifact, error) {
	d, err := client.ParseDigest(ref)
	if err != nil {
		return nil, err
	}
	if pub != nil {
		if _, err := Verify(ctx, d, pub, client.Remote(ctx)...); err != nil {
			return nil, &Error{Kind: ErrUnverified, Err: err}
		}
	}
	data, err := ReadModel(ctx, d, client.Remote(ctx)...)
	if err != nil {
		return nil, err
	}
	a, err := models.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d, err)
	}
	return a, nil
}

// ProductionOption changes how Production reads.
type ProductionOption func(*production)

type production struct {
	pub *ecdsa.PublicKey
	log *slog.Logger
}

// VerifiedBy checks each image's signature with pub before its model is
// read; without it the models are read as they are, with a warning.
func VerifiedBy(pub *ecdsa.PublicKey) ProductionOption {
	return func(p *production) { p.pub = pub }
}

// ProductionLog logs what Production reads, and the warning of an image
// read without verifying it, to l.
func ProductionLog(l *slog.Logger) ProductionOption {
	return func(p *production) { p.log = l }
}

// Production reads the model in production of each hospital: the one in
// the image that its folder of the manifest repo pins (DeployedModel). A
// hospital without a release has none. It is the gate's baseline: ward
// train and the demo call it before training.
func Production(ctx context.Context, repo *manifest.Repo, client *registry.Client, hospitals []string, opts ...ProductionOption) ([]*models.Artifact, error) {
	p := production{log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&p)
	}
	follow := repo.Follow()
	var out []*models.Artifact
	for _, id := range hospitals {
		head, err := follow.Read(ctx, id, "")
		if err != nil {
			return nil, &Error{Kind: ErrManifest, Err: fmt.Errorf("the model in production of %s: %w", id, err)}
		}
		if head.Release == nil {
			continue
		}
		ref, err := client.ParseDigest(head.Release.Image)
		if err != nil {
			return nil, err
		}
		if p.pub == nil {
			p.log.Warn("the model in production is read without verifying its image: set WARD_VERIFY_KEY", "ward.hospital", id, "ward.image", ref.String())
		}
		a, err := DeployedModel(ctx, client, p.pub, ref.String())
		if errors.Is(err, ErrUnverified) {
			return nil, &Error{Kind: ErrUnverified, Err: fmt.Errorf("the model in production of %s: %w", id, err)}
		}
		if err != nil {
			return nil, err
		}
		p.log.Info("gate baseline: the model in production", "ward.hospital", id, "ward.version", a.Version, "ward.image", ref.String())
		out = append(out, a)
	}
	return out, nil
}
