package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// The same model and source give the same digests, down to the server
// binary built again from source; another model changes the model layer
// and nothing of the server's.
func TestBuildIsReproducible(t *testing.T) {
	a := build(t, testModel("st-olaf", "2026-11-30.1", 1000))
	again, err := BuildServer(context.Background(), "../..", DefaultServerPackage, Platforms)
	if err != nil {
		t.Fatal(err)
	}
	for p, bin := range again.Binaries {
		if !bytes.Equal(bin, testServer(t).Binaries[p]) {
			t.Fatalf("the server built twice from the same source differs for %s", p)
		}
	}
	b, err := Build(testModel("st-olaf", "2026-11-30.1", 1000), again, Created(testTime), Source("https://github.com/wardml/ward"), Revision("0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	if da, db := mustDigest(t, a.Index), mustDigest(t, b.Index); da != db {
		t.Fatalf("two builds of the same inputs: index %s and %s", da, db)
	}
	if err := validate.Index(a.Index); err != nil {
		t.Fatalf("the index is not a valid OCI index: %v", err)
	}

	other := build(t, testModel("riverside", "2026-11-30.1", 2000))
	if mustDigest(t, other.Index) == mustDigest(t, a.Index) {
		t.Fatal("another model gave the same index digest")
	}
	for i := range a.ServerLayers {
		if mustDigest(t, a.ServerLayers[i]) != mustDigest(t, other.ServerLayers[i]) {
			t.Errorf("server layer %d differs between hospitals: a registry would store it twice", i)
		}
	}
	if mustDigest(t, a.ModelLayer) == mustDigest(t, other.ModelLayer) {
		t.Error("two models gave the same model layer")
	}

	later, err := Build(testModel("st-olaf", "2026-11-30.1", 1000), testServer(t), Created(testTime.Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	if mustDigest(t, later.Index) == mustDigest(t, a.Index) {
		t.Error("another SOURCE_DATE_EPOCH gave the same digest: the time is not recorded")
	}
}

// The image is what a runtime needs: per platform the binary then the
// model, owned by root with fixed modes and the given time, sorted; run as
// 65532 with WARD_MODEL; annotated for deploy.
func TestBuildLayout(t *testing.T) {
	img := build(t, testModel("st-olaf", "v7", 1000))
	im, err := img.Index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 2 || im.Manifests[0].Platform.String() != "linux/amd64" || im.Manifests[1].Platform.String() != "linux/arm64" {
		t.Fatalf("index manifests: %+v", im.Manifests)
	}
	for k, want := range map[string]string{
		AnnotationHospital: "st-olaf", AnnotationModelVersion: "v7", AnnotationModelFamily: "ridge",
		AnnotationVersion: "v7", AnnotationCreated: "2026-11-30T12:00:00Z", AnnotationRevision: "0123456789abcdef",
		AnnotationSource: "https://github.com/wardml/ward", AnnotationMetricPrefix + "mae": "812.5",
		AnnotationMetricPrefix + "under_rate": "0.2",
	} {
		if im.Annotations[k] != want {
			t.Errorf("index annotation %s = %q, want %q", k, im.Annotations[k], want)
		}
	}
	for plat, pi := range img.Platforms {
		cf, err := pi.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Platform().String() != plat || cf.Config.User != "65532:65532" || cf.Config.Entrypoint[0] != "/ward/serve" ||
			!cf.Created.Time.Equal(testTime) || cf.Config.Labels[AnnotationHospital] != "st-olaf" {
			t.Errorf("%s config: %+v", plat, cf)
		}
		if strings.Join(cf.Config.Env, " ") != "WARD_MODEL=/models/model.json PORT=8080" {
			t.Errorf("%s env: %v", plat, cf.Config.Env)
		}
		layers, err := pi.Layers()
		if err != nil {
			t.Fatal(err)
		}
		if len(layers) != 2 {
			t.Fatalf("%s: %d layers, want 2", plat, len(layers))
		}
		checkTar(t, layers[0], []string{"ward/", "ward/serve"})
		checkTar(t, layers[1], []string{"models/", "models/MODEL_CARD.md", "models/model.json"})
	}
}

func checkTar(t *testing.T, l v1.Layer, names []string) {
	t.Helper()
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(rc)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var got []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, h.Name)
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(testTime) {
			t.Errorf("%s: uid %d gid %d mtime %s, want 0 0 %s", h.Name, h.Uid, h.Gid, h.ModTime, testTime)
		}
		want := int64(0o644)
		if h.Typeflag == tar.TypeDir || h.Name == "ward/serve" {
			want = 0o755
		}
		if h.Mode != want {
			t.Errorf("%s: mode %o, want %o", h.Name, h.Mode, want)
		}
	}
	if strings.Join(got, " ") != strings.Join(names, " ") {
		t.Errorf("tar entries %v, want %v", got, names)
	}
}

func TestBuildRefusesBadInput(t *testing.T) {
	srv := NewServer(map[string][]byte{"linux/amd64": []byte("x")})
	for _, c := range []struct {
		m    Model
		srv  *Server
		want string
	}{
		{Model{Version: "v1", Artifact: []byte("{}")}, srv, "the model names no hospital"},
		{Model{Hospital: "a", Artifact: []byte("{}")}, srv, "image a: the model has no version"},
		{Model{Hospital: "a", Version: "v1"}, srv, "image a: the model artifact is empty"},
		{Model{Hospital: "a", Version: "v1", Artifact: []byte("{}")}, nil, "image a: no serving binary"},
		{Model{Hospital: "a", Version: "v1", Artifact: []byte("{}")}, NewServer(map[string][]byte{"amd64": []byte("x")}), `platform "amd64": want os/arch`},
	} {
		_, err := Build(c.m, c.srv)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Build(%+v): %v, want %q", c.m, err, c.want)
		}
	}
}
