package agent

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/tools/manifest"
)

// idle is an agent that has not run: nothing serves.
func idle(t *testing.T, opts ...Option) *Agent {
	t.Helper()
	repo, err := manifest.New(testenv.BareRepo(t))
	if err != nil {
		t.Fatal(err)
	}
	refuse := func(context.Context, string) (manifest.Image, error) {
		return manifest.Image{}, errors.New("no image is trusted")
	}
	a, err := New("st-olaf", repo, refuse, append([]Option{WithData(t.TempDir())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func call(h http.Handler, method, path, body string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// The refresh webhook takes the secret as GitLab sends it, or a body
// signed with it as GitHub and Gitea do; anything else is refused.
func TestRefreshWebhookChecksTheSecret(t *testing.T) {
	const secret = "a webhook secret"
	a := idle(t, WithWebhookSecret(secret))
	h := a.Handler()
	payload := `{"ref":"refs/heads/main"}`
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(payload))
	signed := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	for _, c := range []struct {
		name   string
		header []string
		body   string
		want   int
	}{
		{"no secret", nil, payload, http.StatusUnauthorized},
		{"wrong secret", []string{"X-Ward-Webhook-Secret", "guess"}, payload, http.StatusUnauthorized},
		{"ward's header", []string{"X-Ward-Webhook-Secret", secret}, payload, http.StatusAccepted},
		{"GitLab", []string{"X-Gitlab-Token", secret}, payload, http.StatusAccepted},
		{"GitHub", []string{"X-Hub-Signature-256", signed}, payload, http.StatusAccepted},
		{"GitHub, another body", []string{"X-Hub-Signature-256", signed}, payload + " ", http.StatusUnauthorized},
		{"GitHub, not hex", []string{"X-Hub-Signature-256", "sha256=zz"}, payload, http.StatusUnauthorized},
	} {
		t.Run(c.name, func(t *testing.T) {
			for len(a.refresh) > 0 {
				<-a.refresh
			}
			w := call(h, http.MethodPost, "/agent/refresh", c.body, c.header...)
			if w.Code != c.want {
				t.Fatalf("%d %s, want %d", w.Code, w.Body, c.want)
			}
			if asked := len(a.refresh) == 1; asked != (c.want == http.StatusAccepted) {
				t.Fatalf("poll asked: %v", asked)
			}
		})
	}
	if w := call(idle(t).Handler(), http.MethodPost, "/agent/refresh", ""); w.Code != http.StatusAccepted {
		t.Fatalf("without a secret: %d", w.Code)
	}
}

// Before a version runs, the front endpoint says so; the agent's own
// routes answer.
func TestFrontEndpointBeforeAnyVersion(t *testing.T) {
	h := idle(t).Handler()
	for _, p := range []string{"/readyz", "/v1/predict", "/metrics"} {
		if w := call(h, http.MethodGet, p, ""); w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "no model is serving yet") {
			t.Errorf("%s: %d %s", p, w.Code, w.Body)
		}
	}
	w := call(h, http.MethodGet, "/agent/status", "")
	var st Status
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || w.Code != http.StatusOK || st.Hospital != "st-olaf" || st.Serving != nil {
		t.Errorf("status: %d %s", w.Code, w.Body)
	}
	if !strings.Contains(w.Body.String(), `"serving": null`) {
		t.Errorf("status does not say that nothing serves: %s", w.Body)
	}
	if w := call(h, http.MethodGet, "/agent/metrics", ""); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `ward_agent_failures_total{hospital="st-olaf",step="pull"} 0`) {
		t.Errorf("metrics: %d %s", w.Code, w.Body)
	}
	if w := call(h, http.MethodGet, "/agent/nothing", ""); w.Code != http.StatusNotFound {
		t.Errorf("/agent/nothing: %d", w.Code)
	}
}

func TestNewChecksItsSettings(t *testing.T) {
	repo, err := manifest.New(testenv.BareRepo(t))
	if err != nil {
		t.Fatal(err)
	}
	verify := func(context.Context, string) (manifest.Image, error) { return manifest.Image{}, nil }
	for _, c := range []struct {
		id   string
		opts []Option
		want string
	}{
		{"../etc", nil, "want lower-case letters"},
		{"st-olaf", []Option{WithPoll(0)}, "want positive durations"},
		{"st-olaf", []Option{WithKeep(1)}, "want at least 2"},
	} {
		if _, err := New(c.id, repo, verify, append([]Option{WithData(t.TempDir())}, c.opts...)...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%q, %d options): %v, want %q", c.id, len(c.opts), err, c.want)
		}
	}
	if _, err := New("st-olaf", repo, nil); err == nil {
		t.Error("New without a verifier")
	}
}
