package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func sha256File(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// layerOf is a gzipped tar of the entries given.
func layerOf(t *testing.T, entries ...tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range entries {
		body := []byte("content of " + h.Name)
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(body)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return buf.Bytes()
}

func reg(name string, mode int64) tar.Header {
	return tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}
}

// Unpacking takes the server and the model, and refuses any entry that
// could write outside its folder.
func TestUnpackRefusesEntriesThatEscape(t *testing.T) {
	dir := t.TempDir()
	u := newUnpacker(dir)
	good := layerOf(t, tar.Header{Typeflag: tar.TypeDir, Name: "ward/", Mode: 0o755}, reg("ward/serve", 0o700),
		reg("./models/model.json", 0o600), reg("models/MODEL_CARD.md", 0o644), reg("etc/passwd", 0o644))
	if err := u.untar(bytes.NewReader(good)); err != nil {
		t.Fatal(err)
	}
	if len(u.files) != 3 || u.files["ward/serve"] == "" || u.files["models/model.json"] == "" || u.files["models/MODEL_CARD.md"] == "" {
		t.Fatalf("unpacked %v", u.files)
	}
	if st, err := os.Stat(filepath.Join(dir, "ward", "serve")); err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("ward/serve: %v, %v", st, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "models", "model.json")); err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("models/model.json: %v, %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "etc")); err == nil {
		t.Fatal("a file that is neither the server nor the model was unpacked")
	}
	sum := sha256File(t, filepath.Join(dir, "models", "model.json"))
	if sum != u.files["models/model.json"] {
		t.Fatalf("recorded SHA-256 %s, the file's %s", u.files["models/model.json"], sum)
	}

	outside := filepath.Join(filepath.Dir(dir), "escaped")
	for _, c := range []struct {
		name  string
		entry tar.Header
		want  string
	}{
		{"absolute", reg("/models/model.json", 0o644), "an absolute path"},
		{"dot dot", reg("models/../../escaped", 0o644), "a path outside the image's folder"},
		{"dot dot first", reg("../escaped", 0o644), "a path outside"},
		{"symlink", tar.Header{Typeflag: tar.TypeSymlink, Name: "models/model.json", Linkname: outside}, "a symbolic link"},
		{"hard link", tar.Header{Typeflag: tar.TypeLink, Name: "ward/serve", Linkname: "/bin/sh"}, "a hard link"},
		{"device", tar.Header{Typeflag: tar.TypeChar, Name: "models/tty", Devmajor: 5}, "a device"},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := newUnpacker(t.TempDir())
			err := u.untar(bytes.NewReader(layerOf(t, c.entry)))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			if _, err := os.Lstat(outside); err == nil {
				t.Fatal("an entry was written outside the folder")
			}
		})
	}
	if err := newUnpacker(t.TempDir()).untar(strings.NewReader("not gzip")); err == nil {
		t.Fatal("a layer that is not gzip unpacked")
	}
}

// sizedLayer is a gzipped tar of files of the sizes given, zeros.
func sizedLayer(t *testing.T, sizes map[string]int64) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	zeros := make([]byte, 1<<20)
	for _, name := range []string{"ward/serve", "models/model.json", "models/padding.bin"} {
		size, ok := sizes[name]
		if !ok {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size}); err != nil {
			t.Fatal(err)
		}
		for n := int64(0); n < size; n += int64(len(zeros)) {
			tw.Write(zeros[:min(int64(len(zeros)), size-n)])
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return static.NewLayer(buf.Bytes(), types.OCILayer)
}

func imageOf(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Unpack takes at most trained.MaxServerBytes of server and MaxModelBytes
// (256 MiB unless told) under models/, summed over the layers, and writes
// nothing of an entry that passes its bound.
func TestUnpackBoundsTheServerAndTheModel(t *testing.T) {
	for _, c := range []struct {
		name   string
		layers []map[string]int64
		opts   []UnpackOption
		want   string
	}{
		{"a server over 64 MiB", []map[string]int64{{"ward/serve": 64<<20 + 1, "models/model.json": 10}}, nil, "more than a server can be (67108864 bytes, 64 MiB)"},
		{"a model over 256 MiB", []map[string]int64{{"ward/serve": 10}, {"models/model.json": 10, "models/padding.bin": 256 << 20}}, nil, "more than the model's bound (268435456 bytes, 256 MiB"},
		{"models over the bound across layers", []map[string]int64{{"ward/serve": 10, "models/padding.bin": 600 << 10}, {"models/model.json": 600 << 10}}, []UnpackOption{MaxModelBytes(1 << 20)}, "and 1228800 under /models/ in all, more than the model's bound (1048576 bytes, 1 MiB"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var layers []v1.Layer
			for _, l := range c.layers {
				layers = append(layers, sizedLayer(t, l))
			}
			dir := t.TempDir()
			_, err := Unpack(imageOf(t, layers...), dir, c.opts...)
			if !errors.Is(err, ErrUnpack) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want ErrUnpack and %q", err, c.want)
			}
			var written int64
			filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
				if err == nil && !info.IsDir() {
					written += info.Size()
				}
				return nil
			})
			if written > 1<<20 {
				t.Errorf("%d bytes written for a refused image", written)
			}
		})
	}
	// Within the bounds, and what a ward image holds: both files, whole.
	files, err := Unpack(imageOf(t, sizedLayer(t, map[string]int64{"ward/serve": 40 << 20}), sizedLayer(t, map[string]int64{"models/model.json": 100 << 10})), t.TempDir())
	if err != nil || len(files) != 2 {
		t.Fatalf("Unpack = %v, %v", files, err)
	}
	if _, err := Unpack(imageOf(t, sizedLayer(t, map[string]int64{"models/model.json": 10})), t.TempDir()); !errors.Is(err, ErrUnpack) || !strings.Contains(err.Error(), "no /ward/serve") {
		t.Fatalf("an image without a server: %v", err)
	}
}
