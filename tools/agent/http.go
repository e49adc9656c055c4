package agent

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wardml/ward/internal/config"
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
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /agent/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, redacted(a.Status()))
	})
	mux.Handle("GET /agent/metrics", promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("POST /agent/refresh", func(w http.ResponseWriter, r *http.Request) {
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
	b.proxy.ServeHTTP(w, r)
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
