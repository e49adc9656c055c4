package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// backend is one model server the agent started: a child process on a
// private loopback port, and the proxy that sends it requests.
type backend struct {
	version   *version
	addr      string
	pid       int
	cmd       *exec.Cmd
	proxy     *httputil.ReverseProxy
	transport *http.Transport
	tail      *tail
	// refs counts the front's requests that were given this server and
	// have not finished: it is stopped only once they have.
	refs atomic.Int64
	// exited is closed when the process has exited, exitErr set before.
	exited  chan struct{}
	exitErr error
}

// start runs the server of v and waits until it is ready and serves the
// model it was given; a server that is not is stopped.
func (a *Agent) start(ctx context.Context, v *version) (*backend, error) {
	port, err := freePort()
	if err != nil {
		return nil, &stepError{step: StepStart, err: err}
	}
	b := &backend{version: v, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), tail: &tail{}, exited: make(chan struct{})}
	stdout, stderr := a.predictions.writer(), a.serverLog.writer()
	b.cmd = exec.Command(filepath.Join(v.dir, filepath.FromSlash(serverFile)), "--model", filepath.Join(v.dir, filepath.FromSlash(modelFile)), "--listen", b.addr, "--watch", "0")
	// The server runs in the agent's working directory, so that a path
	// the admin gave relative to it (WARD_HASH_KEY_FILE, a sqlite:
	// WARD_PREDICTIONS_DB) means the same to both.
	b.cmd.Env = a.serverEnv(v.Digest)
	b.cmd.Stdout = stdout
	b.cmd.Stderr = io.MultiWriter(stderr, b.tail)
	b.cmd.SysProcAttr = childAttr()
	if err := b.cmd.Start(); err != nil {
		return nil, &stepError{step: StepStart, err: fmt.Errorf("start %s: %w", b.cmd.Path, err)}
	}
	b.pid = b.cmd.Process.Pid
	go func() {
		b.exitErr = b.cmd.Wait()
		stdout.flush()
		stderr.flush()
		close(b.exited)
	}()
	target := &url.URL{Scheme: "http", Host: b.addr}
	b.transport = &http.Transport{
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		// Many idle connections: under load, fewer would be closed and
		// dialled again for every burst. Idle ones close well before the
		// server's own idle timeout (60s), so that a request is never
		// sent on a connection the server is closing.
		MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second,
		DisableCompression: true,
	}
	b.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.SetXForwarded()
		},
		Transport:      b.transport,
		ModifyResponse: closeIfBodyLeft,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			a.metrics.proxyErrors.Inc()
			a.log.Warn("proxy: the model server did not answer", "error", err, "url.path", r.URL.Path, "ward.model.version", v.Version)
			writeJSON(w, http.StatusBadGateway, map[string]string{"error": "the model server did not answer: " + err.Error()})
		},
	}
	if err := a.ready(ctx, b); err != nil {
		b.kill()
		return nil, err
	}
	return b, nil
}

// ready waits for b's /readyz, then checks with /v1/model that it serves
// the hospital's model from the image the agent unpacked.
func (a *Agent) ready(ctx context.Context, b *backend) error {
	client := &http.Client{Transport: b.transport, Timeout: 2 * time.Second}
	deadline := time.NewTimer(a.readyTimeout)
	defer deadline.Stop()
	for {
		resp, err := client.Get("http://" + b.addr + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-b.exited:
			return &stepError{step: StepStart, err: fmt.Errorf("ward-serve exited before it was ready (%v)%s", b.exitErr, b.tail.summary())}
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return &stepError{step: StepReady, err: fmt.Errorf("ward-serve on %s not ready within %s%s", b.addr, a.readyTimeout, b.tail.summary())}
		case <-time.After(20 * time.Millisecond):
		}
	}
	resp, err := client.Get("http://" + b.addr + "/v1/model")
	if err != nil {
		return &stepError{step: StepReady, err: fmt.Errorf("ward-serve on %s: GET /v1/model: %w", b.addr, err)}
	}
	defer resp.Body.Close()
	var info struct{ Hospital, Digest, Version string }
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || resp.StatusCode != http.StatusOK {
		return &stepError{step: StepReady, err: fmt.Errorf("ward-serve on %s: GET /v1/model: %s, %v", b.addr, resp.Status, err)}
	}
	if info.Hospital != a.hospital || info.Digest != b.version.Digest {
		return &stepError{step: StepReady, err: fmt.Errorf("ward-serve serves a model of hospital %q from %s, want %q from %s", info.Hospital, info.Digest, a.hospital, b.version.Digest)}
	}
	return nil
}

// acquire returns the current server with the request counted on it, or
// nil. A server read just as it was replaced is given up for its
// successor: once a server is no longer current, no request starts on it,
// so when its count falls to zero it can stop.
func (a *Agent) acquire() *backend {
	for {
		b := a.current.Load()
		if b == nil {
			return nil
		}
		b.refs.Add(1)
		if a.current.Load() == b {
			return b
		}
		b.refs.Add(-1)
	}
}

// stop waits (at most timeout) for b's requests to finish, then stops the
// process with SIGTERM, which drains it, and with SIGKILL if it is still
// there after timeout.
func (b *backend) stop(timeout time.Duration) error {
	defer b.transport.CloseIdleConnections()
	var errs []error
	deadline := time.Now().Add(timeout)
	for b.refs.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := b.refs.Load(); n > 0 {
		errs = append(errs, fmt.Errorf("%d requests still running after %s", n, timeout))
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(timeout):
		b.kill()
		errs = append(errs, fmt.Errorf("pid %d did not stop within %s of SIGTERM: killed", b.pid, timeout))
	}
	return errors.Join(errs...)
}

// kill stops the process at once and waits for it.
func (b *backend) kill() {
	_ = b.cmd.Process.Kill()
	<-b.exited
	b.transport.CloseIdleConnections()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("no free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lines merges the output of the servers into one writer a whole line at
// a time, so that two servers running side by side during a switch never
// mix their lines. A failing writer never stops a server: its lines are
// dropped and counted (failed), as a server's own failing log file is.
type lines struct {
	mu     sync.Mutex
	w      io.Writer
	failed func()
}

// maxLine bounds a line held back while waiting for its end.
const maxLine = 1 << 20

// writer returns a writer for one server's output.
func (l *lines) writer() *lineWriter { return &lineWriter{l: l} }

func (l *lines) write(p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.w.Write(p); err != nil && l.failed != nil {
		l.failed()
	}
}

type lineWriter struct {
	l   *lines
	buf []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	if i := bytes.LastIndexByte(w.buf, '\n'); i >= 0 {
		w.l.write(w.buf[:i+1])
		w.buf = append(w.buf[:0], w.buf[i+1:]...)
	} else if len(w.buf) > maxLine {
		w.flush()
	}
	return len(p), nil
}

// flush writes what is left of an unfinished line.
func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.l.write(w.buf)
		w.buf = w.buf[:0]
	}
}

// tail keeps a server's last lines of log, for the error that says why it
// stopped.
type tail struct {
	mu   sync.Mutex
	buf  []byte
	last []string
}

const tailLines = 5

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	for {
		i := bytes.IndexByte(t.buf, '\n')
		if i < 0 {
			break
		}
		if line := strings.TrimSpace(string(t.buf[:i])); line != "" {
			t.last = append(t.last, line)
			if len(t.last) > tailLines {
				t.last = t.last[1:]
			}
		}
		t.buf = t.buf[i+1:]
	}
	if len(t.buf) > maxLine {
		t.buf = t.buf[:0]
	}
	return len(p), nil
}

// summary is ": " and the last error the server logged (its
// error.message), else its last line; "" when it said nothing.
func (t *tail) summary() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := len(t.last) - 1; i >= 0; i-- {
		var rec map[string]any
		if json.Unmarshal([]byte(t.last[i]), &rec) == nil {
			if msg, ok := rec["error.message"].(string); ok && msg != "" {
				return ": " + msg
			}
		}
	}
	if n := len(t.last); n > 0 {
		return ": " + t.last[n-1]
	}
	return ""
}
