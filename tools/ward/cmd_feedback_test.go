package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/pipelines/feedback"
	"github.com/wardml/ward/pipelines/feedback/feedbacktest"
	"github.com/wardml/ward/pipelines/feedback/report"
	"github.com/wardml/ward/pipelines/synth"
)

// wardFeedback runs `ward feedback` in-process against the contracts and
// the database.
func wardFeedback(t *testing.T, contracts, db string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := []string{"WARD_DATABASE=" + db, "WARD_HOSPITALS=" + contracts, "WARD_LOG_FORMAT=json"}
	code := run(context.Background(), append([]string{"feedback"}, args...), &out, &errOut, env)
	return code, out.String(), errOut.String()
}

// The loop with a price shock at riverside (feedbacktest): ward feedback
// exits 4 naming it, and 0 for a healthy hospital; its reports and JSON
// say the same as its table.
func TestFeedbackCommand(t *testing.T) {
	cutoff, _ := synth.ParseMonth(feedbacktest.Cutoff)
	db := "sqlite:" + filepath.Join(t.TempDir(), "ward.db")
	loop := feedbacktest.Run(t, db, synth.Shock{Hospital: "riverside", From: cutoff, Factor: 1.4})
	out := t.TempDir()

	code, stdout, stderr := wardFeedback(t, loop.Contracts, db, "--all", "--models", loop.Models, "--out", out)
	if code != exit.Unhealthy || !strings.Contains(stderr, "1 of 3 hospitals unhealthy: riverside (degraded)") {
		t.Fatalf("exit %d, want %d\n%s", code, exit.Unhealthy, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "HOSPITAL") || !strings.Contains(stdout, "degraded") || strings.Count(stdout, "healthy") != 2 {
		t.Errorf("table:\n%s", stdout)
	}
	data, err := os.ReadFile(filepath.Join(out, report.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	var r feedback.Report
	if err := json.Unmarshal(data, &r); err != nil || len(r.Hospitals) != 3 || len(r.Flagged()) != 1 || r.Flagged()[0].Hospital != "riverside" {
		t.Fatalf("feedback.json: %v\n%s", err, data)
	}
	for _, h := range loop.Hospitals {
		for _, f := range []string{report.MarkdownFile, report.HTMLFile, report.ErrorPlot, report.PSIPlot} {
			if _, err := os.Stat(filepath.Join(out, h.ID, f)); err != nil {
				t.Errorf("%s: %v", h.ID, err)
			}
		}
	}
	md, _ := os.ReadFile(filepath.Join(out, "riverside", report.MarkdownFile))
	t.Logf("riverside's report:\n%s", md)

	// A healthy hospital alone: exit 0, and JSON on stdout.
	code, stdout, stderr = wardFeedback(t, loop.Contracts, db, "--hospital", "st-olaf", "--models", loop.Models, "--output", "json")
	var one feedback.Report
	if code != exit.OK || json.Unmarshal([]byte(stdout), &one) != nil || len(one.Hospitals) != 1 || one.Hospitals[0].Verdict != feedback.Healthy {
		t.Fatalf("st-olaf: exit %d\n%s\n%s", code, stdout, stderr)
	}
	// No predictions served in the window: nothing to judge.
	code, stdout, stderr = wardFeedback(t, loop.Contracts, db, "--all", "--models", loop.Models, "--from", "2099-01", "--output", "json")
	var none feedback.Report
	if code != exit.OK || json.Unmarshal([]byte(stdout), &none) != nil || none.Hospitals[0].Verdict != feedback.NoPredictions || none.From.Year() != 2099 {
		t.Fatalf("a window without predictions: exit %d\n%s\n%s", code, stdout, stderr)
	}

	// A contract that no longer matches the database: the hospitals
	// cannot be read, exit 1.
	changed := editContracts(t, loop.Contracts, []string{"key: [case_id]", "key: [case_id, patient_id]"})
	if code, _, stderr := wardFeedback(t, changed, db, "--all", "--models", loop.Models); code != exit.Failure || !strings.Contains(stderr, "ward never changes a table's key") {
		t.Errorf("a changed key: exit %d\n%s", code, stderr)
	}

	bad := t.TempDir()
	os.MkdirAll(filepath.Join(bad, "st-olaf"), 0o755)
	os.WriteFile(filepath.Join(bad, "st-olaf", "model.json"), []byte(`{"format_version": 1, "hospital": `), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--all"}, "--models: missing"},
		{[]string{"--all", "--models", filepath.Join(out, "nowhere")}, "no such file"},
		{[]string{"--all", "--models", bad}, "st-olaf/model.json: artifact: truncated"},
		{[]string{"--all", "--models", t.TempDir()}, "no model.json in it"},
		{[]string{"--all", "--hospital", "st-olaf", "--models", loop.Models}, "not both"},
		{[]string{"--models", loop.Models}, "name a hospital"},
		{[]string{"--hospital", "elsewhere", "--models", loop.Models}, `hospital "elsewhere"`},
		{[]string{"--all", "--models", loop.Models, "--from", "2024-13"}, `--from "2024-13": want a month`},
		{[]string{"--all", "--models", loop.Models, "--from", "2024-11", "--to", "2024-10"}, "--from 2024-11 is after --to 2024-10"},
	} {
		code, _, stderr := wardFeedback(t, loop.Contracts, db, c.args...)
		if code != exit.Config || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, want %d and %q\n%s", c.args, code, exit.Config, c.want, stderr)
		}
	}
	if code, _, stderr := wardFeedback(t, loop.Contracts, "sqlite:"+filepath.Join(t.TempDir(), "?bad"), "--all", "--models", loop.Models); code != exit.Config {
		t.Errorf("a bad database: exit %d\n%s", code, stderr)
	}
}
