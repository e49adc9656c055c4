package signing

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Why a verification fails; errors.Is tells them apart.
var (
	// ErrUnsigned: the image has no signature at all.
	ErrUnsigned = errors.New("not signed")
	// ErrWrongKey: it has signatures, none by this key.
	ErrWrongKey = errors.New("not signed by this key")
	// ErrMismatch: a signature by this key covers another image: another
	// digest or another repository.
	ErrMismatch = errors.New("the signed payload is for another image")
)

// Verify checks that the manifest ref points at carries a signature by pub
// that names exactly ref (its digest, and its repository where the
// signature names one), in either of cosign's formats: the legacy
// sha256-<hex>.sig tag (cosign v2's default), or a Sigstore bundle among
// its OCI 1.1 referrers (cosign v3's default; from the referrers API, else
// its sha256-<hex> fallback tag). As cosign verify --key
// --insecure-ignore-tlog: key-based, no transparency log.
func Verify(ctx context.Context, ref name.Digest, pub *ecdsa.PublicKey, opts ...remote.Option) error {
	opts = append(slices.Clone(opts), remote.WithContext(ctx))
	var f findings

	tag := SignatureTag(ref)
	img, err := remote.Image(tag, opts...)
	switch {
	case isNotFound(err):
	case err != nil:
		return fmt.Errorf("%s: read signatures %s: %w", ref, tag, err)
	default:
		sigs, err := signatures(img)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", ref, tag.TagStr(), err)
		}
		f.legacyTag = true
		for i, s := range sigs {
			f.count++
			if !s.verifies(pub) {
				continue
			}
			if err := s.matches(ref); err != nil {
				f.mismatch = fmt.Errorf("signature %d of %s: %w", i+1, tag.TagStr(), err)
				continue
			}
			return nil
		}
	}

	found, err := verifyBundles(ref, pub, opts, &f)
	if found != (v1.Hash{}) || err != nil {
		return err
	}
	return f.err(ref, pub)
}

// findings collects what the signatures of an image said, for the error.
type findings struct {
	legacyTag bool
	count     int
	mismatch  error
	// skipped are referrers that could not be read as a bundle, and why.
	skipped []string
}

func (f *findings) err(ref name.Digest, pub *ecdsa.PublicKey) error {
	var notes string
	if len(f.skipped) > 0 {
		notes = "; skipped " + strings.Join(f.skipped, "; ")
	}
	switch {
	case f.mismatch != nil:
		return fmt.Errorf("%s: %w: %w%s", ref, ErrMismatch, f.mismatch, notes)
	case f.count == 0 && !f.legacyTag:
		return fmt.Errorf("%s: %w: there is no %s and no Sigstore bundle among its referrers (sign it with ward package, or cosign sign --key)%s", ref, ErrUnsigned, SignatureTag(ref).TagStr(), notes)
	case f.count == 0:
		return fmt.Errorf("%s: %w: %s holds no signature layer and no Sigstore bundle is among its referrers%s", ref, ErrUnsigned, SignatureTag(ref).TagStr(), notes)
	}
	return fmt.Errorf("%s: %w: none of its %d signature(s) verifies with public key %s%s", ref, ErrWrongKey, f.count, Fingerprint(pub), notes)
}

// verifyBundles looks for a bundle by pub that signs ref among its
// referrers. A referrer that is not a readable bundle (a registry or
// someone with push access can list anything) is skipped and reported; an
// error is returned only when the registry cannot be asked at all. It
// returns the digest of the referrer that holds the bundle.
func verifyBundles(ref name.Digest, pub *ecdsa.PublicKey, opts []remote.Option, f *findings) (v1.Hash, error) {
	idx, err := remote.Referrers(ref, opts...)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("%s: read its referrers (for Sigstore bundles): %w", ref, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("%s: its referrers are not an OCI index: %w", ref, err)
	}
	for _, d := range im.Manifests {
		if !isBundleType(d.ArtifactType) {
			continue
		}
		what := "bundle " + d.Digest.String()
		raws, err := bundleLayers(ref, d, opts)
		if err != nil {
			f.skipped = append(f.skipped, what+": "+err.Error())
			continue
		}
		for _, raw := range raws {
			res, err := checkBundle(raw, ref, pub)
			switch res {
			case bundleOK:
				return d.Digest, nil
			case bundleBad:
				f.skipped = append(f.skipped, what+": "+err.Error())
			case bundleOtherKey:
				f.count++
			case bundleMismatch:
				f.count++
				f.mismatch = fmt.Errorf("%s: %w", what, err)
			}
		}
	}
	return v1.Hash{}, nil
}

func isBundleType(t string) bool { return strings.HasPrefix(t, "application/vnd.dev.sigstore.bundle") }

// bundleLayers reads the bundles of one referrer: its manifest (which must
// have ref as its subject) and each bundle layer, checked against their
// digests and bounded in size.
func bundleLayers(ref name.Digest, d v1.Descriptor, opts []remote.Option) ([][]byte, error) {
	if d.Size > maxBundle {
		return nil, fmt.Errorf("its manifest is %d bytes, more than a bundle's can be", d.Size)
	}
	desc, err := remote.Get(ref.Context().Digest(d.Digest.String()), opts...)
	if err != nil {
		return nil, fmt.Errorf("read its manifest: %v", err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		return nil, fmt.Errorf("its manifest is not an OCI manifest: %v", err)
	}
	if m.Subject == nil || m.Subject.Digest.String() != ref.DigestStr() {
		subject := "none"
		if m.Subject != nil {
			subject = m.Subject.Digest.String()
		}
		return nil, fmt.Errorf("its manifest's subject is %s, not %s", subject, ref.DigestStr())
	}
	var out [][]byte
	for _, l := range m.Layers {
		if !isBundleType(string(l.MediaType)) {
			continue
		}
		if l.Size > maxBundle {
			return nil, fmt.Errorf("layer %s is %d bytes, more than a bundle can be", l.Digest, l.Size)
		}
		layer, err := remote.Layer(ref.Context().Digest(l.Digest.String()), opts...)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %v", l.Digest, err)
		}
		rc, err := layer.Compressed()
		if err != nil {
			return nil, fmt.Errorf("layer %s: %v", l.Digest, err)
		}
		b, err := io.ReadAll(io.LimitReader(rc, maxBundle+1))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("layer %s: %v", l.Digest, err)
		}
		if h, _, _ := v1.SHA256(strings.NewReader(string(b))); h != l.Digest {
			return nil, fmt.Errorf("layer %s: the registry served bytes with another digest (tampered)", l.Digest)
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("it has no bundle layer")
	}
	return out, nil
}

// FindBundle returns the referrer of ref that holds a bundle by pub that
// signs it (ok false when there is none), so that publishing again adds
// none.
func FindBundle(ctx context.Context, ref name.Digest, pub *ecdsa.PublicKey, opts ...remote.Option) (v1.Hash, bool, error) {
	var f findings
	d, err := verifyBundles(ref, pub, append(slices.Clone(opts), remote.WithContext(ctx)), &f)
	return d, d != (v1.Hash{}), err
}

// matches checks the payload of a valid signature against the image.
func (s signature) matches(ref name.Digest) error {
	var p payload
	if err := json.Unmarshal(s.payload, &p); err != nil {
		return fmt.Errorf("payload is not JSON: %v", err)
	}
	if p.Critical.Type != payloadType {
		return fmt.Errorf("payload type %q, want %q", p.Critical.Type, payloadType)
	}
	if got := p.Critical.Image.DockerManifestDigest; got != ref.DigestStr() {
		return fmt.Errorf("it signs digest %s, not %s", got, ref.DigestStr())
	}
	if got, want := p.Critical.Identity.DockerReference, ref.Context().Name(); !sameRepository(got, want) {
		return fmt.Errorf("it signs repository %s, not %s", got, want)
	}
	return nil
}

// sameRepository compares a payload's docker-reference with the repository
// of the image: cosign may write it with a tag or digest after the name.
func sameRepository(claimed, repo string) bool {
	if claimed == repo {
		return true
	}
	r, err := name.ParseReference(claimed)
	return err == nil && r.Context().Name() == repo
}
