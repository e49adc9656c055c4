package main

import (
	"strings"
	"testing"
)

// A token or password in a URL setting never reaches the terminal: not in
// ward config (text or JSON), not in an error, not in a log line.
func TestURLSecretsRedacted(t *testing.T) {
	env := []string{
		"WARD_MANIFEST_REPO=https://ghp_T0KEN@127.0.0.1:1/ml/manifest.git",
		"WARD_DATABASE=postgres://ward:hunter2@127.0.0.1:1/ward?sslpassword=k3y",
	}
	check := func(what, out string) {
		t.Helper()
		for _, secret := range []string{"ghp_T0KEN", "hunter2", "k3y"} {
			if strings.Contains(out, secret) {
				t.Errorf("%s shows %q:\n%s", what, secret, out)
			}
		}
	}
	for _, format := range []string{"text", "json"} {
		code, out, errs := wardRun(t, env, "config", "--output", format)
		if code != 0 || !strings.Contains(out, "https://REDACTED@127.0.0.1:1/ml/manifest.git") {
			t.Errorf("ward config --output %s: %d\n%s%s", format, code, out, errs)
		}
		check("ward config --output "+format, out+errs)
	}
	// The error of a clone that fails names the URL, redacted.
	code, out, errs := wardRun(t, env, "history", "--hospital", "st-olaf", "--log-format", "json", "--log-level", "debug")
	if code == 0 || !strings.Contains(errs, "https://REDACTED@127.0.0.1:1/ml/manifest.git") {
		t.Errorf("ward history on an unreachable repo: %d\n%s%s", code, out, errs)
	}
	check("ward history's error", out+errs)
}
