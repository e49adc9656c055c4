package manifest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardml/ward/internal/testenv"
)

// The Follower sees each change of the remote as the real git made it:
// deploys, a revert by hand, a hand edit by tag, and a remote gone.
func TestFollowerReadsTheHead(t *testing.T) {
	ctx := context.Background()
	remote := testenv.BareRepo(t)
	r := newRepo(t, remote)
	f := r.Follow()
	read := func() Head {
		t.Helper()
		h, err := f.Read(ctx, "st-olaf", "")
		if err != nil {
			t.Fatal(err)
		}
		if h.Commit != "" && h.Commit != remoteHead(t, remote) {
			t.Fatalf("read at %s, the remote is at %s", h.Commit, remoteHead(t, remote))
		}
		return h
	}
	if h := read(); h.Commit != "" || h.Release != nil {
		t.Fatalf("empty remote: %+v", h)
	}
	if _, err := r.Init(ctx, false); err != nil {
		t.Fatal(err)
	}
	if h := read(); h.Commit == "" || h.Release != nil {
		t.Fatalf("before the first deploy: %+v", h)
	}
	deploy(t, r, "st-olaf/v1")
	if h := read(); h.Release == nil || h.Release.Digest != img("st-olaf/v1").Digest {
		t.Fatalf("after deploy v1: %+v", h)
	}
	c2 := deploy(t, r, "st-olaf/v2").Commits[0]
	deploy(t, r, "mercy/v1")
	if h := read(); h.Release.Digest != img("st-olaf/v2").Digest {
		t.Fatalf("after deploy v2: %+v", h.Release)
	}
	if h := read(); h.Release.Version != "v2" {
		t.Fatalf("read again: %+v", h.Release)
	}

	dir := clone(t, remote)
	testenv.Git(t, dir, "revert", "--no-edit", c2)
	testenv.Git(t, dir, "push", "--quiet", "origin", "main")
	if h := read(); h.Release.Digest != img("st-olaf/v1").Digest {
		t.Fatalf("after git revert: %+v", h.Release)
	}

	k := filepath.Join(dir, "hospitals", "st-olaf", "kustomization.yaml")
	data, err := os.ReadFile(k)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, k, strings.Replace(string(data), "digest: "+img("st-olaf/v1").Digest, "newTag: v2", 1))
	testenv.Git(t, dir, "commit", "--quiet", "-am", "st-olaf: v2 by tag")
	testenv.Git(t, dir, "push", "--quiet", "origin", "main")
	h, err := f.Read(ctx, "st-olaf", "")
	wantErr(t, err, ErrInvalid, "hospitals/st-olaf/kustomization.yaml: ", `by tag "v2"`)
	if !errors.Is(err, ErrTagged) || h.Commit != remoteHead(t, remote) {
		t.Fatalf("tag: %v, head %+v", err, h)
	}

	if err := os.RemoveAll(remote); err != nil {
		t.Fatal(err)
	}
	_, err = f.Read(ctx, "st-olaf", "")
	wantErr(t, err, ErrUnreachable, "fetch "+remote)
	_, err = f.Read(ctx, "../etc", "")
	wantErr(t, err, ErrUsage)
}
