package agent

import (
	"bytes"
	"container/list"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wardml/ward/internal/config"
	"github.com/wardml/ward/models/trained"
	"github.com/wardml/ward/tools/manifest"
)

// Status is what GET /agent/status answers.
type Status struct {
	Hospital string `json:"hospital"`
	// Serving is the version the front endpoint sends requests to; null
	// before one runs.
	Serving  *Serving       `json:"serving"`
	Manifest ManifestStatus `json:"manifest"`
	// InSync: the last poll ended with the manifest's release serving.
	InSync bool `json:"in_sync"`
	// LastPoll is when the last poll began; LastSuccess when a poll last
	// ended without an error.
	LastPoll    time.Time `json:"last_poll,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastSwitch  *Switch   `json:"last_switch,omitempty"`
	// LastError is the last failure, whenever it was (At says when).
	LastError *Failure `json:"last_error,omitempty"`
	// Refused is the last release the agent refused to move to, until it
	// serves the manifest's release.
	Refused *Failure `json:"refused,omitempty"`
}

// Serving is a version that runs.
type Serving struct {
	Version string    `json:"version"`
	Digest  string    `json:"digest"`
	Image   string    `json:"image"`
	Since   time.Time `json:"since"`
	// Commit is the manifest commit that asked for it.
	Commit string `json:"commit,omitempty"`
	// Addr and PID are the model server's private address and process.
	Addr string `json:"addr"`
	PID  int    `json:"pid"`
}

// ManifestStatus is what the agent last read in the manifest repo.
type ManifestStatus struct {
	URL    string `json:"url"`
	Commit string `json:"commit,omitempty"`
	// Release is the hospital's release at Commit; null when it has none
	// (or its content did not check: LastError says why).
	Release *manifest.Release `json:"release,omitempty"`
	// Applied is the commit the agent applied last: the next head must
	// descend from it. Provenance is what was checked of the history at
	// Commit (trusted, the keys, the commit that decides the release).
	Applied    string               `json:"applied,omitempty"`
	Provenance *manifest.Provenance `json:"provenance,omitempty"`
}

// Switch is the last move of the front endpoint to a new version.
type Switch struct {
	From   string    `json:"from,omitempty"`
	To     string    `json:"to"`
	Digest string    `json:"digest"`
	At     time.Time `json:"at"`
	// Took is from the start of the verification to the switch.
	Took string `json:"took"`
}

// Failure is a step that failed.
type Failure struct {
	Step    string    `json:"step"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
	// Digest is the image the step was for, Commit the manifest's head.
	Digest string `json:"digest,omitempty"`
	Commit string `json:"commit,omitempty"`
}

// Status returns the agent's status.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status
}

// Handler is the front endpoint:
//
//	GET  /agent/status   Status, as JSON
//	GET  /agent/metrics  the agent's Prometheus metrics
//	POST /agent/refresh  poll now (202); a Git host's push webhook
//	anything else        proxied to the model server that serves (its
//	                     /v1/predict, /v1/model, /healthz, /readyz and
//	                     /metrics); 503 before one runs
//
// With a webhook secret, /agent/refresh takes a request that carries it in
// X-Ward-Webhook-Secret or X-Gitlab-Token (GitLab's webhook), or whose body
// is signed with it in X-Hub-Signature-256 (GitHub's and Gitea's
// sha256=HMAC); any other gets 401.
//
// Handler is the endpoint as served on a loopback listener; Run serves it
// on any: on a listener reachable from off-host, /agent/refresh without a
// webhook secret is refused (403), so that no stranger can make the agent
// poll at will.
func (a *Agent) Handler() http.Handler { return a.handler(false) }

func (a *Agent) handler(offHost bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /agent/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, redacted(a.Status()))
	})
	mux.Handle("GET /agent/metrics", promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("POST /agent/refresh", func(w http.ResponseWriter, r *http.Request) {
		if offHost && a.secret == "" {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "the agent listens beyond loopback without a webhook secret: set WARD_AGENT_WEBHOOK_SECRET to take /agent/refresh (polling goes on)"})
			return
		}
		if !a.webhookAllowed(r) {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "the webhook secret is missing or wrong"})
			return
		}
		a.Refresh()
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "poll requested"})
	})
	mux.HandleFunc("/agent/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "the agent has GET /agent/status, GET /agent/metrics and POST /agent/refresh"})
	})
	mux.HandleFunc("/", a.forward)
	return mux
}

// forward sends a request to the server that serves.
func (a *Agent) forward(w http.ResponseWriter, r *http.Request) {
	b := a.acquire()
	if b == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "no model is serving yet: see GET /agent/status"})
		return
	}
	defer b.refs.Add(-1)
	// The proxy streams the request body to the model server while the
	// answer streams back; an HTTP/1 handler that writes before it has
	// read the whole body must say so, or the server cuts the body short
	// and the copy to the model server fails mid-answer (golang/go#40747).
	_ = http.NewResponseController(w).EnableFullDuplex()
	proxyCounted(w, r, b.proxy)
}

// proxyCounted serves r with proxy (whose ModifyResponse is
// closeIfBodyLeft), counting what the proxy reads of r's body.
func proxyCounted(w http.ResponseWriter, r *http.Request, proxy http.Handler) {
	if r.Body != nil && r.Body != http.NoBody {
		c := &countedBody{ReadCloser: r.Body, want: r.ContentLength}
		r = r.WithContext(context.WithValue(r.Context(), countedKey{}, c))
		r.Body = c
	}
	proxy.ServeHTTP(w, r)
}

// countedKey carries a request's countedBody to the proxy's
// ModifyResponse (the transport hands that a copy of the request).
type countedKey struct{}

// countedBody is a request body that knows whether it was read to its end.
type countedBody struct {
	io.ReadCloser
	want  int64 // Content-Length, -1 if unknown
	read  atomic.Int64
	ended atomic.Bool // a Read returned an error: io.EOF, or one after which net/http closes the connection anyway
}

func (c *countedBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.read.Add(int64(n))
	if err != nil {
		c.ended.Store(true)
	}
	return n, err
}

func (c *countedBody) whole() bool {
	return c.ended.Load() || (c.want >= 0 && c.read.Load() >= c.want)
}

// closeIfBodyLeft is the proxy's ModifyResponse. A model server may answer
// before the whole request body came (a 400, a 413): the proxy then
// returns while its transport may still be reading the body, and if
// net/http kept the connection for another request it would read it at
// the same time (a panic it recovers: "invalid concurrent Body.Read
// call"). Such an answer goes out with Connection: close, so that the
// connection ends with it.
func closeIfBodyLeft(resp *http.Response) error {
	if c, ok := resp.Request.Context().Value(countedKey{}).(*countedBody); ok && !c.whole() {
		resp.Header.Set("Connection", "close")
	}
	return nil
}

// maxWebhookBody bounds the body read to check a webhook's signature.
const maxWebhookBody = 1 << 20

func (a *Agent) webhookAllowed(r *http.Request) bool {
	if a.secret == "" {
		return true
	}
	for _, h := range []string{"X-Ward-Webhook-Secret", "X-Gitlab-Token"} {
		if v := r.Header.Get(h); v != "" && subtle.ConstantTimeCompare([]byte(v), []byte(a.secret)) == 1 {
			return true
		}
	}
	sig, ok := strings.CutPrefix(r.Header.Get("X-Hub-Signature-256"), "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxWebhookBody))
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(a.secret))
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// redacted is v as JSON with the secrets of its URLs hidden (a token in
// WARD_MANIFEST_REPO, in the manifest URL or in an error), by config.Redact.
func redacted(v any) json.RawMessage {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return json.RawMessage(config.Redact(b.String()))
}

// frontSettings are the front endpoint's connection limits.
type frontSettings struct {
	read, write, idle time.Duration
	conns             int // 0: from the process's file limit
}

// defaultFront is what ward serve uses, so that the front endpoint holds a
// slow client no longer than the server behind it would.
func defaultFront() frontSettings {
	return frontSettings{read: trained.ServerReadTimeout, write: trained.ServerWriteTimeout, idle: trained.ServerIdleTimeout}
}

// WithFrontTimeouts sets how long the front endpoint waits for a request
// to arrive, for its answer to be written, and for the next request on a
// kept-alive connection (default ward serve's: 10s, 10s, 60s).
func WithFrontTimeouts(read, write, idle time.Duration) Option {
	return func(s *settings) { s.front.read, s.front.write, s.front.idle = read, write, idle }
}

// WithMaxConns bounds the front endpoint's connections (default: half of
// what the file limit leaves, since each request forwarded takes a second
// connection, to the model server).
func WithMaxConns(n int) Option { return func(s *settings) { s.front.conns = n } }

// fileReserve is the descriptors kept for everything but the front's
// connections: the model servers' pipes, the data folder, the registry.
const fileReserve = 64

// maxConns is the front's connection limit: the one set, or one the file
// limit can always hold with the model servers' connections beside it.
func (f frontSettings) maxConns() int {
	if f.conns > 0 {
		return f.conns
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<20 {
		return 1 << 19
	}
	return max(int(lim.Cur)-fileReserve, 32) / 2
}

// frontServer is the front endpoint's server on ln, with ward serve's
// timeouts and at most maxConns connections.
func (a *Agent) frontServer(ln net.Listener) (*http.Server, net.Listener) {
	offHost := true
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && tcp.IP.IsLoopback() {
		offHost = false
	}
	if offHost && a.secret == "" {
		a.log.Warn("the front endpoint listens beyond loopback without a webhook secret: POST /agent/refresh is refused; set WARD_AGENT_WEBHOOK_SECRET to take it",
			"url.full", "http://"+ln.Addr().String())
	}
	lim := newConnLimit(ln, a.front.maxConns())
	srv := &http.Server{Handler: a.handler(offHost), ReadHeaderTimeout: a.front.read, ReadTimeout: a.front.read,
		WriteTimeout: a.front.write, IdleTimeout: a.front.idle, ConnState: lim.state,
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}
	return srv, lim
}

// connLimit keeps a listener's open connections at most max. When one
// more would pass it, the connection that has waited longest for a request
// (idle between requests, or new and silent) is closed to make room, so
// that idle connections cannot keep a real request out; only when every
// connection is busy does Accept wait for one to end. Busy ones end at the
// server's read and write timeouts.
type connLimit struct {
	net.Listener
	max int

	mu     sync.Mutex
	freed  *sync.Cond
	open   int
	waits  *list.List // the connections waiting for a request, longest first
	closed bool
}

type limitedConn struct {
	net.Conn
	l    *connLimit
	once sync.Once
	wait *list.Element // in l.waits while it waits for a request
	done bool          // closed
}

func newConnLimit(ln net.Listener, max int) *connLimit {
	l := &connLimit{Listener: ln, max: max, waits: list.New()}
	l.freed = sync.NewCond(&l.mu)
	return l
}

func (l *connLimit) Accept() (net.Conn, error) {
	l.mu.Lock()
	for l.open >= l.max && !l.closed {
		if e := l.waits.Front(); e != nil {
			c := e.Value.(*limitedConn)
			l.mu.Unlock()
			c.Close()
			l.mu.Lock()
			continue
		}
		l.freed.Wait()
	}
	l.open++
	l.mu.Unlock()
	c, err := l.Listener.Accept()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.open--
		l.freed.Signal()
		return nil, err
	}
	lc := &limitedConn{Conn: c, l: l}
	lc.wait = l.waits.PushBack(lc)
	return lc, nil
}

func (l *connLimit) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.freed.Broadcast()
	return l.Listener.Close()
}

// state follows the server's view of each connection: waiting for a
// request (new, idle) or busy.
func (l *connLimit) state(c net.Conn, st http.ConnState) {
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if lc.wait != nil {
		l.waits.Remove(lc.wait)
		lc.wait = nil
	}
	if !lc.done && st == http.StateIdle || st == http.StateNew {
		lc.wait = l.waits.PushBack(lc)
	}
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		l := c.l
		l.mu.Lock()
		if c.wait != nil {
			l.waits.Remove(c.wait)
			c.wait = nil
		}
		c.done = true
		l.open--
		l.mu.Unlock()
		l.freed.Signal()
	})
	return err
}
