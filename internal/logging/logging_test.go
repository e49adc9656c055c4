package logging

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// No log line shows a URL's token or password: not in the message, a
// string attribute, an error or a URL value; in JSON and in text.
func TestLogsRedactURLSecrets(t *testing.T) {
	repo := "https://ghp_T0KEN@git.example/ml/manifest.git"
	u, _ := url.Parse("postgres://ward:hunter2@db/ward?sslpassword=k3y")
	for _, format := range []string{"json", "text"} {
		var b bytes.Buffer
		log := New(&b, Options{Format: format})
		log.Info("fetch "+repo, "url", repo, "database", u, "error", fmt.Errorf("fetch %s: %w", repo, errors.New("401")))
		log.With("repo", repo).Warn("again")
		out := b.String()
		for _, secret := range []string{"ghp_T0KEN", "hunter2", "k3y"} {
			if strings.Contains(out, secret) {
				t.Errorf("%s log shows %q:\n%s", format, secret, out)
			}
		}
		if !strings.Contains(out, "https://REDACTED@git.example/ml/manifest.git") || !strings.Contains(out, "ward:REDACTED@db") {
			t.Errorf("%s log lost the redacted URLs:\n%s", format, out)
		}
	}
}
