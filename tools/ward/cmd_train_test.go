package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/pipelines/store"
	"github.com/wardml/ward/pipelines/synth"
	"github.com/wardml/ward/pipelines/train/report"
	"github.com/wardml/ward/pipelines/train/traintest"
)

// trainGroup is a small synthetic group loaded into a SQLite database: its
// contracts folder and the database's URL.
func trainGroup(t *testing.T) (contracts, db string) {
	t.Helper()
	contracts = traintest.Group(t, synth.WithHospitals(2), synth.WithMonths(9))
	db = "sqlite:" + filepath.Join(t.TempDir(), "ward.db")
	s, err := store.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	traintest.Load(t, s, contracts)
	return contracts, db
}

// wardTrain runs `ward train` in-process against the contracts and the
// database.
func wardTrain(t *testing.T, contracts, db string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := []string{"WARD_DATABASE=" + db, "WARD_HOSPITALS=" + contracts, "WARD_LOG_FORMAT=json"}
	code := run(context.Background(), append([]string{"train"}, args...), &out, &errOut, env)
	return code, out.String(), errOut.String()
}

// editContracts copies a contracts folder with each contract's text
// edited (old/new pairs), and adds a copy of st-olaf's under each extra id.
func editContracts(t *testing.T, from string, edits []string, extra ...string) string {
	t.Helper()
	to := t.TempDir()
	entries, _ := os.ReadDir(from)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(from, e.Name(), "hospital.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.NewReplacer(edits...).Replace(string(data))
		ids := []string{e.Name()}
		if e.Name() == "st-olaf" {
			ids = append(ids, extra...)
		}
		for _, id := range ids {
			os.MkdirAll(filepath.Join(to, id), 0o755)
			if err := os.WriteFile(filepath.Join(to, id, "hospital.yaml"), []byte(strings.ReplaceAll(text, "id: st-olaf", "id: "+id)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return to
}

func TestTrainCommand(t *testing.T) {
	contracts, db := trainGroup(t)
	out := t.TempDir()
	code, stdout, stderr := wardTrain(t, contracts, db, "--all", "--out", out, "--output", "json")
	if code != exit.OK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	var sum report.Summary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil || len(sum.Hospitals) != 2 {
		t.Fatalf("--output json: %v\n%s", err, stdout)
	}
	for _, l := range sum.Hospitals {
		if l.Gate != report.GatePassed || l.Version == "" || l.PooledMAE == nil || l.RandomMAE == nil || l.Model != filepath.Join(out, l.Hospital, "model.json") {
			t.Errorf("summary line %+v", l)
		}
		if _, err := os.Stat(filepath.Join(out, l.Hospital, "report", "report.html")); err != nil {
			t.Error(err)
		}
	}
	if !strings.Contains(stderr, `"message":"model trained"`) || !strings.Contains(stderr, `"ward.hospital":"st-olaf"`) {
		t.Errorf("log:\n%s", stderr)
	}

	// One hospital, as one CI job: the same model, a table on stdout.
	one := t.TempDir()
	code, stdout, stderr = wardTrain(t, contracts, db, "--hospital", "st-olaf", "--out", one, "--parallel", "1")
	if code != exit.OK || !strings.HasPrefix(stdout, "HOSPITAL") || !strings.Contains(stdout, sum.Hospitals[1].Version) {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	a, _ := os.ReadFile(filepath.Join(out, "st-olaf", "model.json"))
	b, _ := os.ReadFile(filepath.Join(one, "st-olaf", "model.json"))
	if !bytes.Equal(a, b) {
		t.Error("st-olaf alone gives another model than with --all")
	}

	// The gate: the model in production was trained on most of the new
	// model's validation window, and a strict contract allows 0.5%.
	knowing, deployed := editContracts(t, contracts, []string{"validation: 3mo", "validation: 1mo"}), t.TempDir()
	if code, _, stderr := wardTrain(t, knowing, db, "--hospital", "st-olaf", "--out", deployed); code != exit.OK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	production := filepath.Join(deployed, "st-olaf", "model.json")
	strict := editContracts(t, contracts, []string{"max_regression: 0.02", "max_regression: 0.005"}, "empty-one")
	gated := t.TempDir()
	code, stdout, stderr = wardTrain(t, strict, db, "--hospital", "st-olaf", "--out", gated, "--baseline", production, "--output", "json")
	if code != exit.GateFailed || !strings.Contains(stderr, "the gate failed for 1 of 1 hospitals") || !strings.Contains(stderr, `"message":"gate failed"`) {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil || sum.Hospitals[0].Gate != report.GateFailed {
		t.Errorf("summary %+v, %v", sum, err)
	}
	if _, err := os.Stat(filepath.Join(gated, "st-olaf", "model.json")); err != nil {
		t.Errorf("a gate-failed model is written for a person to look at: %v", err)
	}

	// A hospital without data fails alone; the others are written.
	failing := t.TempDir()
	code, stdout, stderr = wardTrain(t, strict, db, "--all", "--out", failing)
	if code != exit.Failure || !strings.Contains(stderr, "1 of 3 hospitals could not be trained") ||
		!strings.Contains(stderr, "train empty-one: no cases in the database: load its extracts with ward ingest first") {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "empty-one") || !strings.Contains(stdout, "error: train empty-one") {
		t.Errorf("table:\n%s", stdout)
	}
	for _, id := range []string{"riverside", "st-olaf"} {
		if _, err := os.Stat(filepath.Join(failing, id, "model.json")); err != nil {
			t.Error(err)
		}
	}
	if _, err := os.Stat(filepath.Join(failing, "empty-one")); !os.IsNotExist(err) {
		t.Errorf("a hospital without a model got a folder: %v", err)
	}

	// Bad usage, contracts, baselines and databases stop before anything
	// is written.
	garbage := filepath.Join(t.TempDir(), "model.json")
	os.WriteFile(garbage, []byte(`{"format_version": 1`), 0o644)
	for _, c := range []struct {
		args []string
		db   string
		want string
	}{
		{[]string{"--all"}, db, "--out: missing"},
		{[]string{"--out", t.TempDir()}, db, "name a hospital with --hospital ID, or pass --all"},
		{[]string{"--all", "--hospital", "st-olaf", "--out", t.TempDir()}, db, "not both"},
		{[]string{"--hospital", "nowhere", "--out", t.TempDir()}, db, `hospital "nowhere": no nowhere/hospital.yaml`},
		{[]string{"--all", "--out", t.TempDir(), "--baseline", filepath.Join(t.TempDir(), "none.json")}, db, "no such file or directory"},
		{[]string{"--all", "--out", t.TempDir(), "--baseline", garbage}, db, "--baseline " + garbage + ": artifact: truncated"},
		{[]string{"--hospital", "st-olaf", "--out", t.TempDir(), "--baseline", filepath.Join(out, "riverside", "model.json")}, db, "riverside is not being trained"},
		{[]string{"--all", "--out", t.TempDir()}, "postgres://ward@127.0.0.1:1/ward?connect_timeout=5", "cannot connect"},
	} {
		code, _, stderr := wardTrain(t, contracts, c.db, c.args...)
		if code != exit.Config || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, want %d and %q\n%s", c.args, code, exit.Config, c.want, stderr)
		}
	}
}

// A hospital that feedback marked for retraining comes first in --all (and
// in --list, the CI's matrix); training it clears the mark.
func TestTrainTakesMarkedHospitalsFirst(t *testing.T) {
	contracts, db := trainGroup(t)
	list := func() string {
		t.Helper()
		code, stdout, stderr := wardTrain(t, contracts, db, "--all", "--list")
		if code != exit.OK {
			t.Fatalf("--list: exit %d\n%s", code, stderr)
		}
		return strings.TrimSpace(stdout)
	}
	if got := list(); got != `["riverside","st-olaf"]` {
		t.Fatalf("unmarked order %s", got)
	}
	s, err := store.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.MarkRetrain(context.Background(), store.RetrainMark{Hospital: "st-olaf", Version: "v", Reason: "drift", At: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got := list(); got != `["st-olaf","riverside"]` {
		t.Fatalf("with st-olaf marked: %s; want it first", got)
	}
	code, stdout, stderr := wardTrain(t, contracts, db, "--all", "--out", t.TempDir(), "--output", "json")
	var sum report.Summary
	if code != exit.OK || json.Unmarshal([]byte(stdout), &sum) != nil || sum.Hospitals[0].Hospital != "st-olaf" || !strings.Contains(stderr, "retrain mark cleared") {
		t.Fatalf("exit %d, %s\n%s", code, stdout, stderr)
	}
	if got := list(); got != `["riverside","st-olaf"]` {
		t.Fatalf("after training: %s; want the mark cleared", got)
	}
}
