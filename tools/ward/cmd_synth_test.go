package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/pipelines/synth"
)

func TestSynthCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "group")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"synth", "--out", dir, "--hospitals", "2", "--months", "3",
		"--encrypt", "age", "--shock", "riverside:2024-02:1.5", "--output", "json", "--log-format", "json"}, &stdout, &stderr, nil)
	if code != exit.OK {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	var sum synth.Summary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("--output json: %v\n%s", err, stdout.String())
	}
	if len(sum.Hospitals) != 2 || sum.Months != 3 || sum.Hospitals[1].Encryption != "age" || len(sum.Shocks) != 1 || sum.Cases == 0 {
		t.Fatalf("summary %+v", sum)
	}
	if !strings.Contains(sum.Command, "--hospitals 2 --months 3") || !strings.Contains(sum.Command, "--shock riverside:2024-02:1.5") {
		t.Errorf("command %q", sum.Command)
	}
	if !strings.Contains(stderr.String(), `"message":"synthetic group written"`) {
		t.Errorf("log: %s", stderr.String())
	}

	stdout.Reset()
	code = run(context.Background(), []string{"synth", "--out", dir, "--force", "--hospitals", "1", "--months", "1"}, &stdout, &stderr, nil)
	if code != exit.OK || !strings.Contains(stdout.String(), "st-olaf") || !strings.Contains(stdout.String(), "WARD_PGP_KEY") {
		t.Fatalf("exit %d, text output:\n%s", code, stdout.String())
	}
}

func TestSynthCommandBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--hospitals", "two"}, `invalid value "two" for flag -hospitals`},
		{[]string{"--start", "2024-13"}, `--start: month "2024-13": want YYYY-MM`},
		{[]string{"--shock", "st-olaf:2024-03"}, "--shock: shock \"st-olaf:2024-03\": want HOSPITAL:YYYY-MM:FACTOR"},
		{[]string{"--encrypt", "rot13"}, `encrypt "rot13"`},
		{[]string{"--months", "x"}, `invalid value "x" for flag -months`},
	} {
		var stdout, stderr bytes.Buffer
		args := append([]string{"synth", "--out", t.TempDir()}, tc.args...)
		if code := run(context.Background(), args, &stdout, &stderr, nil); code != exit.Config {
			t.Errorf("%v: exit %d, want %d", tc.args, code, exit.Config)
		}
		if !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: stderr %q, want %q", tc.args, stderr.String(), tc.want)
		}
	}
}
