package image

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/wardml/ward/tools/manifest"
	"github.com/wardml/ward/tools/registry"
	"github.com/wardml/ward/tools/signing"
)

// ErrTampered: the registry served a manifest whose bytes do not hash to
// the digest asked for.
var ErrTampered = errors.New("tampered manifest")

// Verified is an image whose signatures were checked, and what it says
// about itself. Deploy and the agent record and serve it.
type Verified struct {
	Ref name.Digest
	// Annotations of the index (or of the manifest, for a single-platform
	// image).
	Annotations map[string]string
	// From ward's annotations; empty for an image ward did not build.
	Hospital, Version, Family string
	Metrics                   map[string]float64
	// Platforms maps each platform to its manifest digest, each verified.
	Platforms map[string]v1.Hash
}

// Verify checks the image ref points at: its manifest hashes to the
// digest, and a signature by pub (either of cosign's formats, see
// signing.Verify) covers exactly this digest and repository. A signed
// index covers the platform manifests it pins by digest, each of which
// must hash to its digest (cosign sign without --recursive signs only the
// index); platform signatures are not needed. Anything else
// is an error that says what is wrong, and errors.Is tells
// signing.ErrUnsigned, signing.ErrWrongKey, signing.ErrMismatch and
// ErrTampered apart.
func Verify(ctx context.Context, ref name.Digest, pub *ecdsa.PublicKey, opts ...remote.Option) (*Verified, error) {
	opts = append(slices.Clone(opts), remote.WithContext(ctx))
	desc, err := get(ref, opts)
	if err != nil {
		return nil, err
	}
	if err := signing.Verify(ctx, ref, pub, opts...); err != nil {
		return nil, fmt.Errorf("verify %w", err)
	}
	v := &Verified{Ref: ref, Platforms: map[string]v1.Hash{}}
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, fmt.Errorf("verify %s: %w", ref, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("verify %s: %w", ref, err)
		}
		v.Annotations = im.Annotations
		for _, m := range im.Manifests {
			child := ref.Context().Digest(m.Digest.String())
			if _, err := get(child, opts); err != nil {
				return nil, fmt.Errorf("platform manifest of %s: %w", ref, err)
			}
			plat := "unknown"
			if m.Platform != nil {
				plat = m.Platform.String()
			}
			v.Platforms[plat] = m.Digest
		}
	case desc.MediaType.IsImage():
		img, err := desc.Image()
		if err != nil {
			return nil, fmt.Errorf("verify %s: %w", ref, err)
		}
		m, err := img.Manifest()
		if err != nil {
			return nil, fmt.Errorf("verify %s: %w", ref, err)
		}
		v.Annotations = m.Annotations
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("verify %s: config: %w", ref, err)
		}
		v.Platforms[cf.Platform().String()] = desc.Digest
	default:
		return nil, fmt.Errorf("verify %s: %s is not an image or an index", ref, desc.MediaType)
	}
	v.Hospital = v.Annotations[AnnotationHospital]
	v.Version = v.Annotations[AnnotationModelVersion]
	v.Family = v.Annotations[AnnotationModelFamily]
	v.Metrics = map[string]float64{}
	for k, s := range v.Annotations {
		if name, ok := strings.CutPrefix(k, AnnotationMetricPrefix); ok {
			if f, err := strconv.ParseFloat(s, 64); err == nil {
				v.Metrics[name] = f
			}
		}
	}
	return v, nil
}

// get fetches a manifest by digest; go-containerregistry checks that its
// bytes hash to the digest.
func get(ref name.Digest, opts []remote.Option) (*remote.Descriptor, error) {
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		if strings.Contains(err.Error(), "does not match requested digest") {
			return nil, fmt.Errorf("verify %s: %w: the registry served bytes that do not hash to this digest: %v", ref, ErrTampered, err)
		}
		return nil, fmt.Errorf("verify %s: %w", ref, err)
	}
	return desc, nil
}

// ManifestVerifier is the check that ward deploy and the agent make before
// they act on an image: ref must be pinned by digest, and Verify must
// accept it with pub, through client. What they record and serve
// (hospital, version, metrics) comes from the verified annotations, never
// from whoever named the image.
func ManifestVerifier(client *registry.Client, pub *ecdsa.PublicKey) manifest.Verifier {
	return func(ctx context.Context, ref string) (manifest.Image, error) {
		d, err := client.ParseDigest(ref)
		if err != nil {
			return manifest.Image{}, err
		}
		v, err := Verify(ctx, d, pub, client.Remote(ctx)...)
		if err != nil {
			return manifest.Image{}, err
		}
		return manifest.ImageFromAnnotations(d, v.Annotations)
	}
}
