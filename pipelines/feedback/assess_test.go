package feedback

import (
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/models/modeltest"
	"github.com/wardml/ward/pipelines/store"
)

// fixture is a real fitted model (modeltest) and the hospital of its
// contract; outcomes are made from its validation cases.
type fixture struct {
	h   *contract.Hospital
	f   modeltest.Fitted
	val models.Metrics
	t0  time.Time
}

func newFixture(t *testing.T) *fixture {
	f := modeltest.StOlaf(t, 3000, 1, 1)
	h, err := contract.Load("../../internal/contract/testdata/st-olaf/hospital.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{h: h, f: f, val: f.Artifact.Metrics["validation"].Metrics,
		t0: time.Date(2026, 7, 1, 9, 0, 0, 0, time.UTC)}
}

// outcome is validation case i served by version v at minute i, with
// the given prediction and actual value (null: no outcome yet).
func (x *fixture) outcome(t *testing.T, v string, i int, predicted float64, actual models.Value) store.Outcome {
	t.Helper()
	inputs, err := json.Marshal(modeltest.Request(x.f.Artifact.Inputs, x.f.Valid[i].Row))
	if err != nil {
		t.Fatal(err)
	}
	at := x.t0.Add(time.Duration(i) * time.Minute)
	return store.Outcome{
		Prediction: store.Prediction{Hospital: x.h.ID, RequestID: fmt.Sprintf("%s-%d", v, i), CaseID: fmt.Sprintf("C%d", i),
			ModelVersion: v, ModelDigest: "sha256:" + v, Inputs: inputs, Predicted: predicted, Time: at},
		Actual: actual, CaseTime: time.Date(2026, time.Month(6+i%2), 1, 0, 0, 0, 0, time.UTC),
	}
}

// served is n validation cases, each predicted off its actual value by
// err, as version v served them.
func (x *fixture) served(t *testing.T, v string, n int, err float64) []store.Outcome {
	var out []store.Outcome
	for i := range n {
		actual := x.f.Valid[i].Target.Num
		out = append(out, x.outcome(t, v, i, actual+err, models.Number(actual)))
	}
	return out
}

func seq(os ...store.Outcome) iter.Seq2[store.Outcome, error] {
	return func(yield func(store.Outcome, error) bool) {
		for _, o := range os {
			if !yield(o, nil) {
				return
			}
		}
	}
}

func (x *fixture) assess(t *testing.T, os ...store.Outcome) Hospital {
	t.Helper()
	h, err := assess(x.h, map[string]*models.Artifact{x.f.Artifact.Version: x.f.Artifact}, seq(os...))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// A model is degraded when its live MAE is above its validation MAE by
// more than the contract's fraction, over at least min_cases cases: not
// before, and not at a MAE within the limit.
func TestDegradation(t *testing.T) {
	x := newFixture(t)
	v := x.f.Artifact.Version
	limit := x.val.MAE * 1.25
	for _, c := range []struct {
		name    string
		cases   int
		err     float64
		verdict string
	}{
		{"within the limit", 50, limit * 0.99, Healthy},
		{"above the limit", 50, limit * 1.01, Degraded},
		{"above, under-estimating", 50, -limit * 1.01, Degraded},
		{"above, one case short of min_cases", 49, limit * 3, TooFewCases},
	} {
		h := x.assess(t, x.served(t, v, c.cases, c.err)...)
		m := h.Model(v)
		if h.Verdict != c.verdict || m.Verdict != c.verdict || h.Degraded != (c.verdict == Degraded) || m.Live.Count != c.cases {
			t.Errorf("%s: %s (%d cases): %s", c.name, h.Verdict, m.Live.Count, h.Reason)
		}
		if ratio := *m.MAERatio; ratio != m.Live.MAE/x.val.MAE {
			t.Errorf("%s: ratio %v", c.name, ratio)
		}
		under := 0.0
		if c.err < 0 {
			under = 1
		}
		if *m.UnderRateChange != under-x.val.UnderRate {
			t.Errorf("%s: under-estimate rate change %v, want %v", c.name, *m.UnderRateChange, under-x.val.UnderRate)
		}
	}
}

// Served as trained, the live metrics are the validation metrics, by the
// same code: month by month and overall.
func TestLiveMetricsAreTrainingsOwn(t *testing.T) {
	x := newFixture(t)
	v := x.f.Artifact.Version
	var os []store.Outcome
	var actual, predicted []float64
	for i, c := range x.f.Valid {
		os = append(os, x.outcome(t, v, i, x.f.Predicted[i].Value, c.Target))
		actual, predicted = append(actual, c.Target.Num), append(predicted, x.f.Predicted[i].Value)
	}
	h := x.assess(t, os...)
	m := h.Model(v)
	if m.Live.MAE != x.val.MAE || m.Live.RMSE != x.val.RMSE || m.Live.UnderRate != x.val.UnderRate || m.Live.Count != x.val.Count {
		t.Errorf("live %+v, validation %+v", m.Live, x.val)
	}
	if h.Verdict != Healthy || *m.MAERatio != 1 {
		t.Errorf("%s: %s", h.Verdict, h.Reason)
	}
	// The validation cases alternate between June and July.
	even := func(keep int) (a, p []float64) {
		for i := range actual {
			if i%2 == keep {
				a, p = append(a, actual[i]), append(p, predicted[i])
			}
		}
		return a, p
	}
	ja, jp := even(0)
	la, lp := even(1)
	want := []Month{{"2026-06", models.Evaluate(ja, jp)}, {"2026-07", models.Evaluate(la, lp)}}
	if len(m.Months) != 2 || m.Months[0].Month != want[0].Month || m.Months[0].MAE != want[0].MAE || m.Months[1].Month != want[1].Month || m.Months[1].MAE != want[1].MAE {
		t.Errorf("months %+v, want %+v", m.Months, want)
	}
}

// Inputs unlike the training summary's drift: a feature to act on flags
// the model, and names the feature; inputs like it do not.
func TestDrift(t *testing.T) {
	x := newFixture(t)
	v := x.f.Artifact.Version
	same := x.served(t, v, len(x.f.Valid), 0)
	if h := x.assess(t, same...); h.Drifted || h.Model(v).DriftRows != len(x.f.Valid) || h.Verdict != Healthy {
		t.Fatalf("the validation cases drifted: %s", h.Reason)
	}
	// Every live patient is emergency, in ward class A.
	var shifted []store.Outcome
	for _, o := range same {
		var fields map[string]any
		if err := json.Unmarshal(o.Inputs, &fields); err != nil {
			t.Fatal(err)
		}
		fields["admission_type"], fields["ward_class"] = "emergency", "A"
		o.Inputs, _ = json.Marshal(fields)
		shifted = append(shifted, o)
	}
	h := x.assess(t, shifted...)
	m := h.Model(v)
	if !h.Drifted || h.Degraded || h.Verdict != Drifted || !strings.Contains(h.Reason, "admission_type") || !strings.Contains(h.Reason, "ward_class") {
		t.Fatalf("%s: %s", h.Verdict, h.Reason)
	}
	for _, d := range m.Drift {
		shiftedFeature := d.Feature == "admission_type" || d.Feature == "ward_class"
		if shiftedFeature != (d.Band == models.Act) {
			t.Errorf("%s: PSI %.3f %s", d.Feature, d.PSI, d.Band)
		}
	}
	if w := m.Worst(); w.Band != models.Act {
		t.Errorf("worst %+v", w)
	}
	// Too few rows to judge drift: reported, not flagged. Even the same
	// population drifts by chance in 50 rows over a feature of many
	// levels (doctor_id).
	for _, rows := range [][]store.Outcome{shifted[:49], same[:50]} {
		h := x.assess(t, rows...)
		m := h.Model(v)
		var judged []string
		for _, d := range m.Drift {
			if d.Judged {
				judged = append(judged, d.Feature)
			}
			if d.Feature == "doctor_id" && (d.Judged || len(rows) == 50 && d.Band != models.Act) {
				t.Errorf("%d rows: doctor_id %+v: want a PSI to act on, by chance, and not judged", len(rows), d)
			}
		}
		if h.Drifted || m.Drift == nil || !strings.Contains(h.Reason, "too few to judge the drift of") || (len(rows) == 49) != (judged == nil) {
			t.Errorf("%d rows: judged %v: %s", len(rows), judged, h.Reason)
		}
	}
}

// Each prediction counts once, where it belongs; what cannot be judged is
// counted and said.
func TestCounts(t *testing.T) {
	x := newFixture(t)
	v := x.f.Artifact.Version
	os := x.served(t, v, 60, 0)
	// Case C3 predicted again later, further off: the later one counts.
	again := x.outcome(t, v, 3, x.f.Valid[3].Target.Num+1e6, x.f.Valid[3].Target)
	again.RequestID, again.Time = "again", x.t0.Add(24*time.Hour)
	// A case with no outcome yet, predicted twice; one without a case id;
	// one with hashed inputs; one with inputs the model cannot read.
	waiting := x.outcome(t, v, 61, 1000, models.Missing)
	waiting2 := waiting
	waiting2.RequestID = "waiting-again"
	noID := x.outcome(t, v, 62, 1000, models.Missing)
	noID.CaseID = ""
	hashed := x.outcome(t, v, 63, x.f.Valid[63].Target.Num, x.f.Valid[63].Target)
	hashed.Inputs, hashed.InputsHash = nil, "ab12"
	bad := x.outcome(t, v, 64, x.f.Valid[64].Target.Num, x.f.Valid[64].Target)
	bad.Inputs = json.RawMessage(`{"age": "forty"}`)
	h := x.assess(t, append(os, waiting, waiting2, noID, hashed, bad, again)...)
	m := h.Model(v)
	want := Counts{WithoutCaseID: 1, AwaitingOutcome: 1, Repeated: 2, InputsHashed: 1, UnreadableInputs: 1}
	if m.Counts != want || m.Live.Count != 62 || m.Predictions != 66 || h.Predictions != 66 || m.DriftRows != 64 {
		t.Fatalf("counts %+v, %d cases, %d predictions, %d drift rows", m.Counts, m.Live.Count, m.Predictions, m.DriftRows)
	}
	if off := math.Abs(again.Predicted - x.f.Valid[3].Target.Num); m.Live.MAE != off/62 {
		t.Errorf("live MAE %v: the repeated case's latest prediction should count, once", m.Live.MAE)
	}
	if !m.First.Equal(x.t0) || !m.Last.Equal(again.Time) {
		t.Errorf("first %v, last %v", m.First, m.Last)
	}

	// Hashed inputs only: drift cannot be computed, and says so.
	var allHashed []store.Outcome
	for _, o := range x.served(t, v, 60, 0) {
		o.Inputs, o.InputsHash = nil, "ab12"
		allHashed = append(allHashed, o)
	}
	if h := x.assess(t, allHashed...); h.Verdict != Healthy || h.Model(v).DriftNote != "inputs hashed: drift not computed" || !strings.Contains(h.Reason, "inputs hashed") {
		t.Errorf("hashed: %s: %s", h.Verdict, h.Reason)
	}
}

// A version without an artifact is shown, not judged; the hospital's
// verdict is its current model's, the version that served last.
func TestVersions(t *testing.T) {
	x := newFixture(t)
	v := x.f.Artifact.Version
	old := x.served(t, "2026.01-old", 80, 1e9)
	cur := x.served(t, v, 80, 0)
	for i := range cur {
		cur[i].Time = cur[i].Time.Add(48 * time.Hour)
	}
	h := x.assess(t, append(old, cur...)...)
	if h.Current != v || h.Verdict != Healthy || h.Degraded || len(h.Models) != 2 || h.WithoutArtifact != 80 {
		t.Fatalf("current %s, %s: %s; %d models, %d without artifact", h.Current, h.Verdict, h.Reason, len(h.Models), h.WithoutArtifact)
	}
	o := h.Model("2026.01-old")
	if o.Artifact || o.Verdict != NoArtifact || o.Degraded || o.Live.Count != 80 || o.Live.MAE < 1e8 || o.Validation != nil || o.MAERatio != nil {
		t.Errorf("old version: %+v", o)
	}
	// The old version serving last makes it current: not judged.
	last := x.served(t, "2026.01-old", 1, 1e9)[0]
	last.Time = x.t0.Add(72 * time.Hour)
	h = x.assess(t, append(cur, last)...)
	if h.Current != "2026.01-old" || h.Verdict != NoArtifact || h.Degraded || h.Drifted {
		t.Errorf("old version last: %s %s", h.Current, h.Verdict)
	}
	if h := x.assess(t); h.Verdict != NoPredictions || h.Models == nil || len(h.Models) != 0 {
		t.Errorf("no predictions: %+v", h)
	}
	broken := errors.New("connection reset")
	if _, err := assess(x.h, nil, func(yield func(store.Outcome, error) bool) { yield(store.Outcome{}, broken) }); !errors.Is(err, broken) {
		t.Errorf("a failing read: %v", err)
	}
}

// ReadModels finds every artifact named as ward train names them, at any
// depth (a folder of earlier versions too), in order of hospital and
// version.
func TestReadModels(t *testing.T) {
	dir := t.TempDir()
	a, b := modeltest.StOlaf(t, 400, 1, 1), modeltest.StOlaf(t, 400, 2, 1.2)
	for file, data := range map[string][]byte{"st-olaf/model.json": a.Data, "archive/2026-01/st-olaf/model.json": b.Data, "st-olaf/report/metrics.json": []byte("{}")} {
		path := filepath.Join(dir, filepath.FromSlash(file))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	arts, err := ReadModels(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{a.Artifact.Version, b.Artifact.Version}
	slices.Sort(want)
	if len(arts) != 2 || arts[0].Version != want[0] || arts[1].Version != want[1] || arts[0].Hospital != "st-olaf" {
		t.Errorf("read %d artifacts, want versions %v", len(arts), want)
	}
}
