package signing

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The names cosign gives the parts of a signature.
const (
	// PayloadMediaType is the media type of a signature layer.
	PayloadMediaType types.MediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	// SignatureAnnotation holds the base64 signature of a layer's payload.
	SignatureAnnotation = "dev.cosignproject.cosign/signature"
	payloadType         = "cosign container image signature"
)

// payload is the "simple signing" document that a signature covers.
type payload struct {
	Critical struct {
		Identity struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
	Optional map[string]any `json:"optional"`
}

// Payload returns the document a signature of ref covers: its repository
// and manifest digest, as cosign writes it.
func Payload(ref name.Digest) []byte {
	var p payload
	p.Critical.Identity.DockerReference = ref.Context().Name()
	p.Critical.Image.DockerManifestDigest = ref.DigestStr()
	p.Critical.Type = payloadType
	b, _ := json.Marshal(p) // a struct of strings always encodes
	return b
}

// SignatureTag is where the signatures of ref live: sha256-<hex>.sig in the
// same repository.
func SignatureTag(ref name.Digest) name.Tag {
	return ref.Context().Tag(strings.Replace(ref.DigestStr(), ":", "-", 1) + ".sig")
}

// Sign signs the manifest ref points at with key and stores the signature
// beside the image, keeping the signatures already there (by other keys, or
// cosign's). Signing again with the same key is a no-op, so that publishing
// unchanged inputs uploads nothing.
func Sign(ctx context.Context, ref name.Digest, key *ecdsa.PrivateKey, opts ...remote.Option) error {
	body := Payload(ref)
	tag := SignatureTag(ref)
	opts = append(slices.Clone(opts), remote.WithContext(ctx))

	base, err := remote.Image(tag, opts...)
	switch {
	case isNotFound(err):
		base = mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	case err != nil:
		return fmt.Errorf("sign %s: read %s: %w", ref, tag, err)
	default:
		sigs, err := signatures(base)
		if err != nil {
			return fmt.Errorf("sign %s: %w", ref, err)
		}
		for _, s := range sigs {
			if bytes.Equal(s.payload, body) && s.verifies(&key.PublicKey) {
				return nil
			}
		}
	}
	sum := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, key, sum[:])
	if err != nil {
		return fmt.Errorf("sign %s: %w", ref, err)
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:       static.NewLayer(body, PayloadMediaType),
		Annotations: map[string]string{SignatureAnnotation: base64.StdEncoding.EncodeToString(sig)},
	})
	if err != nil {
		return fmt.Errorf("sign %s: %w", ref, err)
	}
	if err := remote.Write(tag, img, opts...); err != nil {
		return fmt.Errorf("sign %s: push %s: %w", ref, tag, err)
	}
	return nil
}

// signature is one layer of a signature image.
type signature struct {
	payload []byte
	sig     []byte
	// bad says why the layer cannot be a signature ("" when it can).
	bad string
}

func (s signature) verifies(pub *ecdsa.PublicKey) bool {
	sum := sha256.Sum256(s.payload)
	return s.bad == "" && ecdsa.VerifyASN1(pub, sum[:], s.sig)
}

// signatures reads the payloads and signatures of a signature image. A
// payload whose bytes do not match their digest is an error: the registry
// served something else than what was signed.
func signatures(img v1.Image) ([]signature, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	var out []signature
	for _, d := range m.Layers {
		if d.MediaType != PayloadMediaType {
			continue
		}
		s := signature{}
		sig, err := base64.StdEncoding.DecodeString(d.Annotations[SignatureAnnotation])
		switch {
		case d.Annotations[SignatureAnnotation] == "":
			s.bad = "no " + SignatureAnnotation + " annotation"
		case err != nil:
			s.bad = "the signature annotation is not base64"
		}
		s.sig = sig
		if d.Size > 1<<20 {
			return nil, fmt.Errorf("signature payload %s is %d bytes, more than a signature payload can be", d.Digest, d.Size)
		}
		l, err := img.LayerByDigest(d.Digest)
		if err != nil {
			return nil, err
		}
		rc, err := l.Compressed()
		if err != nil {
			return nil, fmt.Errorf("signature payload %s: %w", d.Digest, err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("signature payload %s: %w", d.Digest, err)
		}
		if sum := sha256.Sum256(b); d.Digest.Algorithm != "sha256" || fmt.Sprintf("%x", sum) != d.Digest.Hex {
			return nil, fmt.Errorf("signature payload %s: the registry served bytes with another digest (tampered)", d.Digest)
		}
		s.payload = b
		out = append(out, s)
	}
	return out, nil
}

func isNotFound(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}
