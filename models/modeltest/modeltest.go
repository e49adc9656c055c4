// Package modeltest makes real model artifacts for the tests of the parts
// that use one (the server, the image, the agent, feedback): fitted with
// models.Fit on synthetic cases in the shape of the st-olaf contract, as
// the training pipeline fits them, with training's own predictions of the
// validation cases kept beside them. It is a test double in the sense of
// go-containerregistry's pkg/v1/random: a package, not a mock.
package modeltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
)

// Fitted is a model as training leaves it.
type Fitted struct {
	Artifact *models.Artifact
	// Data is the artifact's file.
	Data  []byte
	Valid []models.Case
	// Predicted holds training's predictions of the validation cases.
	Predicted []models.Prediction
}

// Contract loads a contract of internal/contract/testdata by its folder
// name ("st-olaf", "sparcs"), wherever the calling test runs.
func Contract(t testing.TB, name string) *contract.Hospital {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	h, err := contract.Load(filepath.Join(filepath.Dir(file), "..", "..", "internal", "contract", "testdata", name, contract.FileName))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// Spec is the contract's training section as Fit takes it, with a test
// lineage.
func Spec(t testing.TB, h *contract.Hospital) models.Spec {
	t.Helper()
	spec, err := h.ModelSpec(h.InputColumns(), models.Lineage{
		Files:    []models.File{{Name: h.ID + "/cases_2026-06.csv.gpg", SHA256: strings.Repeat("ab", 32)}},
		Contract: h.Hash, Ward: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// StOlaf fits a model in the st-olaf contract's shape (numeric,
// categorical with rare levels, a date; log target, calibrated) on n
// synthetic cases; seeds give different models. level shifts every bill
// by a factor, so that two versions are told apart by their answers.
func StOlaf(t testing.TB, n int, seed uint64, level float64) Fitted {
	t.Helper()
	h := Contract(t, "st-olaf")
	spec := Spec(t, h)
	col := map[string]int{}
	for i, c := range spec.Inputs {
		col[c.Name] = i
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	specialties := []string{"cardiology", "orthopaedics", "general surgery", "oncology", "obstetrics", "neurology"}
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	cutoff := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	var train, valid []models.Case
	for i := range n {
		row := make([]models.Value, len(spec.Inputs))
		age, los := float64(rng.IntN(90)+1), float64(rng.IntN(14))
		ward := rng.IntN(4)
		sp := rng.IntN(len(specialties))
		doctor := rng.IntN(40) * rng.IntN(3) // some doctors are rare: other
		emergency := rng.IntN(3) == 0
		day := start.AddDate(0, 0, i*540/n)
		row[col["age"]] = models.Number(age)
		if rng.IntN(50) == 0 {
			row[col["age"]] = models.Missing
		}
		row[col["planned_los"]] = models.Number(los)
		row[col["comorbidities"]] = models.Number(float64(rng.IntN(6)))
		row[col["admission_type"]] = models.Text(map[bool]string{true: "emergency", false: "elective"}[emergency])
		row[col["ward_class"]] = models.Text([]string{"A", "B1", "B2", "C"}[ward])
		row[col["specialty"]] = models.Text(specialties[sp])
		row[col["doctor_id"]] = models.Text(fmt.Sprintf("D%03d", doctor))
		row[col["sex"]] = models.Text([]string{"F", "M"}[rng.IntN(2)])
		row[col["insurance"]] = models.Text([]string{"public", "private", "self"}[rng.IntN(3)])
		row[col["admitted_at"]] = models.DateValue(day)
		logBill := 7 + math.Log(level) + 0.008*age + 0.35*math.Log1p(los) + 0.2*float64(3-ward) + 0.1*float64(sp) + 0.2*rng.NormFloat64()
		if emergency {
			logBill += 0.3
		}
		c := models.Case{Row: row, Target: models.Number(math.Round(math.Exp(logBill)*100) / 100),
			Segments: []string{[]string{"A", "B1", "B2", "C"}[ward], map[bool]string{true: "emergency", false: "elective"}[emergency]}}
		if day.Before(cutoff) {
			train = append(train, c)
		} else {
			valid = append(valid, c)
		}
	}
	return Fit(t, spec, train, valid)
}

// Fit fits a spec as training does, and keeps training's predictions of
// the validation cases.
func Fit(t testing.TB, spec models.Spec, train, valid []models.Case) Fitted {
	t.Helper()
	a, err := models.Fit(spec, Cases(train), Cases(valid))
	if err != nil {
		t.Fatal(err)
	}
	data, err := a.Encode()
	if err != nil {
		t.Fatal(err)
	}
	f := Fitted{Artifact: a, Data: data, Valid: valid}
	for _, c := range valid {
		p, err := a.Predict(nil, c.Row)
		if err != nil {
			t.Fatal(err)
		}
		f.Predicted = append(f.Predicted, p)
	}
	return f
}

// Cases serves a slice as models.Fit's source.
func Cases(cs []models.Case) models.Cases {
	return func(yield func(models.Case, error) bool) {
		for _, c := range cs {
			if !yield(c, nil) {
				return
			}
		}
	}
}

// Request renders a row as a request's JSON object (models.JSONFields).
func Request(inputs []models.Column, row []models.Value) map[string]any {
	return models.JSONFields(inputs, row)
}
