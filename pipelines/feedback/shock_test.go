package feedback_test

import (
	"context"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/feedback"
	"github.com/wardml/ward/pipelines/feedback/feedbacktest"
	"github.com/wardml/ward/pipelines/ingest"
	"github.com/wardml/ward/pipelines/store"
	"github.com/wardml/ward/pipelines/synth"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// engines runs a test against each engine: databases on a real
// PostgreSQL server, and SQLite files. fresh gives a new, empty database.
func engines(t *testing.T, test func(t *testing.T, fresh func() string)) {
	t.Run("postgres", func(t *testing.T) { test(t, func() string { return testenv.Postgres(t) }) })
	t.Run("sqlite", func(t *testing.T) {
		test(t, func() string { return "sqlite:" + filepath.Join(t.TempDir(), "ward.db") })
	})
}

func open(t *testing.T, url string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// The loop end to end, run twice on the same synthetic group: the models
// are trained on January to August and serve September to November, once
// with a price shock at riverside from September (its bills x1.4) and
// once without. With the shock, feedback finds riverside degraded, and no
// other hospital; without it, none. On PostgreSQL the servers also write
// their predictions to the database directly, and the logs ingested after
// them add nothing twice: the results are the same on both engines.
//
// Drift is the same in both runs to the bit: the shock changes bills, not
// the inputs the models see. The group's rosters turn over (synth hires
// and loses doctors every month), so doctor_id moves a little (a PSI under
// 0.1 against the validation window, the models' reference), and no
// feature needs acting on. So the unshocked run flags no hospital.
func TestShock(t *testing.T) {
	cutoff, _ := synth.ParseMonth(feedbacktest.Cutoff)
	shock := synth.Shock{Hospital: "riverside", From: cutoff, Factor: 1.4}
	engines(t, func(t *testing.T, fresh func() string) {
		assess := func(shocks ...synth.Shock) (*feedbacktest.Loop, *feedback.Report) {
			url := fresh()
			loop := feedbacktest.Run(t, url, shocks...)
			r, err := feedback.Run(context.Background(), open(t, url), loop.Hospitals, feedback.WithModels(loop.Artifacts...))
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range r.Hospitals {
				t.Logf("%s: %s: %s", h.Hospital, h.Verdict, h.Reason)
				checkCounts(t, loop, h)
			}
			return loop, r
		}
		shockLoop, shocked := assess(shock)
		plainLoop, plain := assess()

		for _, run := range []struct {
			name     string
			r        *feedback.Report
			degraded []string
		}{{"shocked", shocked, []string{"riverside"}}, {"unshocked", plain, nil}} {
			var degraded, flagged []string
			for _, h := range run.r.Hospitals {
				if h.Degraded {
					degraded = append(degraded, h.Hospital)
				}
			}
			for _, h := range run.r.Flagged() {
				flagged = append(flagged, h.Hospital)
			}
			if !slices.Equal(degraded, run.degraded) {
				t.Errorf("%s run: degraded %v, want %v", run.name, degraded, run.degraded)
			}
			if !slices.Equal(flagged, run.degraded) {
				t.Errorf("%s run: flagged %v, want %v", run.name, flagged, run.degraded)
			}
		}
		for i, h := range shocked.Hospitals {
			s, p := h.Model(h.Current), plain.Hospitals[i].Model(plain.Hospitals[i].Current)
			// The same data before the cutoff trains the same model.
			if s.Version != p.Version {
				t.Fatalf("%s: model %s with the shock, %s without", h.Hospital, s.Version, p.Version)
			}
			if !reflect.DeepEqual(s.Drift, p.Drift) || s.DriftRows != p.DriftRows {
				t.Errorf("%s: the shock moved drift: %v, without %v", h.Hospital, s.Drift, p.Drift)
			}
			var act []string
			for _, d := range s.Drift {
				if d.Band == models.Act {
					act = append(act, d.Feature)
				}
			}
			if len(act) > 0 || s.Drifted || p.Drifted {
				t.Errorf("%s: features to act on %v, want none: %+v", h.Hospital, act, s.Drift)
			}
			// Without the shock the models age (prices rise) but stay
			// within their limit; the shocked one is far above it.
			limit := 1 + *plainLoop.Hospitals[i].Feedback.Degradation
			if *p.MAERatio >= limit || (h.Hospital == "riverside") != (*s.MAERatio > limit) {
				t.Errorf("%s: MAE ratio %.3f with the shock, %.3f without; limit %.2f", h.Hospital, *s.MAERatio, *p.MAERatio, limit)
			}
		}
		_ = shockLoop
	})
}

// checkCounts checks that each prediction, case and outcome is counted
// once, where it belongs.
func checkCounts(t *testing.T, loop *feedbacktest.Loop, h feedback.Hospital) {
	t.Helper()
	sent := loop.Sent[h.Hospital]
	var ing *ingest.HospitalResult
	for i := range loop.Ingest.Hospitals {
		if loop.Ingest.Hospitals[i].Hospital == h.Hospital {
			ing = &loop.Ingest.Hospitals[i]
		}
	}
	// Ingest counted the log's faults once each. What the servers wrote
	// to the database themselves, the logs repeat.
	duplicates, loaded := sent.Duplicated+sent.Overlap, sent.Answered+sent.Legacy
	if loop.Direct {
		duplicates, loaded = duplicates+sent.Answered, sent.Legacy
	}
	var logged int64
	for _, f := range ing.Files {
		if f.Table == store.PredictionsTable {
			logged += f.Loaded
		}
	}
	if logged != int64(loaded) || ing.Rejected != int64(sent.Malformed) || ing.Duplicates != int64(duplicates) ||
		!maps.Equal(ing.UnknownModels, map[string]int64{feedbacktest.LegacyVersion: int64(sent.Legacy)}) {
		t.Errorf("%s: ingest loaded %d predictions, rejected %d lines, %d duplicates, unknown versions %v; want %d, %d, %d, %s: %d",
			h.Hospital, logged, ing.Rejected, ing.Duplicates, ing.UnknownModels, loaded, sent.Malformed, duplicates, feedbacktest.LegacyVersion, sent.Legacy)
	}
	m := h.Model(h.Current)
	legacy := h.Model(feedbacktest.LegacyVersion)
	if m == nil || legacy == nil || len(h.Models) != 2 || h.Models[0].Version != feedbacktest.LegacyVersion {
		t.Fatalf("%s: models %+v", h.Hospital, h.Models)
	}
	if h.Predictions != int64(sent.Answered+sent.Legacy) || m.Predictions != int64(sent.Answered) {
		t.Errorf("%s: %d predictions, %d of the current model; want %d and %d", h.Hospital, h.Predictions, m.Predictions, sent.Answered+sent.Legacy, sent.Answered)
	}
	want := feedback.Counts{WithoutCaseID: int64(sent.WithoutID), AwaitingOutcome: int64(sent.Unbilled), Repeated: int64(sent.Repeated)}
	if m.Counts != want || m.Live.Count != sent.Billed || m.DriftRows != sent.Answered {
		t.Errorf("%s: counts %+v, live cases %d, drift rows %d; want %+v, %d, %d", h.Hospital, m.Counts, m.Live.Count, m.DriftRows, want, sent.Billed, sent.Answered)
	}
	if h.Unpredicted == nil || *h.Unpredicted != int64(sent.Unnamed) {
		t.Errorf("%s: unpredicted outcomes %v, want %d", h.Hospital, h.Unpredicted, sent.Unnamed)
	}
	if legacy.Artifact || legacy.Verdict != feedback.NoArtifact || legacy.Predictions != 1 || h.WithoutArtifact != 1 || legacy.Degraded || legacy.Drifted {
		t.Errorf("%s: the legacy version: %+v, %d without artifact", h.Hospital, legacy, h.WithoutArtifact)
	}
	var months []string
	for _, mo := range m.Months {
		months = append(months, mo.Month)
	}
	if !slices.Equal(months, []string{"2024-09", "2024-10", "2024-11"}) {
		t.Errorf("%s: months %v", h.Hospital, months)
	}
}
