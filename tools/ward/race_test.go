package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/wardml/ward/internal/testenv"
)

// Two ward processes (the real binary) deploy v2 and v3 of one hospital at
// once, from v1, 20 times over, against a bare repo of the real git. No
// round lands the older v2 silently: either v3 is live, or v3's process
// exited non-zero naming v2's digest, which it found; every process that
// lost exited non-zero naming the digest it found, and every one that
// landed replaced the release it had read.
func TestRacingDeploysLoseNoUpdate(t *testing.T) {
	testenv.LookPath(t, "go", "golang-go")
	bin := filepath.Join(t.TempDir(), "ward")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ward: %v\n%s", err, out)
	}
	imgs := publishImages(t)
	v1, v2, v3 := imgs.v1, imgs.v2, imgs.v3
	lost, racedThrough := 0, 0
	for round := range 20 {
		remote := testenv.BareRepo(t)
		if code, _, errOut := ward(t, remote, imgs.env, "manifest", "init"); code != 0 {
			t.Fatalf("init: %d %s", code, errOut)
		}
		if code, _, errOut := ward(t, remote, imgs.env, "deploy", "--hospital", "st-olaf", "--image", v1.Ref); code != 0 {
			t.Fatalf("deploy v1: %d %s", code, errOut)
		}
		type outcome struct {
			code           int
			stdout, stderr string
		}
		out := map[string]*outcome{}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, img := range []string{v2.Ref, v3.Ref} {
			o := &outcome{}
			out[img] = o
			cmd := exec.Command(bin, "deploy", "--hospital", "st-olaf", "--image", img, "--author", "Ward CI <ci@ward.invalid>", "--output", "json")
			cmd.Env = append(os.Environ(), append(imgs.env, "WARD_MANIFEST_REPO="+remote, "WARD_LOG_FORMAT=json")...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			wg.Go(func() {
				<-start
				err := cmd.Run()
				o.code, o.stdout, o.stderr = cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
				if err != nil && cmd.ProcessState == nil {
					o.code, o.stderr = -1, err.Error()
				}
			})
		}
		close(start)
		wg.Wait()
		live := testenv.Git(t, remote, "show", "main:hospitals/st-olaf/release.yaml")
		o2, o3 := out[v2.Ref], out[v3.Ref]
		switch {
		case strings.Contains(live, "digest: "+v3.Digest):
			if o3.code != 0 {
				t.Fatalf("round %d: v3 is live but its deploy exited %d: %s", round, o3.code, o3.stderr)
			}
			if o2.code == 0 {
				racedThrough++ // v2 landed first, v3 replaced it knowingly
			} else if !strings.Contains(o2.stderr, v3.Digest) {
				t.Fatalf("round %d: v2's deploy lost (exit %d) without naming v3's digest it found: %s", round, o2.code, o2.stderr)
			}
		case strings.Contains(live, "digest: "+v2.Digest):
			if o2.code != 0 || o3.code == 0 || !strings.Contains(o3.stderr, v2.Digest) {
				t.Fatalf("round %d: the older v2 landed silently: v2 exit %d, v3 exit %d: %s", round, o2.code, o3.code, o3.stderr)
			}
		default:
			t.Fatalf("round %d: neither landed: %s\nv2: %s\nv3: %s", round, live, o2.stderr, o3.stderr)
		}
		for img, o := range out {
			// A deploy that lands replaced the release it read: on its
			// first push, since nothing but the other deploy moves here.
			if o.code == 0 && !strings.Contains(o.stdout, `"attempts": 1`) {
				t.Errorf("round %d: the deploy of %s landed over a release it had not read: %s", round, img, o.stdout)
			}
			if o.code != 0 {
				lost++
				if o.code != 1 {
					t.Errorf("round %d: the losing deploy of %s exited %d, want 1: %s", round, img, o.code, o.stderr)
				}
			}
		}
	}
	t.Logf("20 rounds: %d deploys refused as losers, %d rounds where v3 landed over v2 knowingly", lost, racedThrough)
	if lost == 0 {
		t.Error("no round raced: no deploy was refused")
	}
}
