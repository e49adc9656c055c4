package agent

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/wardml/ward/internal/logging"
	"github.com/wardml/ward/tools/manifest"
)

// GET /agent/status and the agent's log never show a token in the
// manifest repo's URL: not as the URL, not in the error of a failed fetch.
func TestStatusRedactsURLSecrets(t *testing.T) {
	const url = "https://ghp_T0KEN@127.0.0.1:1/ml/manifest.git"
	repo, err := manifest.New(url)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	refuse := func(context.Context, string) (manifest.Image, error) {
		return manifest.Image{}, errors.New("no image is trusted")
	}
	a, err := New("st-olaf", repo, refuse, WithData(t.TempDir()), WithLogger(logging.New(&logs, logging.Options{Format: "json"})))
	if err != nil {
		t.Fatal(err)
	}
	a.pollOnce(context.Background())
	if a.Status().LastError == nil || !strings.Contains(a.Status().LastError.Message, "ghp_T0KEN") {
		t.Fatalf("the fetch failure does not name the URL, so the test tests nothing: %+v", a.Status().LastError)
	}
	w := call(a.Handler(), "GET", "/agent/status", "")
	body := w.Body.String()
	if w.Code != 200 || strings.Contains(body, "ghp_T0KEN") || !strings.Contains(body, `"url": "https://REDACTED@127.0.0.1:1/ml/manifest.git"`) {
		t.Errorf("GET /agent/status: %d\n%s", w.Code, body)
	}
	if strings.Contains(logs.String(), "ghp_T0KEN") || logs.Len() == 0 {
		t.Errorf("the agent's log:\n%s", logs.String())
	}
}
