package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/tools/manifest"
)

// ward runs the CLI in-process against the manifest repo remote.
func ward(t *testing.T, remote string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := []string{"WARD_MANIFEST_REPO=" + remote, "WARD_LOG_FORMAT=json", "WARD_LOG_LEVEL=error"}
	if args[0] != "history" {
		args = append(args, "--author", "Ward CI <ci@ward.invalid>")
	}
	code := run(context.Background(), args, &out, &errOut, env)
	return code, out.String(), errOut.String()
}

// cliImage is an image of ward package for st-olaf at a version.
func cliImage(version string) manifest.Image {
	sum := sha256.Sum256([]byte("st-olaf/" + version))
	d := "sha256:" + hex.EncodeToString(sum[:])
	return manifest.Image{Ref: "registry.test/ward/st-olaf@" + d, Digest: d, Hospital: "st-olaf", Version: version, Metrics: map[string]float64{"mae": 900}}
}

// withVerifier makes ward deploy accept exactly v1 and v2, as the
// signature check accepts exactly the images signed with its key.
func withVerifier(t *testing.T) {
	old := imageVerifier
	t.Cleanup(func() { imageVerifier = old })
	imageVerifier = func(*App) (manifest.Verifier, error) {
		return func(_ context.Context, ref string) (manifest.Image, error) {
			for _, v := range []string{"v1", "v2"} {
				if img := cliImage(v); img.Ref == ref {
					return img, nil
				}
			}
			return manifest.Image{}, errors.New("no signature verifies with the key")
		}, nil
	}
}

func TestDeployRollbackHistoryCommands(t *testing.T) {
	remote := testenv.BareRepo(t)
	v1, v2 := cliImage("v1"), cliImage("v2")

	code, out, errOut := ward(t, remote, "manifest", "init")
	if code != exit.OK || !strings.Contains(out, "init: 1 commit(s); pushed") {
		t.Fatalf("manifest init: %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = ward(t, remote, "deploy", "--hospital", "st-olaf", "--image", "registry.test/ward/st-olaf:v1")
	if code != exit.Config || !strings.Contains(errOut, "reference by tag") {
		t.Fatalf("deploy by tag: %d %s", code, errOut)
	}
	code, _, errOut = ward(t, remote, "deploy", "--hospital", "st-olaf", "--image", v1.Ref)
	if code != exit.Config || !strings.Contains(errOut, "cannot verify image signatures") {
		t.Fatalf("deploy without a verifier: %d %s", code, errOut)
	}

	withVerifier(t)
	code, _, errOut = ward(t, remote, "deploy", "--hospital", "st-olaf", "--image", "registry.test/ward/st-olaf@sha256:"+strings.Repeat("0", 64))
	if code != exit.Failure || !strings.Contains(errOut, "no signature verifies") {
		t.Fatalf("unsigned deploy: %d %s", code, errOut)
	}
	for _, img := range []manifest.Image{v1, v2} {
		code, out, errOut = ward(t, remote, "deploy", "--hospital", "st-olaf", "--image", img.Ref)
		if code != exit.OK || !strings.Contains(out, "deploy st-olaf: ") || !strings.Contains(out, img.Version+" ("+img.Ref+"); pushed") {
			t.Fatalf("deploy %s: %d\n%s%s", img.Version, code, out, errOut)
		}
	}
	code, out, _ = ward(t, remote, "deploy", "--hospital", "st-olaf", "--image", v2.Ref)
	if code != exit.OK || !strings.Contains(out, "nothing to do: "+v2.Digest+" (v2) is live already") {
		t.Fatalf("deploy of the live digest: %d %s", code, out)
	}
	code, out, _ = ward(t, remote, "rollback", "--hospital", "st-olaf", "--dry-run")
	t.Logf("ward rollback --hospital st-olaf --dry-run:\n%s", out)
	if code != exit.OK || !strings.Contains(out, "-version: v2") || !strings.Contains(out, "dry run: v2 ("+v2.Ref+") -> v1") {
		t.Fatalf("rollback --dry-run: %d %s", code, out)
	}
	code, out, errOut = ward(t, remote, "rollback", "--hospital", "st-olaf")
	if code != exit.OK || !strings.Contains(out, "rollback st-olaf: v2 ("+v2.Ref+") -> v1 ("+v1.Ref+"); pushed") {
		t.Fatalf("rollback: %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = ward(t, remote, "deploy", "--hospital", "st-olaf", "--image", v2.Ref)
	if code != exit.Failure || !strings.Contains(errOut, "was rolled back by") || !strings.Contains(errOut, "--force") {
		t.Fatalf("deploy of the rolled-back digest: %d %s", code, errOut)
	}

	code, out, _ = ward(t, remote, "history", "--hospital", "st-olaf")
	t.Logf("ward history --hospital st-olaf:\n%s", out)
	for _, want := range []string{"st-olaf: live v1 (" + v1.Ref + ")", "rejected: v2 (" + v2.Digest + ")", "ACTION", "rollback", "reverts ", "reverted by ", "mae=900"} {
		if code != exit.OK || !strings.Contains(out, want) {
			t.Errorf("history lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = ward(t, remote, "history", "--hospital", "st-olaf", "--output", "json")
	var tl manifest.Timeline
	if err := json.Unmarshal([]byte(out), &tl); code != exit.OK || err != nil {
		t.Fatalf("history --output json: %d %v\n%s", code, err, out)
	}
	if len(tl.Events) != 3 || tl.Events[0].Action != manifest.ActionRollback || tl.Events[0].Reverts != tl.Events[1].Commit ||
		!tl.Events[1].Rejected || tl.Live.Version != "v1" || len(tl.Rejected) != 1 || tl.Rejected[0].Digest != v2.Digest {
		t.Fatalf("history json:\n%s", out)
	}

	code, _, errOut = ward(t, testenv.BareRepo(t), "rollback", "--hospital", "st-olaf")
	if code != exit.Failure || !strings.Contains(errOut, "nothing to roll back") {
		t.Fatalf("rollback on an empty repo: %d %s", code, errOut)
	}
	code, _, errOut = ward(t, "", "history", "--hospital", "st-olaf")
	if code != exit.Config || !strings.Contains(errOut, "WARD_MANIFEST_REPO") {
		t.Fatalf("no manifest repo: %d %s", code, errOut)
	}
}
