package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ReadModel reads the model file (ModelPath) of an image by digest, from
// its first platform (the model layer is the same on every platform), with
// Pull and Unpack: the registry's bytes are checked against their digests
// as they are read, and the model folder is bounded as the agent bounds
// it. Training reads the model in production this way, to gate a new one
// against it; verify the image first (Verify) when its origin matters.
func ReadModel(ctx context.Context, ref name.Digest, opts ...remote.Option) ([]byte, error) {
	img, err := Pull(ctx, ref, nil, opts...)
	if err != nil {
		return nil, fmt.Errorf("read the model of %s: %w", ref, err)
	}
	dir, err := os.MkdirTemp("", "ward-model-")
	if err != nil {
		return nil, fmt.Errorf("read the model of %s: %w", ref, err)
	}
	defer os.RemoveAll(dir)
	if _, err := Unpack(img, dir, modelOnly()); err != nil {
		return nil, fmt.Errorf("read the model of %s: %w", ref, err)
	}
	return os.ReadFile(filepath.Join(dir, filepath.FromSlash(modelFile)))
}
