package signing

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
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
// whose payload names exactly ref: its digest and its repository.
func Verify(ctx context.Context, ref name.Digest, pub *ecdsa.PublicKey, opts ...remote.Option) error {
	tag := SignatureTag(ref)
	img, err := remote.Image(tag, append(slices.Clone(opts), remote.WithContext(ctx))...)
	if isNotFound(err) {
		return fmt.Errorf("%s: %w: there is no %s (sign it with ward package, or cosign sign --key)", ref, ErrUnsigned, tag.TagStr())
	}
	if err != nil {
		return fmt.Errorf("%s: read signatures %s: %w", ref, tag, err)
	}
	sigs, err := signatures(img)
	if err != nil {
		return fmt.Errorf("%s: %w", ref, err)
	}
	if len(sigs) == 0 {
		return fmt.Errorf("%s: %w: %s holds no signature layer", ref, ErrUnsigned, tag.TagStr())
	}
	var mismatch error
	for _, s := range sigs {
		if !s.verifies(pub) {
			continue
		}
		if err := s.matches(ref); err != nil {
			mismatch = err
			continue
		}
		return nil
	}
	if mismatch != nil {
		return fmt.Errorf("%s: %w: %w", ref, ErrMismatch, mismatch)
	}
	return fmt.Errorf("%s: %w: none of its %d signature(s) verifies with public key %s", ref, ErrWrongKey, len(sigs), Fingerprint(pub))
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
