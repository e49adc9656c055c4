package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/internal/testenv"
)

// The commands with a trust file: manifest init --trust, deploys signed
// with WARD_MANIFEST_SIGN_KEY, history that says who signed; an unsigned
// commit makes history and deploy exit 1 naming it, until a signed revert;
// a downgrade needs --allow-downgrade; --expect-digest pins the release.
func TestTrustCommands(t *testing.T) {
	remote := testenv.BareRepo(t)
	imgs := publishImages(t)
	ci := testenv.NewSSHKey(t, "ward-ci")
	person := testenv.NewGPGKey(t, "Grace Hopper", "grace@ward.invalid")
	trust := filepath.Join(t.TempDir(), "trust.txt")
	if err := os.WriteFile(trust, []byte(ci.AllowedSigner("ci@ward.invalid")+"\n"+person.Public), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append([]string{"WARD_MANIFEST_SIGN_KEY=" + ci.Private}, imgs.env...)

	if code, _, errOut := ward(t, remote, imgs.env, "manifest", "init", "--trust", trust); code != exit.Config || !strings.Contains(errOut, "WARD_MANIFEST_SIGN_KEY") {
		t.Fatalf("init --trust without a signing key: %d %s", code, errOut)
	}
	if code, out, errOut := ward(t, remote, env, "manifest", "init", "--trust", trust); code != exit.OK {
		t.Fatalf("init --trust: %d %s%s", code, out, errOut)
	}
	for _, v := range []string{imgs.v1.Ref, imgs.v3.Ref} {
		if code, _, errOut := ward(t, remote, env, "deploy", "--hospital", "st-olaf", "--image", v); code != exit.OK {
			t.Fatalf("deploy %s: %d %s", v, code, errOut)
		}
	}
	code, out, _ := ward(t, remote, env, "history", "--hospital", "st-olaf")
	if code != exit.OK || !strings.Contains(out, "signed: its release is decided by") || !strings.Contains(out, "SSH ci@ward.invalid") {
		t.Fatalf("history: %d\n%s", code, out)
	}

	// Downgrades and the expected digest.
	code, _, errOut := ward(t, remote, env, "deploy", "--hospital", "st-olaf", "--image", imgs.v2.Ref)
	if code != exit.Failure || !strings.Contains(errOut, "is older than v3") || !strings.Contains(errOut, "--allow-downgrade") {
		t.Fatalf("downgrade: %d %s", code, errOut)
	}
	code, _, errOut = ward(t, remote, env, "deploy", "--hospital", "st-olaf", "--image", imgs.v2.Ref, "--allow-downgrade", "--expect-digest", imgs.v1.Digest)
	if code != exit.Failure || !strings.Contains(errOut, "holds "+imgs.v3.Digest) {
		t.Fatalf("deploy expecting v1: %d %s", code, errOut)
	}
	code, _, errOut = ward(t, remote, env, "deploy", "--hospital", "st-olaf", "--image", imgs.v2.Ref, "--allow-downgrade", "--expect-digest", imgs.v3.Digest)
	if code != exit.OK {
		t.Fatalf("deploy --allow-downgrade: %d %s", code, errOut)
	}
	if msg := testenv.Git(t, remote, "log", "-1", "--format=%B", "main"); !strings.Contains(msg, "Ward-Allow-Downgrade: v3 -> v2") {
		t.Fatalf("the downgrade's message:\n%s", msg)
	}

	// An unsigned hand commit to the hospital's folder.
	dir := filepath.Join(t.TempDir(), "clone")
	testenv.Git(t, "", "clone", "--quiet", remote, dir)
	if err := os.WriteFile(filepath.Join(dir, "hospitals/st-olaf/NOTES.md"), []byte("hand edit\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Git(t, dir, "add", "-A")
	testenv.GitSigned(t, dir, nil, "commit", "--quiet", "-m", "st-olaf: a note")
	testenv.Git(t, dir, "push", "--quiet", "origin", "main")
	unsigned := testenv.Git(t, dir, "rev-parse", "HEAD")
	for _, args := range [][]string{{"history", "--hospital", "st-olaf"}, {"deploy", "--hospital", "st-olaf", "--image", imgs.v3.Ref}, {"rollback", "--hospital", "st-olaf"}} {
		code, _, errOut := ward(t, remote, env, args...)
		if code != exit.Failure || !strings.Contains(errOut, unsigned[:12]) || !strings.Contains(errOut, "not signed") {
			t.Fatalf("%s after an unsigned commit: %d %s", args[0], code, errOut)
		}
	}
	testenv.GitSigned(t, dir, person, "revert", "--no-edit", "HEAD")
	testenv.Git(t, dir, "push", "--quiet", "origin", "main")
	if code, out, errOut := ward(t, remote, env, "history", "--hospital", "st-olaf"); code != exit.OK || !strings.Contains(out, person.Fingerprint) {
		t.Fatalf("history after a signed revert: %d %s%s", code, out, errOut)
	}
	// WARD_MANIFEST_TRUST that lists only the person refuses ward's commits.
	pinned := filepath.Join(t.TempDir(), "pinned.txt")
	if err := os.WriteFile(pinned, []byte(person.Public), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := ward(t, remote, append([]string{"WARD_MANIFEST_TRUST=" + pinned}, env...), "history", "--hospital", "mercy"); code != exit.Failure || !strings.Contains(errOut, "does not list") {
		t.Fatalf("history with a pinned trust: %d %s", code, errOut)
	}
}
