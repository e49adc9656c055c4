//go:build linux

package agent

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/tools/image"
	"github.com/wardml/ward/tools/manifest"
	"github.com/wardml/ward/tools/signing"
)

// zerosLayer is a gzipped tar of one file of size zero bytes: a few MiB
// compressed for a GiB, as a hostile image would carry it.
func zerosLayer(t testing.TB, file string, size int64) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: file, Mode: 0o644, Size: size}); err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for n := int64(0); n < size; n += int64(len(zeros)) {
		if _, err := tw.Write(zeros[:min(int64(len(zeros)), size-n)]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return static.NewLayer(buf.Bytes(), types.OCILayer)
}

// publishWith pushes st-olaf's image of a version, signed, with one more
// layer on each platform (after the model's).
func (f *fixture) publishWith(version string, artifact []byte, extra v1.Layer) manifest.Image {
	t := f.t
	t.Helper()
	ctx := context.Background()
	m := image.Model{Hospital: "st-olaf", Version: version, Family: "ridge", Metrics: map[string]float64{"mae": 900}, Artifact: artifact}
	built, err := image.Build(m, builtServer(t), image.Created(time.Unix(1764504000, 0)))
	if err != nil {
		t.Fatal(err)
	}
	im, err := built.Index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, d := range im.Manifests {
		pi, err := built.Index.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if pi, err = mutate.Append(pi, mutate.Addendum{Layer: extra}); err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: pi, Descriptor: v1.Descriptor{Platform: d.Platform}})
	}
	idx = mutate.Annotations(idx, im.Annotations).(v1.ImageIndex)
	tag, err := name.NewTag(f.host + "/ward/st-olaf:" + version)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(tag, idx, f.client.Remote(ctx)...); err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref := tag.Context().Digest(d.String())
	signed := []name.Digest{ref}
	pm, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pm.Manifests {
		signed = append(signed, tag.Context().Digest(p.Digest.String()))
	}
	for _, r := range signed {
		if err := signing.Sign(ctx, r, f.key, f.client.Remote(ctx)...); err != nil {
			t.Fatal(err)
		}
	}
	i := manifest.Image{Ref: ref.Context().Name() + "@" + ref.DigestStr(), Digest: ref.DigestStr(), Hospital: "st-olaf", Version: version}
	f.imgs[version] = i
	return i
}

// folderSize is the disk that a folder's files take (their blocks, not
// their lengths).
func folderSize(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n += info.Sys().(*syscall.Stat_t).Blocks * 512
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A signed image whose model folder holds a GiB of zeros (a few MiB in
// the registry) is refused at the unpack step, before it fills the
// hospital's disk: the model folder is bounded at 256 MiB by default, and
// the current version keeps serving.
func TestRefusesAnImageOverTheModelBound(t *testing.T) {
	reg := testenv.StartRegistry(t)
	f := newFixture(t, reg.Host)
	f.publish("v1", model(t, "v1", 1), f.key)
	bomb := f.publishWith("v2-bomb", model(t, "v2-bomb", 2), zerosLayer(t, "models/padding.bin", 1<<30))
	data := t.TempDir()
	a := f.startAgent(data)
	f.mustDeploy("v1")
	a.waitServing(t, f, "v1", 30*time.Second)
	before := folderSize(t, data)

	since := time.Now()
	commit := f.pinByHand(bomb)
	fail := a.waitFailure(t, StepUnpack, since)
	t.Logf("status: %s: %s", fail.Step, fail.Message)
	if !strings.Contains(fail.Message, "more than the model's bound (268435456 bytes, 256 MiB") || fail.Digest != bomb.Digest || fail.Commit != commit {
		t.Errorf("failure %+v, want the model's bound at %s for %s", fail, commit, bomb.Digest)
	}
	after := folderSize(t, data)
	t.Logf("data folder: %d bytes serving v1, %d after the refusal", before, after)
	if after > before+(1<<20) {
		t.Errorf("the data folder grew from %d to %d bytes for a refused image", before, after)
	}
	if v, err := answer(http.DefaultClient, a.url, f.request); v != "v1" || err != nil {
		t.Errorf("answered by %q, %v; want v1", v, err)
	}
	if st := a.Status(); st.Refused == nil || st.Refused.Digest != bomb.Digest {
		t.Errorf("refused %+v, want %s", st.Refused, bomb.Digest)
	}
}
