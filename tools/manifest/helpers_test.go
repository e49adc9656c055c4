package manifest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardml/ward/internal/testenv"
)

// trusted is the image verifier of these tests. It accepts exactly the
// images it lists and refuses any other digest, as the cosign check of
// tools/signing accepts exactly the images signed with its key; that
// package tests the cryptography, and the CLI wires it in. What these tests
// check is what deploy does with a verifier's answer.
func trusted(imgs ...Image) Verifier {
	return func(_ context.Context, ref string) (Image, error) {
		for _, img := range imgs {
			if img.Ref == ref {
				return img, nil
			}
		}
		return Image{}, errors.New("no signature verifies with the key")
	}
}

// testImage is an image of ward package for a hospital and model version,
// with a digest of its own.
func testImage(hospital, version string) Image {
	sum := sha256.Sum256([]byte(hospital + "/" + version))
	d := "sha256:" + hex.EncodeToString(sum[:])
	return Image{
		Ref:      "registry.test/ward/" + hospital + "@" + d,
		Digest:   d,
		Hospital: hospital,
		Version:  version,
		Metrics:  map[string]float64{"mae": 1234.5, "under_rate": 0.2},
	}
}

// images are the images every test's verifier accepts.
var images = map[string]Image{}

func init() {
	for _, h := range []string{"st-olaf", "mercy"} {
		for _, v := range []string{"v1", "v2", "v3"} {
			images[h+"/"+v] = testImage(h, v)
		}
	}
}

func img(hv string) Image {
	i, ok := images[hv]
	if !ok {
		panic("no test image " + hv)
	}
	return i
}

func allImages() []Image {
	out := make([]Image, 0, len(images))
	for _, i := range images {
		out = append(out, i)
	}
	return out
}

// newRemote makes a bare repo with the real git and an initialized
// manifest in it, and a Repo for it.
func newRemote(t *testing.T, opts ...Option) (string, *Repo) {
	t.Helper()
	remote := testenv.BareRepo(t)
	r := newRepo(t, remote, opts...)
	res, err := r.Init(context.Background(), false)
	if err != nil || res.Status != StatusCommitted {
		t.Fatalf("init: %+v, %v", res, err)
	}
	return remote, r
}

func newRepo(t *testing.T, remote string, opts ...Option) *Repo {
	t.Helper()
	base := []Option{WithVerifier(trusted(allImages()...)), WithAuthor("Ward CI <ci@ward.invalid>")}
	r, err := New(remote, append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func deploy(t *testing.T, r *Repo, hv string) *Result {
	t.Helper()
	i := img(hv)
	res, err := r.Deploy(context.Background(), Deployment{Hospital: i.Hospital, Image: i.Ref})
	if err != nil {
		t.Fatalf("deploy %s: %v", hv, err)
	}
	if res.Status != StatusCommitted {
		t.Fatalf("deploy %s: status %s (%s)", hv, res.Status, res.Reason)
	}
	return res
}

// clone clones the remote with the real git into a temporary folder.
func clone(t *testing.T, remote string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "clone")
	testenv.Git(t, "", "clone", "--quiet", remote, dir)
	return dir
}

// remoteHead is the remote's main, read by the real git.
func remoteHead(t *testing.T, remote string) string {
	t.Helper()
	return testenv.Git(t, remote, "rev-parse", "refs/heads/main")
}

// gitFile is a file at a commit of the remote, "" when it is not there.
func gitFile(t *testing.T, remote, commit, name string) string {
	t.Helper()
	out, err := gitOutput(remote, "show", commit+":"+name)
	if err != nil {
		return ""
	}
	return out
}

func gitOutput(dir string, args ...string) (string, error) {
	cmd := execGit(dir, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("git %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func writeFile(t *testing.T, name, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, target error, contains ...string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
	for _, c := range contains {
		if !strings.Contains(err.Error(), c) {
			t.Errorf("error %q does not say %q", err, c)
		}
	}
}
