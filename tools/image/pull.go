package image

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/wardml/ward/models/trained"
)

// The kinds of error of Pull and Unpack, so that the agent can say which
// step failed.
var (
	// ErrPull: the registry cannot be read, served bytes that do not hash
	// to their digest, or has no image for the platform.
	ErrPull = errors.New("pull failed")
	// ErrUnpack: the image's content is refused: an entry that is absolute,
	// has .., is a link or a device, is over its layer's bound, or the
	// image has no server or no model.
	ErrUnpack = errors.New("image refused")
)

// Error is an error of Pull or Unpack with its kind.
type Error struct {
	Kind error
	Err  error
}

func (e *Error) Error() string        { return e.Err.Error() }
func (e *Error) Unwrap() error        { return e.Err }
func (e *Error) Is(target error) bool { return target == e.Kind }

func pullError(format string, args ...any) error {
	return &Error{Kind: ErrPull, Err: fmt.Errorf(format, args...)}
}

func unpackError(format string, args ...any) error {
	return &Error{Kind: ErrUnpack, Err: fmt.Errorf(format, args...)}
}

// The files Unpack takes, by their path in the image without the leading
// slash (their path under the folder it unpacks into).
var (
	serverFile = strings.TrimPrefix(trained.ServerPath, "/")
	modelFile  = strings.TrimPrefix(trained.ModelPath, "/")
	modelsDir  = path.Dir(modelFile)
)

// Pull returns the image that ref points at for platform: an index's entry
// for it, or a single image built for it. With a nil platform, an index's
// first image (the model layer is the same on every platform). Every
// manifest is checked against its digest as it is fetched; the layers are
// read, and checked, by Unpack.
func Pull(ctx context.Context, ref name.Digest, platform *v1.Platform, opts ...remote.Option) (v1.Image, error) {
	opts = append(slices.Clone(opts), remote.WithContext(ctx))
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return nil, pullError("pull %s: %w", ref, err)
	}
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, pullError("pull %s: %w", ref, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, pullError("pull %s: %w", ref, err)
		}
		var have []string
		for _, m := range im.Manifests {
			if platform == nil && m.MediaType.IsImage() ||
				platform != nil && m.Platform != nil && m.Platform.OS == platform.OS && m.Platform.Architecture == platform.Architecture {
				img, err := idx.Image(m.Digest)
				if err != nil {
					return nil, pullError("pull %s (%s): %w", ref, m.Digest, err)
				}
				return img, nil
			}
			if m.Platform != nil {
				have = append(have, m.Platform.String())
			}
		}
		if platform == nil {
			return nil, pullError("pull %s: an index without images", ref)
		}
		return nil, pullError("pull %s: no image for this host's platform %s (it has %s)", ref, platform, strings.Join(have, ", "))
	case desc.MediaType.IsImage():
		img, err := desc.Image()
		if err != nil {
			return nil, pullError("pull %s: %w", ref, err)
		}
		if platform == nil {
			return img, nil
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, pullError("pull %s: config: %w", ref, err)
		}
		if cf.OS != platform.OS || cf.Architecture != platform.Architecture {
			return nil, pullError("pull %s: an image for %s/%s, not this host's %s", ref, cf.OS, cf.Architecture, platform)
		}
		return img, nil
	}
	return nil, pullError("pull %s: %s is not an image or an index", ref, desc.MediaType)
}

// UnpackOption changes what Unpack takes.
type UnpackOption func(*unpacker)

// MaxModelBytes bounds what Unpack writes under models/ (default
// trained.MaxModelBytes); the server is bounded by trained.MaxServerBytes.
func MaxModelBytes(n int64) UnpackOption { return func(u *unpacker) { u.maxModel = n } }

// modelOnly writes the model's files and not the server (whose layer is
// still read and checked): ReadModel needs only the model.
func modelOnly() UnpackOption { return func(u *unpacker) { u.noServer = true } }

// serverOnly takes the server alone, from an image without a model (the
// server's image, a base).
func serverOnly() UnpackOption { return func(u *unpacker) { u.noModel = true } }

// Unpack writes the server (ward/serve, mode 0755) and the files under
// models/ (0644) of img's layers into dir, and returns each file's SHA-256
// (hex) by its path under dir. Every layer is read whole and must hash to
// its digest; an entry that names a path outside dir (absolute, or with
// ..) or is a link or a device is refused, and so is a server over
// trained.MaxServerBytes or a model folder over MaxModelBytes, before
// anything beyond the bound is written. Errors are of kind ErrPull or
// ErrUnpack. On an error dir may hold some files; the caller unpacks into
// a new folder and removes it (the agent renames it into place when
// complete).
func Unpack(img v1.Image, dir string, opts ...UnpackOption) (map[string]string, error) {
	u := newUnpacker(dir)
	for _, o := range opts {
		o(u)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, pullError("layers: %w", err)
	}
	for _, l := range layers {
		if err := u.layer(l); err != nil {
			return nil, err
		}
	}
	var need []string
	if !u.noServer {
		need = append(need, serverFile)
	}
	if !u.noModel {
		need = append(need, modelFile)
	}
	for _, f := range need {
		if u.files[f] == "" {
			return nil, unpackError("the image has no /%s: not an image of ward package", f)
		}
	}
	return u.files, nil
}

// unpacker extracts the server and the model from an image's layers into
// a folder, and nothing that could reach outside it.
type unpacker struct {
	dir   string
	files map[string]string
	// server and model are the bytes unpacked so far of each, against
	// their bounds.
	server, model       int64
	maxServer, maxModel int64
	noServer, noModel   bool
}

func newUnpacker(dir string) *unpacker {
	return &unpacker{dir: dir, files: map[string]string{}, maxModel: trained.MaxModelBytes, maxServer: trained.MaxServerBytes}
}

// layer unpacks one layer. Its compressed bytes are hashed as they are
// read, and all of them are read: a layer that does not hash to its
// digest is refused whatever its content.
func (u *unpacker) layer(l v1.Layer) error {
	want, err := l.Digest()
	if err != nil {
		return pullError("layer: %w", err)
	}
	mt, err := l.MediaType()
	if err != nil {
		return pullError("layer %s: %w", want, err)
	}
	if mt != types.OCILayer && mt != types.DockerLayer {
		return unpackError("layer %s: media type %s: want a gzipped tar (%s)", want, mt, types.OCILayer)
	}
	rc, err := l.Compressed()
	if err != nil {
		return pullError("layer %s: %w", want, err)
	}
	defer rc.Close()
	h := sha256.New()
	r := io.TeeReader(rc, h)
	uerr := u.untar(r)
	_, rerr := io.Copy(io.Discard, r)
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != want.String() {
		return pullError("layer %s: the registry served bytes that hash to %s: refused", want, got)
	}
	if rerr != nil {
		return pullError("layer %s: %w", want, rerr)
	}
	if uerr != nil {
		return unpackError("layer %s: %w", want, uerr)
	}
	return nil
}

// untar extracts a gzipped tar: the server (ward/serve) and the files
// under models/; other regular files and folders are passed over. An
// entry that names a path outside the folder (absolute, or with ..) or is
// a link or a device is refused, so that an image cannot write where it
// should not.
func (u *unpacker) untar(r io.Reader) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return zr.Close()
		}
		if err != nil {
			return err
		}
		name, err := entryName(hdr)
		if err != nil {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			continue
		case tar.TypeReg:
		default:
			return fmt.Errorf("entry %q: a %s: ward's images hold regular files only", hdr.Name, entryKind(hdr.Typeflag))
		}
		mode := fs.FileMode(0o644)
		switch {
		case name == serverFile:
			if u.server += hdr.Size; u.server > u.maxServer {
				return fmt.Errorf("entry %q: %d bytes, more than a server can be (%d bytes, %d MiB): refused, nothing of it written", hdr.Name, hdr.Size, u.maxServer, u.maxServer>>20)
			}
			if u.noServer {
				continue
			}
			mode = 0o755
		case strings.HasPrefix(name, modelsDir+"/"):
			if u.model += hdr.Size; u.model > u.maxModel {
				return fmt.Errorf("entry %q: %d bytes, and %d under /%s/ in all, more than the model's bound (%d bytes, %d MiB; ward agent --max-model-bytes): refused, nothing of it written",
					hdr.Name, hdr.Size, u.model, modelsDir, u.maxModel, u.maxModel>>20)
			}
		default:
			continue
		}
		sum, err := writeFile(filepath.Join(u.dir, filepath.FromSlash(name)), tr, mode)
		if err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		u.files[name] = sum
	}
}

// entryName is a tar entry's path within the folder, or an error when it
// would leave it.
func entryName(hdr *tar.Header) (string, error) {
	if strings.HasPrefix(hdr.Name, "/") {
		return "", fmt.Errorf("entry %q: an absolute path", hdr.Name)
	}
	name := path.Clean(hdr.Name)
	if !filepath.IsLocal(name) {
		return "", fmt.Errorf("entry %q: a path outside the image's folder", hdr.Name)
	}
	return name, nil
}

func entryKind(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "symbolic link"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar, tar.TypeBlock:
		return "device"
	case tar.TypeFifo:
		return "FIFO"
	}
	return fmt.Sprintf("entry of type %q", t)
}

// writeFile writes r to a new file and returns its SHA-256.
func writeFile(file string, r io.Reader, mode fs.FileMode) (string, error) {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return "", err
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), r); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), os.Chmod(file, mode)
}
