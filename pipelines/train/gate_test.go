package train_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/synth"
	"github.com/wardml/ward/pipelines/train"
	"github.com/wardml/ward/pipelines/train/report"
	"github.com/wardml/ward/pipelines/train/traintest"
)

// The gate scores the new model and the one in production on the new
// model's validation window, by the contract's metric and allowance.
func TestGate(t *testing.T) {
	ctx := context.Background()
	contracts := traintest.Group(t, synth.WithHospitals(2), synth.WithMonths(9))
	engines(t, func(t *testing.T, _, url string) {
		s := open(t, url)
		hs := traintest.Load(t, s, contracts)
		run := func(hs []*contract.Hospital, opts ...train.Option) *train.Result {
			t.Helper()
			rs, err := train.Run(ctx, s, hs, []string{"st-olaf"}, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if rs[0].Err != nil {
				t.Fatal(rs[0].Err)
			}
			return rs[0]
		}
		first := run(hs)

		// The same model in production: no regression.
		same := run(hs, train.WithBaseline(first.Artifact))
		g := same.Gate
		if !g.Passed || g.Production == nil || *g.Production != g.New || *g.Regression != 0 || g.ProductionVersion != first.Version ||
			g.Metric != "mae" || g.New != same.Validation.MAE || g.Cases != same.Validation.Count || !strings.HasPrefix(g.Reason, "passed mae on ") {
			t.Errorf("gate against itself: %+v", g)
		}

		// A production model that was trained on most of the window knows
		// it better: the new model regresses beyond the 0.5% a strict
		// contract allows.
		variant := *byID(hs, "st-olaf")
		variant.Training.Split.Validation = contract.Period{Months: 1}
		knowing := run([]*contract.Hospital{&variant, byID(hs, "riverside")})
		strict := *byID(hs, "st-olaf")
		allowed := 0.005
		strict.Training.Gate.MaxRegression = &allowed
		failed := run([]*contract.Hospital{&strict, byID(hs, "riverside")}, train.WithBaseline(knowing.Artifact))
		g = failed.Gate
		if g.Passed || g.Regression == nil || *g.Regression <= allowed || g.MaxRegression != allowed || !strings.HasPrefix(g.Reason, "failed mae on ") || failed.Artifact == nil {
			t.Fatalf("gate against a model that saw the window: %+v", g)
		}
		t.Logf("gate: %s", g.Reason)

		// The failed model is written all the same, marked failed.
		out := t.TempDir()
		sum, err := report.Write(out, []*train.Result{failed})
		if err != nil {
			t.Fatal(err)
		}
		if l := sum.Hospitals[0]; l.Gate != report.GateFailed || l.Model != filepath.Join(out, "st-olaf", report.ModelFile) {
			t.Errorf("summary %+v", l)
		}
		var m struct {
			Gate train.Gate `json:"gate"`
		}
		data, _ := os.ReadFile(filepath.Join(out, "st-olaf", report.ReportDir, report.MetricsFile))
		if err := json.Unmarshal(data, &m); err != nil || m.Gate.Passed || *m.Gate.Production != *g.Production {
			t.Errorf("metrics.json gate %+v, %v", m.Gate, err)
		}

		// A production model that reads a column the contract no longer
		// has cannot be compared on the same cases: the gate fails, for a
		// person to decide.
		model, _ := first.Artifact.Encode()
		renamed, err := models.Decode(bytes.ReplaceAll(model, []byte("comorbidities"), []byte("comorbidity_count")))
		if err != nil {
			t.Fatal(err)
		}
		g = run(hs, train.WithBaseline(renamed)).Gate
		if g.Passed || !strings.Contains(g.Reason, "reads column comorbidity_count, which the contract no longer has") {
			t.Errorf("gate against a model of another schema: %+v", g)
		}

		// The model in production of a hospital not being trained.
		rs, err := train.Run(ctx, s, hs, []string{"riverside"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := train.Run(ctx, s, hs, []string{"st-olaf"}, train.WithBaseline(rs[0].Artifact)); err == nil ||
			!strings.Contains(err.Error(), "riverside is not being trained") {
			t.Errorf("a baseline of another hospital: %v", err)
		}
		if !slices.Equal(rs[0].Pooled.Hospitals, []string{"riverside", "st-olaf"}) {
			t.Errorf("pooled %+v", rs[0].Pooled)
		}
	})
}
