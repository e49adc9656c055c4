package image

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	orasremote "oras.land/oras-go/v2/registry/remote"

	"github.com/wardml/ward/tools/registry"
	"github.com/wardml/ward/tools/signing"
)

// SignatureFormat is which of cosign's formats Publish signs in.
type SignatureFormat string

const (
	// SignLegacy is the sha256-<hex>.sig tag: cosign v2's default, what
	// Flux and older Kyverno read.
	SignLegacy SignatureFormat = "legacy"
	// SignBundle is a Sigstore bundle referrer: cosign v3's default.
	SignBundle SignatureFormat = "bundle"
	// SignBoth writes both, so that every verifier accepts the image.
	SignBoth SignatureFormat = "both"
)

// ParseSignatureFormat reads legacy, bundle or both.
func ParseSignatureFormat(s string) (SignatureFormat, error) {
	switch f := SignatureFormat(s); f {
	case SignLegacy, SignBundle, SignBoth:
		return f, nil
	}
	return "", fmt.Errorf("signature format %q: want legacy (cosign v2's .sig tag), bundle (cosign v3's Sigstore bundle referrer) or both", s)
}

// WithSignatureFormat chooses the formats of WithSigner's signatures.
func WithSignatureFormat(f SignatureFormat) PublishOption {
	return func(p *Publisher) { p.format = f }
}

// WithRegistry sets the client that reaches the registry: its rules for
// go-containerregistry (images, legacy signatures) and for oras-go
// (referrers). It replaces WithRemote; with WithRemote alone, referrers go
// through a default client (the Docker config's credentials).
func WithRegistry(c *registry.Client) PublishOption {
	return func(p *Publisher) {
		p.client = c
		p.remote = append(p.remote, c.Remote(context.Background())...)
	}
}

// sign signs the index and each platform of out in the legacy format
// (pushed here) and returns the bundles to attach. A bundle by this key
// already there is kept (and recorded in out.Attached), not signed again,
// so that a second run with the same inputs uploads nothing (ECDSA
// signatures differ every time).
func (p *Publisher) sign(ctx context.Context, out *Published, img *Image) ([]artifact, error) {
	type target struct {
		ref  name.Digest
		desc v1.Descriptor
	}
	idx, err := descriptorOf(img.Index)
	if err != nil {
		return nil, err
	}
	targets := []target{{out.Ref, idx}}
	for plat, pi := range img.Platforms {
		d, err := descriptorOf(pi)
		if err != nil {
			return nil, err
		}
		targets = append(targets, target{out.Ref.Context().Digest(out.Platforms[plat].String()), d})
	}
	var bundles []artifact
	for _, t := range targets {
		if p.format != SignBundle {
			if err := signing.Sign(ctx, t.ref, p.key, p.remote...); err != nil {
				return nil, err
			}
		}
		if p.format == SignLegacy {
			continue
		}
		if d, ok, err := signing.FindBundle(ctx, t.ref, &p.key.PublicKey, p.remote...); err != nil {
			return nil, fmt.Errorf("sign %s: %w", t.ref, err)
		} else if ok {
			out.Attached = append(out.Attached, Attachment{ArtifactType: signing.BundleMediaType, Subject: t.desc.Digest, Digest: d})
			continue
		}
		raw, err := signing.NewBundle(t.ref, p.key)
		if err != nil {
			return nil, err
		}
		bundles = append(bundles, bundleArtifact(t.desc, raw, img.created))
	}
	return bundles, nil
}

// orasRepository is the run's oras-go client of repo: one per repository,
// so that its referrers capability is probed once and its fallback-index
// updates are merged.
func (p *Publisher) orasRepository(repo name.Repository) (*orasremote.Repository, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r, ok := p.oras[repo]; ok {
		return r, nil
	}
	c := p.client
	if c == nil {
		c = registry.NewClient()
	}
	r, err := c.ORAS(repo)
	if err != nil {
		return nil, err
	}
	p.oras[repo] = r
	return r, nil
}
