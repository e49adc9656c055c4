package manifest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardml/ward/internal/testenv"
)

// Two processes deploy different hospitals at the same moment against one
// remote, 20 times over: both commits land every time, and nothing is lost.
func TestConcurrentDeploysFromTwoProcesses(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	retried := 0
	for round := range 20 {
		remote, r := newRemote(t)
		start := time.Now().Add(300 * time.Millisecond).UnixNano()
		var cmds []*exec.Cmd
		var outs []*bytes.Buffer
		for _, spec := range []string{"st-olaf/v1", "mercy/v1"} {
			cmd := exec.Command(exe, "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"="+spec, "MANIFEST_TEST_REMOTE="+remote, "MANIFEST_TEST_START="+strconv.FormatInt(start, 10))
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cmds, outs = append(cmds, cmd), append(outs, &out)
		}
		for i, cmd := range cmds {
			if err := cmd.Wait(); err != nil {
				t.Fatalf("round %d: process %d: %v\n%s", round, i, err, outs[i])
			}
			var res Result
			if err := json.Unmarshal(outs[i].Bytes(), &res); err != nil {
				t.Fatalf("round %d: process %d printed %q", round, i, outs[i])
			}
			if res.Status != StatusCommitted {
				t.Fatalf("round %d: process %d: %+v", round, i, res)
			}
			retried += res.Attempts - 1
		}
		log := testenv.Git(t, remote, "log", "--format=%s", "main")
		if !strings.Contains(log, "deploy(st-olaf): v1") || !strings.Contains(log, "deploy(mercy): v1") || strings.Count(log, "\n") != 2 {
			t.Fatalf("round %d: git log:\n%s", round, log)
		}
		for _, h := range []string{"st-olaf", "mercy"} {
			if tl := history(t, r, h); tl.Live == nil || tl.Live.Digest != img(h+"/v1").Digest {
				t.Fatalf("round %d: %s live %+v", round, h, tl.Live)
			}
		}
	}
	t.Logf("20 rounds of two concurrent deploys: %d pushes retried after the remote moved", retried)
}

// A commit that lands between the clone and the push (another deploy) is
// fetched, the change is made again on top of it, and both stay.
func TestPushRetriesWhenTheRemoteMoved(t *testing.T) {
	remote, r := newRemote(t)
	other := newRepo(t, remote)
	calls := 0
	res, err := r.publish(context.Background(), false, func(c *checkout) (*Result, error) {
		calls++
		if calls == 1 {
			// Another command deploys after this one cloned.
			deploy(t, other, "mercy/v1")
		}
		if err := c.write("hospitals/st-olaf/note.txt", []byte(fmt.Sprint("attempt ", calls))); err != nil {
			return nil, err
		}
		_, err := r.commit(c, "test: a change", false)
		return &Result{Action: "test"}, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 || res.Attempts != 2 {
		t.Fatalf("calls %d, attempts %d", calls, res.Attempts)
	}
	if log := testenv.Git(t, remote, "log", "--format=%s", "main"); log != "test: a change\ndeploy(mercy): v1\nmanifest: init the layout" {
		t.Fatalf("git log:\n%s", log)
	}
	if got := gitFile(t, remote, "main", "hospitals/st-olaf/note.txt"); got != "attempt 2" {
		t.Fatalf("note %q", got)
	}
}

// When the remote keeps moving, the push gives up after the bound, with an
// error that says so, and pushes nothing of its own.
func TestPushGivesUpAfterTheBound(t *testing.T) {
	remote, _ := newRemote(t)
	r := newRepo(t, remote, WithAttempts(3))
	other := newRepo(t, remote)
	versions := []string{"mercy/v1", "mercy/v2", "mercy/v3"}
	calls := 0
	_, err := r.publish(context.Background(), false, func(c *checkout) (*Result, error) {
		deploy(t, other, versions[calls])
		calls++
		if err := c.write("hospitals/st-olaf/note.txt", []byte("x")); err != nil {
			return nil, err
		}
		_, err := r.commit(c, "test: a change", false)
		return &Result{Action: "test"}, err
	})
	if err == nil || !strings.Contains(err.Error(), "moved under each of 3 attempts") || calls != 3 {
		t.Fatalf("calls %d, error %v", calls, err)
	}
	if log := testenv.Git(t, remote, "log", "--format=%s", "main"); strings.Contains(log, "test: a change") {
		t.Fatalf("git log:\n%s", log)
	}
}
