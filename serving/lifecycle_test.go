package serving_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/serving"
)

// waitFor polls until cond holds, or fails the test after 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *server) version(t *testing.T) string {
	t.Helper()
	_, info := s.get(t, "/v1/model")
	return info["version"].(string)
}

func TestSwapWhenTheFileChanges(t *testing.T) {
	a, b := stOlaf(t)
	path := modelFile(t, a.Data)
	cfg := config(t, path)
	cfg.Watch = 20 * time.Millisecond
	s := start(t, cfg)
	if _, ans := s.post(t, stOlafCase()); ans["model_version"] != a.Artifact.Version {
		t.Fatalf("answered by %v, want %v", ans["model_version"], a.Artifact.Version)
	}
	writeModel(t, path, b.Data)
	waitFor(t, "the watch to swap in model B", func() bool { return s.version(t) == b.Artifact.Version })
	_, ans := s.post(t, stOlafCase())
	if ans["model_version"] != b.Artifact.Version || ans["model_digest"] != "sha256:"+fileSHA(b.Data) {
		t.Errorf("answered by %v %v, want %v", ans["model_version"], ans["model_digest"], b.Artifact.Version)
	}
	if want := predictLocally(t, b.Artifact, stOlafCase()); num(t, ans["prediction"]) != want.Value {
		t.Errorf("model B predicts %v, the server %v", want.Value, ans["prediction"])
	}
	m := s.metrics(t)
	for _, want := range []string{
		`ward_serve_model_loads_total{outcome="swapped"} 1`,
		`ward_serve_model_info{digest="sha256:` + fileSHA(b.Data) + `",hospital="st-olaf",version="` + b.Artifact.Version + `"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grep(m, "ward_serve_model"))
		}
	}
	if strings.Contains(grep(m, "ward_serve_model_info{"), a.Artifact.Version) {
		t.Error("model_info still reports model A")
	}
	if !strings.Contains(s.ops.text(), `"message":"model swapped"`) {
		t.Errorf("no swap in the server's log:\n%s", s.ops.text())
	}
}

func TestBadSwapIsRefused(t *testing.T) {
	a, b := stOlaf(t)
	path := modelFile(t, a.Data)
	cfg := config(t, path)
	cfg.Digest = "sha256:" + strings.Repeat("1", 64) // the image digest the agent knows
	s := start(t, cfg)
	if swapped, err := s.Reload(); swapped || err != nil {
		t.Fatalf("reloading the same file: swapped %v, %v", swapped, err)
	}
	for _, c := range []struct {
		name string
		data []byte
		msg  string
	}{
		{"truncated", a.Data[:len(a.Data)/2], "truncated"},
		{"not an artifact", []byte(`{"model": "ridge"}`), "no format_version"},
		{"newer format", bytes.Replace(a.Data, []byte(`"format_version": 1`), []byte(`"format_version": 2`), 1), "format version 2 is newer"},
		{"another hospital", bytes.Replace(b.Data, []byte(`"hospital": "st-olaf"`), []byte(`"hospital": "st-mary"`), 1), "is for hospital st-mary, and this server serves st-olaf"},
	} {
		t.Run(c.name, func(t *testing.T) {
			writeModel(t, path, c.data)
			swapped, err := s.Reload()
			if swapped || err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("swapped %v, error %v; want a refusal with %q", swapped, err, c.msg)
			}
			code, ans := s.post(t, stOlafCase())
			if code != 200 || ans["model_version"] != a.Artifact.Version || ans["model_digest"] != cfg.Digest {
				t.Errorf("after the refusal: %d %v %v, want model A still serving as %s", code, ans["model_version"], ans["model_digest"], cfg.Digest)
			}
		})
	}
	if m := s.metrics(t); !strings.Contains(m, `ward_serve_model_loads_total{outcome="refused"} 4`) {
		t.Errorf("metrics:\n%s", grep(m, "loads_total"))
	}
	if !strings.Contains(s.ops.text(), "new model refused; the old one keeps serving") {
		t.Error("the refusals are not logged")
	}
	// The digest the server was given names model A only: B is named by
	// its file, and A again by the given digest.
	writeModel(t, path, b.Data)
	if swapped, err := s.Reload(); !swapped || err != nil {
		t.Fatalf("a good model: swapped %v, %v", swapped, err)
	}
	if _, ans := s.post(t, stOlafCase()); ans["model_digest"] != "sha256:"+fileSHA(b.Data) {
		t.Errorf("model B's digest %v", ans["model_digest"])
	}
	writeModel(t, path, a.Data)
	if swapped, err := s.Reload(); !swapped || err != nil {
		t.Fatalf("back to A: swapped %v, %v", swapped, err)
	}
	if _, ans := s.post(t, stOlafCase()); ans["model_digest"] != cfg.Digest {
		t.Errorf("model A's digest %v, want %s", ans["model_digest"], cfg.Digest)
	}
}

// slowRequest starts a prediction whose body arrives in two parts, and
// returns once the handler is running: the client sends the body only
// after the server's 100 Continue, which the handler's first read of the
// body sends. finish sends the rest and returns the answer.
func slowRequest(t *testing.T, url string) (finish func() (int, map[string]any)) {
	t.Helper()
	body, _ := json.Marshal(stOlafCase())
	pr, pw := io.Pipe()
	req, err := http.NewRequest("POST", url+"/v1/predict", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(body))
	req.Header.Set("Expect", "100-continue")
	client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: time.Minute}}
	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := client.Do(req)
		done <- result{resp, err}
	}()
	if _, err := pw.Write(body[:10]); err != nil { // returns once the body is being sent
		t.Fatal(err)
	}
	return func() (int, map[string]any) {
		if _, err := pw.Write(body[10:]); err != nil {
			t.Fatal(err)
		}
		pw.Close()
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		defer r.resp.Body.Close()
		return r.resp.StatusCode, decodeBody(t, r.resp.Body)
	}
}

func TestRequestInFlightFinishesOnTheOldModel(t *testing.T) {
	a, b := stOlaf(t)
	path := modelFile(t, a.Data)
	s := start(t, config(t, path))
	finish := slowRequest(t, s.url)
	writeModel(t, path, b.Data)
	if swapped, err := s.Reload(); !swapped || err != nil {
		t.Fatalf("swap: %v %v", swapped, err)
	}
	if v := s.version(t); v != b.Artifact.Version {
		t.Fatalf("serving %s after the swap", v)
	}
	code, ans := finish()
	if code != 200 || ans["model_version"] != a.Artifact.Version {
		t.Errorf("the request in flight: %d, model %v; want 200 from model A (%s)", code, ans["model_version"], a.Artifact.Version)
	}
	if want := predictLocally(t, a.Artifact, stOlafCase()); num(t, ans["prediction"]) != want.Value {
		t.Errorf("prediction %v, model A's %v", ans["prediction"], want.Value)
	}
}

func TestShutdownDrains(t *testing.T) {
	a, _ := stOlaf(t)
	cfg := config(t, modelFile(t, a.Data))
	cfg.ShutdownDelay = 500 * time.Millisecond
	s := start(t, cfg)
	finish := slowRequest(t, s.url)
	stopped := make(chan error, 1)
	go func() { stopped <- s.shutdown() }()

	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	waitFor(t, "/readyz to turn not ready", func() bool {
		resp, err := fresh.Get(s.url + "/readyz")
		if err != nil {
			t.Fatalf("/readyz during the shutdown delay: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	if resp, err := fresh.Get(s.url + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/healthz while draining: %v", err)
	}
	addr := strings.TrimPrefix(s.url, "http://")
	waitFor(t, "the listener to close", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned (%v) with a request in flight", err)
	default:
	}
	code, ans := finish()
	if code != 200 || ans["model_version"] != a.Artifact.Version {
		t.Errorf("the request in flight during shutdown: %d %v", code, ans)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if lines := s.log.lines(t); len(lines) != 1 {
		t.Errorf("%d prediction lines, want the drained request's", len(lines))
	}
	if ops := s.ops.text(); !strings.Contains(ops, `"message":"draining"`) || !strings.Contains(ops, `"message":"stopped"`) {
		t.Errorf("server log:\n%s", ops)
	}
}

func TestSlowClientsMeetTimeouts(t *testing.T) {
	a, _ := stOlaf(t)
	cfg := config(t, modelFile(t, a.Data))
	cfg.ReadTimeout = 300 * time.Millisecond
	s := start(t, cfg)
	addr := strings.TrimPrefix(s.url, "http://")
	for _, c := range []struct{ name, sent string }{
		{"headers never end", "POST /v1/predict HTTP/1.1\r\nHost: ward\r\nContent-Le"},
		{"body never ends", "POST /v1/predict HTTP/1.1\r\nHost: ward\r\nContent-Length: 300\r\n\r\n{\"age\": 4"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			began := time.Now()
			if _, err := conn.Write([]byte(c.sent)); err != nil {
				t.Fatal(err)
			}
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(conn)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the server kept a stalled connection open for 5 s (read timeout %s)", cfg.ReadTimeout)
			}
			if took := time.Since(began); took < cfg.ReadTimeout/2 {
				t.Errorf("closed after %s, before the timeout", took)
			}
			if len(got) > 0 && !strings.Contains(string(got), "400") {
				t.Errorf("answer to a stalled request: %q", got)
			}
		})
	}
	if code, _ := s.post(t, stOlafCase()); code != 200 {
		t.Errorf("a prompt client after the stalled ones: %d", code)
	}
}

func TestStartRefusesABadModel(t *testing.T) {
	a, _ := stOlaf(t)
	dir := t.TempDir()
	for _, c := range []struct{ name, file, msg string }{
		{"missing", dir + "/none.json", "no such file"},
		{"truncated", writeFile(t, dir+"/t.json", a.Data[:100]), "truncated"},
		{"empty", writeFile(t, dir+"/e.json", nil), "empty: no JSON at all"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := newServer(config(t, c.file))
			if err == nil || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), c.file) {
				t.Errorf("error %v: want %q naming %s", err, c.msg, c.file)
			}
			if err := serving.Run(context.Background(), config(t, c.file), serving.WithStdout(io.Discard)); exit.Code(err) != exit.Config {
				t.Errorf("Run: %v, exit code %d; want %d", err, exit.Code(err), exit.Config)
			}
		})
	}
}

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
