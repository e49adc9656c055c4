package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/tools/manifest"
)

// The "done when", against a bare repo driven by the real git:
// deploy v1 and the agent serves it; deploy v2 under load and it switches
// with no failed request; ward rollback, and it serves v1 again under
// load, with a revert commit in git log; the same with a git revert made
// by hand; and the next deploy of v2 is refused without --force.
func TestFollowsDeploysAndRollbacks(t *testing.T) {
	host, _, _ := inProcessRegistry(t)
	f := newFixture(t, host)
	v1 := f.publish("v1", model(t, "v1", 1), f.key)
	v2 := f.publish("v2", model(t, "v2", 3), f.key)
	ctx := context.Background()
	a := f.startAgent("")

	waitFor(t, 10*time.Second, "the first poll", func() bool { return !a.Status().LastPoll.IsZero() })
	if code := get(t, a.url+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before any deploy: %d", code)
	}
	if st := a.Status(); st.Serving != nil || st.LastError != nil || st.Manifest.Commit != head(t, f) {
		t.Fatalf("status before any deploy: %+v", st)
	}

	f.mustDeploy("v1")
	a.waitServing(t, f, "v1", 30*time.Second)
	if code := get(t, a.url+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz serving v1: %d", code)
	}
	waitFor(t, 5*time.Second, "in sync", func() bool { return a.Status().InSync })
	if st := a.Status(); st.Serving.Digest != v1.Digest || st.Serving.Image != v1.Ref || st.Manifest.Commit != head(t, f) || st.Manifest.Release.Digest != v1.Digest {
		t.Fatalf("status serving v1: %+v", st)
	}

	l := startLoad(a.url, f.request, 4, []string{"v1", "v2"})
	// A request whose body is still coming when the switch happens: it
	// went to v1, and v1 answers it after the switch.
	slow := startSlowRequest(t, a.url, f.request)
	time.Sleep(300 * time.Millisecond)
	f.mustDeploy("v2")
	a.waitServing(t, f, "v2", 30*time.Second)
	if v := slow.finish(t); v != "v1" {
		t.Errorf("the request in flight across the switch was answered by %q, want v1", v)
	}
	time.Sleep(300 * time.Millisecond)
	l.end(t, "v1", "v2")

	l = startLoad(a.url, f.request, 4, []string{"v2", "v1"})
	time.Sleep(300 * time.Millisecond)
	if _, err := f.repo.Rollback(ctx, manifest.Rollback{Hospital: "st-olaf"}); err != nil {
		t.Fatal(err)
	}
	a.waitServing(t, f, "v1", 30*time.Second)
	time.Sleep(300 * time.Millisecond)
	l.end(t, "v2", "v1")
	if s := testenv.Git(t, f.remote, "log", "-1", "--format=%s", "main"); s != `Revert "deploy(st-olaf): v2"` {
		t.Fatalf("git log after ward rollback: %q", s)
	}
	if _, err := f.deploy("v2", false); !errors.Is(err, manifest.ErrRejected) {
		t.Fatalf("deploy of the rolled-back v2: %v", err)
	}

	// Again with --force, undone this time by a git revert made by hand.
	if res, err := f.deploy("v2", true); err != nil || res.Status != manifest.StatusCommitted {
		t.Fatalf("deploy --force v2: %+v, %v", res, err)
	}
	a.waitServing(t, f, "v2", 30*time.Second)
	l = startLoad(a.url, f.request, 4, []string{"v2", "v1"})
	time.Sleep(300 * time.Millisecond)
	clone := filepath.Join(t.TempDir(), "clone")
	testenv.Git(t, "", "clone", "--quiet", f.remote, clone)
	testenv.Git(t, clone, "revert", "--no-edit", "HEAD")
	testenv.Git(t, clone, "push", "--quiet", "origin", "main")
	a.waitServing(t, f, "v1", 30*time.Second)
	time.Sleep(300 * time.Millisecond)
	l.end(t, "v2", "v1")
	if s := testenv.Git(t, f.remote, "log", "-1", "--format=%s", "main"); s != `Revert "deploy(st-olaf): v2"` {
		t.Fatalf("git log after git revert: %q", s)
	}
	if _, err := f.deploy("v2", false); !errors.Is(err, manifest.ErrRejected) {
		t.Fatalf("deploy of v2 after the git revert: %v", err)
	}

	waitFor(t, 5*time.Second, "in sync", func() bool { return a.Status().InSync })
	st := a.Status()
	if st.Serving.Version != "v1" || st.LastSwitch == nil || st.LastSwitch.From != "v2" || st.LastSwitch.To != "v1" || st.LastError != nil || st.Refused != nil {
		t.Fatalf("status: %+v, last switch %+v", st, st.LastSwitch)
	}
	metrics := body(t, a.url+"/agent/metrics")
	for _, want := range []string{
		`ward_agent_serving_info{digest="` + v1.Digest + `",hospital="st-olaf",version="v1"} 1`,
		`ward_agent_switches_total{hospital="st-olaf"} 5`,
		`ward_agent_in_sync{hospital="st-olaf"} 1`,
		`ward_agent_failures_total{hospital="st-olaf",step="verify"} 0`,
		`ward_agent_poll_duration_seconds_count{hospital="st-olaf"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// The model server's own metrics go through the front endpoint.
	if m := body(t, a.url+"/metrics"); !strings.Contains(m, "ward_serve_predictions_total") {
		t.Errorf("/metrics is not the model server's:\n%.300s", m)
	}

	// The prediction log: whole JSON lines, each naming the image that
	// answered.
	digests := map[string]string{"v1": v1.Digest, "v2": v2.Digest}
	n := 0
	sc := bufio.NewScanner(strings.NewReader(a.out.String()))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("prediction log line %d: %v: %s", n+1, err, sc.Text())
		}
		if v, _ := line["ward.model.version"].(string); line["ward.model.digest"] != digests[v] {
			t.Fatalf("prediction log line %d: %s", n+1, sc.Text())
		}
		n++
	}
	if n == 0 {
		t.Fatal("no prediction log")
	}

	pid := st.Serving.PID
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("the server (pid %d) outlived the agent: %v", pid, err)
	}
}

// A failure at any step keeps the version that serves, and the status
// and metrics say which step failed and why; against Debian's
// docker-registry (distribution 2.8). Each bad manifest is written by
// hand with the real git, then reverted by hand.
func TestKeepsServingWhatItRefuses(t *testing.T) {
	reg := testenv.StartRegistry(t)
	f := newFixture(t, reg.Host)
	v1 := f.publish("v1", model(t, "v1", 1), f.key)
	unsigned := f.publish("v2-unsigned", model(t, "v2-unsigned", 2), nil)
	otherKey := f.publish("v3-other-key", model(t, "v3-other-key", 2), f.other)
	mercy := f.publishAs("mercy", "v4-mercy", model(t, "v4-mercy", 2), f.key)
	refused := f.publish("v5-refused", []byte(`{"format_version": 1, "hospital": "st-olaf"}`), f.key)
	tampered := f.publish("v6-tampered", model(t, "v6-tampered", 2), f.key)
	inside := f.publish("v7-mercy-inside", modelOf(t, "mercy", "v7-mercy-inside", 2), f.key)
	a := f.startAgent("")
	f.mustDeploy("v1")
	a.waitServing(t, f, "v1", 30*time.Second)

	// One byte of the registry's copy of v6's model layer changes: its
	// manifests and signatures still check, and its size too.
	hex := strings.TrimPrefix(f.layers["v6-tampered"], "sha256:")
	blob := filepath.Join(reg.Storage, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data")
	data, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(blob, data, 0o644); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		change func() string
		step   string
		digest string
		want   string
	}{
		{"unsigned", func() string { return f.pinByHand(unsigned) }, StepVerify, unsigned.Digest, "not signed"},
		{"signed by another key", func() string { return f.pinByHand(otherKey) }, StepVerify, otherKey.Digest, "not signed by this key"},
		{"another hospital's image", func() string { return f.pinByHand(mercy) }, StepVerify, mercy.Digest, `the signed image is hospital "mercy"'s`},
		{"by tag", func() string {
			return f.handEdit("st-olaf: v1 by tag", func(dir string) {
				replaceIn(t, filepath.Join(dir, manifest.KustomizationFile), `digest: sha256:[0-9a-f]{64}`, "newTag: v1")
			})
		}, StepTag, "", `by tag "v1"`},
		{"invalid content", func() string {
			return f.handEdit("st-olaf: a typo", func(dir string) {
				replaceIn(t, filepath.Join(dir, manifest.ReleaseFile), `(?m)^hospital: st-olaf`, "hospital: st-olaf\nreplicas: 2")
			})
		}, StepManifest, "", "field replicas not found"},
		{"a model the server refuses", func() string { return f.pinByHand(refused) }, StepStart, refused.Digest, "ward-serve exited before it was ready (exit status 2): model "},
		{"a blob that does not match its digest", func() string { return f.pinByHand(tampered) }, StepPull, tampered.Digest, "the registry served bytes that hash to"},
		{"another hospital's model inside", func() string { return f.pinByHand(inside) }, StepReady, inside.Digest, `ward-serve serves a model of hospital "mercy"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			since := time.Now()
			commit := c.change()
			fail := a.waitFailure(t, c.step, since)
			t.Logf("status: %s: %s", fail.Step, fail.Message)
			if !strings.Contains(fail.Message, c.want) || fail.Digest != c.digest || fail.Commit != commit {
				t.Errorf("failure %+v, want %q at %s for %s", fail, c.want, commit, c.digest)
			}
			st := a.Status()
			if st.InSync || st.Serving == nil || st.Serving.Digest != v1.Digest {
				t.Errorf("status %+v", st)
			}
			if c.digest != "" && (st.Refused == nil || st.Refused.Digest != c.digest) {
				t.Errorf("refused %+v, want %s", st.Refused, c.digest)
			}
			if v, err := answer(http.DefaultClient, a.url, f.request); v != "v1" || err != nil {
				t.Errorf("answered by %q, %v; want v1", v, err)
			}
			if m := body(t, a.url+"/agent/metrics"); strings.Contains(m, `ward_agent_failures_total{hospital="st-olaf",step="`+c.step+`"} 0`) {
				t.Errorf("no failure counted at %s", c.step)
			}
			// Undone by hand: back in sync, the refusal cleared.
			clone := filepath.Join(t.TempDir(), "clone")
			testenv.Git(t, "", "clone", "--quiet", f.remote, clone)
			testenv.Git(t, clone, "revert", "--no-edit", "HEAD")
			testenv.Git(t, clone, "push", "--quiet", "origin", "main")
			waitFor(t, 30*time.Second, "back in sync", func() bool {
				st := a.Status()
				return st.InSync && st.Manifest.Commit == head(t, f) && st.Refused == nil
			})
		})
	}
	if st := a.Status(); st.LastSwitch.From != "" || st.LastSwitch.To != "v1" {
		t.Errorf("the agent switched: %+v", st.LastSwitch)
	}
}

// The last good version stays on disk: an agent started again serves it
// at once, with the registry stopped and the manifest repo out of reach;
// a version whose files changed on disk is not served, but pulled again.
func TestServesFromDiskAfterARestart(t *testing.T) {
	host, _, stopRegistry := inProcessRegistry(t)
	f := newFixture(t, host)
	f.publish("v1", model(t, "v1", 1), f.key)
	v2 := f.publish("v2", model(t, "v2", 3), f.key)
	data := t.TempDir()
	a := f.startAgent(data)
	f.mustDeploy("v1")
	a.waitServing(t, f, "v1", 30*time.Second)
	f.mustDeploy("v2")
	a.waitServing(t, f, "v2", 30*time.Second)
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}

	// The model on disk changed: the agent does not serve it, and its
	// first poll pulls v2 again.
	modelFile := filepath.Join(data, "versions", strings.TrimPrefix(v2.Digest, "sha256:"), "models", "model.json")
	fh, err := os.OpenFile(modelFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteString(" ")
	fh.Close()
	start := time.Now()
	b := f.startAgent(data, WithPoll(time.Hour))
	if fail := b.waitFailure(t, StepRestore, start); !strings.Contains(fail.Message, "changed since it was unpacked") {
		t.Errorf("restore failure: %+v", fail)
	}
	b.waitServing(t, f, "v2", 30*time.Second)
	since := b.Status().Serving.Since
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}

	stopRegistry()
	if err := os.Rename(f.remote, f.remote+".away"); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	c := f.startAgent(data, WithPoll(time.Hour))
	c.waitServing(t, f, "v2", 10*time.Second)
	t.Logf("served v2 from disk %s after the start", time.Since(start).Round(time.Millisecond))
	if fail := c.waitFailure(t, StepFetch, start); !strings.Contains(fail.Message, "fetch "+f.remote) {
		t.Errorf("fetch failure: %+v", fail)
	}
	if st := c.Status(); st.Serving.Digest != v2.Digest || !st.Serving.Since.Equal(since) {
		t.Errorf("serving %+v, want v2 since %s", st.Serving, since)
	}
}

// A server that exits by itself is started again.
func TestStartsACrashedServerAgain(t *testing.T) {
	host, _, _ := inProcessRegistry(t)
	f := newFixture(t, host)
	f.publish("v1", model(t, "v1", 1), f.key)
	a := f.startAgent("")
	f.mustDeploy("v1")
	a.waitServing(t, f, "v1", 30*time.Second)
	pid := a.Status().Serving.PID
	start := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if fail := a.waitFailure(t, StepCrash, start); !strings.Contains(fail.Message, "exited by itself: signal: killed") {
		t.Errorf("crash: %+v", fail)
	}
	a.waitServing(t, f, "v1", 30*time.Second)
	if st := a.Status(); st.Serving.PID == pid {
		t.Errorf("still pid %d", pid)
	}
}

// A data folder given relative to the working directory, as the default
// .ward/agent/<id> is, serves too; and a server setting that names a file
// relative to that directory finds it.
func TestServesFromARelativeDataFolder(t *testing.T) {
	host, _, _ := inProcessRegistry(t)
	f := newFixture(t, host)
	f.publish("v1", model(t, "v1", 1), f.key)
	t.Chdir(t.TempDir())
	if err := os.WriteFile("hash.key", []byte("a key of thirty-two bytes, or so"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := f.startAgent(filepath.Join(".ward", "agent", "data"),
		WithEnviron([]string{"WARD_HASH_INPUTS=true", "WARD_HASH_KEY_FILE=hash.key"}))
	f.mustDeploy("v1")
	a.waitServing(t, f, "v1", 30*time.Second)
}

// slowRequest is a request to the front endpoint sent in two parts.
type slowRequest struct {
	conn net.Conn
	rest []byte
}

// startSlowRequest sends a POST of body to /v1/predict, all but its
// second half.
func startSlowRequest(t testing.TB, url string, body []byte) *slowRequest {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	half := len(body) / 2
	fmt.Fprintf(conn, "POST /v1/predict HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	if _, err := conn.Write(body[:half]); err != nil {
		t.Fatal(err)
	}
	return &slowRequest{conn: conn, rest: body[half:]}
}

// finish sends the rest of the body and returns the version that answered.
func (s *slowRequest) finish(t testing.TB) string {
	t.Helper()
	if _, err := s.conn.Write(s.rest); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(s.conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a struct {
		ModelVersion string `json:"model_version"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s, %v", resp.Status, err)
	}
	return a.ModelVersion
}

func get(t testing.TB, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func body(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func head(t testing.TB, f *fixture) string {
	t.Helper()
	return testenv.Git(t, f.remote, "rev-parse", "main")
}
