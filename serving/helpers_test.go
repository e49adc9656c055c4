package serving_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wardml/ward/internal/logging"
	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/models/modeltest"
	"github.com/wardml/ward/serving"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// writeModel writes an artifact where the server reads it, atomically, as
// the agent does (a rename into place).
func writeModel(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// config returns the default settings, as the flags give them, for the
// model at path.
func config(t testing.TB, path string) serving.Config {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	flags := serving.BindFlags(fs)
	if err := fs.Parse([]string{"--model", path}); err != nil {
		t.Fatal(err)
	}
	cfg, err := flags.Config(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = "127.0.0.1:0"
	cfg.Watch = 0
	return cfg
}

// lockedBuffer collects the prediction log.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the log lines written so far, decoded.
func (b *lockedBuffer) lines(t testing.TB) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	return decodeLines(t, b.buf.Bytes())
}

func decodeLines(t testing.TB, data []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		d := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			t.Fatalf("prediction log line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// server is a running in-process server.
type server struct {
	*serving.Server
	url  string
	log  *lockedBuffer
	ops  *lockedBuffer // the server's own logs
	stop context.CancelFunc
	done chan error
}

// start serves cfg's model on a loopback port until the test ends; the
// prediction log goes to s.log, unless stdout says otherwise.
func start(t testing.TB, cfg serving.Config, stdout ...io.Writer) *server {
	t.Helper()
	s := &server{log: &lockedBuffer{}, ops: &lockedBuffer{}, done: make(chan error, 1)}
	out := io.Writer(s.log)
	if len(stdout) > 0 {
		out = stdout[0]
	}
	srv, err := serving.New(cfg, serving.WithStdout(out), serving.WithLogger(testLogger(s.ops)))
	if err != nil {
		t.Fatal(err)
	}
	s.Server = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.url = "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	go func() { s.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-s.done; err != nil {
			t.Errorf("serve: %v", err)
		}
		s.done <- nil // later calls of shutdown see it stopped
	})
	return s
}

// logged waits until the prediction log holds n lines (its writer runs
// behind the answers), and returns them; more than n fails.
func (s *server) logged(t *testing.T, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		lines := s.log.lines(t)
		switch {
		case len(lines) > n:
			t.Fatalf("%d prediction log lines, want %d", len(lines), n)
		case len(lines) == n:
			return lines
		case time.Now().After(deadline):
			t.Fatalf("%d prediction log lines after 10 s, want %d", len(lines), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// shutdown stops the server and returns what Serve returned.
func (s *server) shutdown() error {
	s.stop()
	err := <-s.done
	s.done <- err
	return err
}

// post sends a JSON body to /v1/predict and decodes the answer.
func (s *server) post(t testing.TB, body any, header ...string) (int, map[string]any) {
	t.Helper()
	var data []byte
	switch b := body.(type) {
	case string:
		data = []byte(b)
	case []byte:
		data = b
	default:
		var err error
		if data, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequest("POST", s.url+"/v1/predict", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, decodeBody(t, resp.Body)
}

func (s *server) get(t testing.TB, path string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(s.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, decodeBody(t, resp.Body)
}

func (s *server) metrics(t testing.TB) string {
	t.Helper()
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func decodeBody(t testing.TB, r io.Reader) map[string]any {
	t.Helper()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("answer %q is not a JSON object: %v", data, err)
	}
	return m
}

// num reads a JSON number to its float64 bits.
func num(t testing.TB, v any) float64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%v (%T) is not a number", v, v)
	}
	f, err := n.Float64()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// modelFile writes an artifact into a fresh folder and returns its path.
func modelFile(t testing.TB, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "model.json")
	writeModel(t, path, data)
	return path
}

var (
	stOlafOnce sync.Once
	stOlafA    modeltest.Fitted
	stOlafB    modeltest.Fitted
)

// stOlaf returns two st-olaf models, modeltest.Fitted once per test binary.
func stOlaf(t testing.TB) (a, b modeltest.Fitted) {
	t.Helper()
	stOlafOnce.Do(func() {
		stOlafA = modeltest.StOlaf(t, 4000, 1, 1)
		stOlafB = modeltest.StOlaf(t, 4000, 2, 1)
	})
	if stOlafA.Artifact == nil || stOlafA.Artifact.Version == stOlafB.Artifact.Version {
		t.Fatal("the two test models did not fit, or are the same")
	}
	return stOlafA, stOlafB
}

func testLogger(w io.Writer) *slog.Logger {
	return logging.New(w, logging.Options{Format: "json", Level: "debug", Service: serving.ServiceName})
}

func (b *lockedBuffer) text() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newServer(cfg serving.Config) (*serving.Server, error) {
	return serving.New(cfg, serving.WithStdout(io.Discard))
}
