package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/models/modeltest"
	"github.com/wardml/ward/tools/image"
	"github.com/wardml/ward/tools/registry"
)

// The server's image is pushed once (ward package-server); then, with no
// Go toolchain on PATH, ward package --base packages every hospital of the
// synthetic group into docker-registry: reproducibly, every image on the
// base's own server layers, each verified by ward and by the real cosign.
// A base signed by another key is refused before anything is pushed.
func TestPackageOnABaseWithoutGo(t *testing.T) {
	cosign := os.Getenv("WARD_TEST_COSIGN")
	testenv.Require(t, cosign != "", "WARD_TEST_COSIGN is not set (tools/dev/test builds cosign under CI=true)")
	reg := testenv.StartRegistry(t)
	work := t.TempDir()
	hospitals, err := filepath.Abs("../../hospitals")
	if err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(work, "keys")
	env := []string{"WARD_HOSPITALS=" + hospitals, "WARD_REGISTRY=" + reg.Host + "/group", "WARD_SIGNING_PASSWORD=pw",
		"WARD_SIGNING_KEY=" + filepath.Join(keys, "ward.key"), "SOURCE_DATE_EPOCH=1764504000", "WARD_LOG_FORMAT=json"}
	if code, out, errs := wardRun(t, env[:3], "keys", "generate", "--out", keys); code != 0 {
		t.Fatalf("keys generate: %d\n%s%s", code, out, errs)
	}
	pub := filepath.Join(keys, "ward.pub")

	// The release pipeline of a ward version: the server's image, once.
	code, out, errs := wardRun(t, env, append([]string{"package-server"}, serverFlags(t)...)...)
	if code != 0 || !strings.HasPrefix(out, reg.Host+"/group/ward/serve@sha256:") {
		t.Fatalf("package-server: exit %d %q\n%s", code, out, errs)
	}
	base := strings.TrimSpace(out)
	if code, again, _ := wardRun(t, env, append([]string{"package-server"}, serverFlags(t)...)...); code != 0 || again != out {
		t.Errorf("package-server again: %d %q, want the same digest %q", code, again, out)
	}

	// A trained model of every hospital of the group, as ward train
	// leaves them.
	hs, err := contract.Select(hospitals, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	models := filepath.Join(work, "models")
	for i, h := range hs {
		fitted := modeltest.StOlaf(t, 300, uint64(i+1), 1)
		fitted.Artifact.Hospital, fitted.Artifact.Version = h.ID, "2026-11-30.1"
		data, err := fitted.Artifact.Encode()
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(models, h.ID), 0o755)
		if err := os.WriteFile(filepath.Join(models, h.ID, "model.json"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	t.Setenv("PATH", t.TempDir())
	if g, err := exec.LookPath("go"); err == nil {
		t.Fatalf("go is still on PATH: %s", g)
	}
	args := []string{"package", "--all", "--models", models, "--base", base, "--output", "json"}
	code, out, errs = wardRun(t, env, args...)
	if code != 0 {
		t.Fatalf("package --base without go: exit %d\n%s", code, errs)
	}
	var lines []image.Line
	if err := json.Unmarshal([]byte(out), &lines); err != nil || len(lines) != len(hs) {
		t.Fatalf("package --base: %d lines for %d hospitals (%v)\n%s", len(lines), len(hs), err, out)
	}
	// Again: the same images and the same attachments (the bundles by this
	// key are found and kept, not signed anew), in whatever order the
	// registry lists the referrers.
	code, again, _ := wardRun(t, env, args...)
	var lines2 []image.Line
	if err := json.Unmarshal([]byte(again), &lines2); code != 0 || err != nil {
		t.Fatalf("package --base again: exit %d (%v)\n%s", code, err, again)
	}
	for _, ls := range [][]image.Line{lines, lines2} {
		for i := range ls {
			slices.Sort(ls[i].Attached)
		}
	}
	if !reflect.DeepEqual(lines, lines2) {
		t.Errorf("package --base again: digests not the same:\n%s\nthen\n%s", out, again)
	}

	client := registry.NewClient()
	baseRef, err := name.NewDigest(base)
	if err != nil {
		t.Fatal(err)
	}
	baseIdx, err := remote.Index(baseRef, client.Remote(context.Background())...)
	if err != nil {
		t.Fatal(err)
	}
	serverLayers := map[string]string{}
	bm, _ := baseIdx.IndexManifest()
	for _, m := range bm.Manifests {
		img, _ := baseIdx.Image(m.Digest)
		mf, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		serverLayers[m.Platform.String()] = mf.Layers[0].Digest.String()
	}
	for _, l := range lines {
		if l.Error != "" || l.Skipped != "" || !strings.Contains(l.Image, "/group/ward/"+l.Hospital+"@sha256:") {
			t.Errorf("%s: %+v", l.Hospital, l)
			continue
		}
		if code, out, errs := wardRun(t, env, "verify", l.Image, "--key", pub); code != 0 || !strings.Contains(out, "hospital "+l.Hospital+", model 2026-11-30.1") {
			t.Errorf("ward verify %s: %d\n%s%s", l.Image, code, out, errs)
		}
		ref, _ := name.NewDigest(l.Image)
		idx, err := remote.Index(ref, client.Remote(context.Background())...)
		if err != nil {
			t.Fatal(err)
		}
		im, _ := idx.IndexManifest()
		if im.Annotations["org.opencontainers.image.base.digest"] != baseRef.DigestStr() || im.Annotations["org.opencontainers.image.base.name"] != baseRef.Context().Name() {
			t.Errorf("%s: base annotations %v", l.Hospital, im.Annotations)
		}
		for _, m := range im.Manifests {
			img, _ := idx.Image(m.Digest)
			mf, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if len(mf.Layers) != 2 || mf.Layers[0].Digest.String() != serverLayers[m.Platform.String()] {
				t.Errorf("%s %s: layers %v, want the base's server layer %s and the model's", l.Hospital, m.Platform, mf.Layers, serverLayers[m.Platform.String()])
			}
		}
		trustedRoot := filepath.Join(work, "trusted-root.json")
		if err := os.WriteFile(trustedRoot, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[],"certificateAuthorities":[],"ctlogs":[],"timestampAuthorities":[]}`), 0o644); err != nil {
			t.Fatal(err)
		}
		refs := []string{l.Image}
		for _, d := range l.Platforms {
			refs = append(refs, ref.Context().Digest(d).String())
		}
		for _, r := range refs {
			// cosign v2.6 turns to the bundles it finds among the
			// referrers (ward attaches both formats), and then wants a
			// trusted root: an empty one, so that it fetches none.
			cmd := exec.Command(cosign, "verify", "--key", pub, "--insecure-ignore-tlog", "--trusted-root", trustedRoot, "--allow-http-registry", "--allow-insecure-registry", r)
			cmd.Dir = work
			cmd.Env = append(os.Environ(), "HOME="+work, "TUF_ROOT="+filepath.Join(work, "tuf"))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("cosign verify %s: %v\n%s", r, err, out)
			}
		}
	}

	// A base signed by another key, or not a server's image, is refused.
	other := filepath.Join(work, "other")
	wardRun(t, nil, "keys", "generate", "--out", other)
	if code, _, errs := wardRun(t, append(env, "WARD_VERIFY_KEY="+filepath.Join(other, "ward.pub")), args...); code != 1 || !strings.Contains(errs, "not signed by this key") {
		t.Errorf("package on a base signed by another key: exit %d\n%s", code, errs)
	}
	notBase := strings.Split(lines[0].Image, "@")[0] + "@" + strings.Split(lines[0].Image, "@")[1]
	if code, _, errs := wardRun(t, env, "package", "--all", "--models", models, "--base", notBase); code != 2 || !strings.Contains(errs, "not an image of ward package-server") {
		t.Errorf("package on a model's image as base: exit %d\n%s", code, errs)
	}
}
