package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// maxModel bounds the model file read from an image.
const maxModel = 256 << 20

// ReadModel reads the model file (ModelPath) of an image by digest, from
// its first platform (the model layer is the same on every platform). The
// registry's bytes are checked against their digests as they are read.
// Training reads the model in production this way, to gate a new one
// against it; verify the image first (Verify) when its origin matters.
func ReadModel(ctx context.Context, ref name.Digest, opts ...remote.Option) ([]byte, error) {
	opts = append(slices.Clone(opts), remote.WithContext(ctx))
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("read the model of %s: %w", ref, err)
	}
	var img v1.Image
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, fmt.Errorf("read the model of %s: %w", ref, err)
		}
		m, err := idx.IndexManifest()
		if err != nil || len(m.Manifests) == 0 {
			return nil, fmt.Errorf("read the model of %s: an index without images (%v)", ref, err)
		}
		if img, err = idx.Image(m.Manifests[0].Digest); err != nil {
			return nil, fmt.Errorf("read the model of %s: %w", ref, err)
		}
	} else if img, err = desc.Image(); err != nil {
		return nil, fmt.Errorf("read the model of %s: %w", ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("read the model of %s: %w", ref, err)
	}
	want := strings.TrimPrefix(ModelPath, "/")
	// The model layer is the last one; look there first.
	for i := len(layers) - 1; i >= 0; i-- {
		rc, err := layers[i].Uncompressed()
		if err != nil {
			return nil, fmt.Errorf("read the model of %s: %w", ref, err)
		}
		data, err := fileIn(rc, want)
		rc.Close()
		if err == nil {
			return data, nil
		}
		if !errors.Is(err, errNotInLayer) {
			return nil, fmt.Errorf("read the model of %s: %w", ref, err)
		}
	}
	return nil, fmt.Errorf("read the model of %s: no %s in the image: not an image of ward package", ref, ModelPath)
}

var errNotInLayer = errors.New("not in this layer")

// fileIn returns the contents of the regular file named want in a tar.
func fileIn(r io.Reader, want string) ([]byte, error) {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, errNotInLayer
		}
		if err != nil {
			return nil, err
		}
		if strings.TrimPrefix(h.Name, "./") != want || h.Typeflag != tar.TypeReg {
			continue
		}
		if h.Size > maxModel {
			return nil, fmt.Errorf("%s is %d bytes, more than a model can be (%d)", want, h.Size, maxModel)
		}
		return io.ReadAll(io.LimitReader(tr, maxModel))
	}
}
