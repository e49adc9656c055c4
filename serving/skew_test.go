package serving_test

import (
	"encoding/csv"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/models/modeltest"
)

// fitSPARCS fits the SPARCS contract's model on the real public sample,
// read through the contract as ingest reads it, with the contract's
// seeded random split.
func fitSPARCS(t *testing.T) modeltest.Fitted {
	t.Helper()
	h, err := contract.Load("../internal/contract/testdata/sparcs/hospital.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("../internal/contract/testdata/sparcs/sparcs-2016-sample.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	records, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	spec, err := h.ModelSpec(h.InputColumns(), modeltest.Lineage(h.ID, h.Hash))
	if err != nil {
		t.Fatal(err)
	}
	cols := h.InputColumns()
	file := h.Table(h.Training.Table).Columns // cols, as the file writes them
	index := func(name string) int {
		return slices.IndexFunc(cols, func(c models.Column) bool { return c.Name == name })
	}
	target := index(h.Training.Target)
	rng := rand.New(rand.NewPCG(uint64(h.Training.Split.Seed), 0))
	var train, valid []models.Case
	for i, rec := range records[1:] {
		c := models.Case{Row: make([]models.Value, len(spec.Inputs))}
		for j, in := range spec.Inputs {
			k := index(in.Name)
			v, ferr := file[k].ParseText(rec[k])
			if ferr != nil {
				t.Fatalf("row %d: %v", i+1, ferr)
			}
			c.Row[j] = v
		}
		tv, ferr := file[target].ParseText(rec[target])
		if ferr != nil {
			t.Fatalf("row %d: %v", i+1, ferr)
		}
		c.Target = tv
		if rng.Float64() < h.Training.Split.Fraction {
			valid = append(valid, c)
		} else {
			train = append(train, c)
		}
	}
	return modeltest.Fit(t, spec, train, valid)
}

// The server's answers on the validation cases, sent as JSON, are the
// predictions training made for them, to the bit; and so the metrics
// recomputed from the answers are the ones the artifact carries.
func TestNoTrainServeSkew(t *testing.T) {
	stOlafModel, _ := stOlaf(t)
	for _, c := range []struct {
		name string
		f    modeltest.Fitted
	}{
		{"st-olaf (synthetic; dates, rare levels, calibrated)", stOlafModel},
		{"SPARCS 2016 (real public data)", fitSPARCS(t)},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := c.f
			s := start(t, config(t, modelFile(t, f.Data)))
			var served, calibrated, actual []float64
			for from := 0; from < len(f.Valid); from += 100 {
				batch := f.Valid[from:min(from+100, len(f.Valid))]
				var insts []any
				for _, vc := range batch {
					insts = append(insts, modeltest.Request(f.Artifact.Inputs, vc.Row))
				}
				code, ans := s.post(t, map[string]any{"instances": insts})
				if code != 200 {
					t.Fatalf("cases %d-%d: %d %v", from, from+len(batch), code, ans)
				}
				for i, p := range ans["predictions"].([]any) {
					p := p.(map[string]any)
					want := f.Predicted[from+i]
					got := num(t, p["prediction"])
					if math.Float64bits(got) != math.Float64bits(want.Value) {
						t.Fatalf("case %d: served %v (bits %x), training predicted %v (bits %x)", from+i, got, math.Float64bits(got), want.Value, math.Float64bits(want.Value))
					}
					served = append(served, got)
					actual = append(actual, batch[i].Target.Num)
					if f.Artifact.Calibration == nil {
						if p["calibrated"] != nil {
							t.Fatalf("case %d: a calibrated value from a model without calibration", from+i)
						}
						continue
					}
					cal := num(t, p["calibrated"])
					if math.Float64bits(cal) != math.Float64bits(want.Calibrated) {
						t.Fatalf("case %d: served calibrated %v, training %v", from+i, cal, want.Calibrated)
					}
					calibrated = append(calibrated, cal)
				}
			}
			stored := f.Artifact.Metrics["validation"]
			if got := models.Evaluate(actual, served); got.Count != stored.Count || got.MAE != stored.MAE || got.RMSE != stored.RMSE || got.UnderRate != stored.UnderRate {
				t.Errorf("metrics of the served predictions %+v, training's %+v", got, stored.Metrics)
			}
			if calibrated != nil {
				if got := models.Evaluate(actual, calibrated); got.MAE != stored.Calibrated.MAE {
					t.Errorf("calibrated MAE served %v, training %v", got.MAE, stored.Calibrated.MAE)
				}
			}
			// The log holds the same bits, for feedback.
			for i, l := range s.logged(t, len(served)) {
				if math.Float64bits(num(t, l["ward.prediction"])) != math.Float64bits(served[i]) {
					t.Fatalf("log line %d: %v, answered %v", i, l["ward.prediction"], served[i])
				}
			}
			t.Logf("%d validation cases, every prediction identical to training's; MAE %.2f", len(served), stored.MAE)
		})
	}
}
