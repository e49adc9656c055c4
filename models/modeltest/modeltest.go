// Package modeltest makes real model artifacts for the tests of the parts
// that use one (the server, the image, the agent, feedback): fitted with
// models.Fit on synthetic cases in the shape of the st-olaf contract
// (StOlafSpec), as the training pipeline fits them, with training's own
// predictions of the validation cases kept beside them. It is a test double in the sense of
// go-containerregistry's pkg/v1/random: a package, not a mock.
package modeltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

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

// StOlafSpec is the training section of the st-olaf contract
// (internal/contract/testdata/st-olaf) as Fit takes it, with a test
// lineage: numeric inputs (one log1p), categoricals with rare levels, a
// date; a log target, calibrated to under-estimate one case in five. It is
// built here, not loaded, so that models imports nothing of ward; this
// package's test checks it against the contract.
func StOlafSpec(t testing.TB) models.Spec {
	t.Helper()
	text := func(name string, required bool, allowed ...string) models.Column {
		return models.Column{Name: name, Type: models.String, Required: required, Allowed: allowed}
	}
	count := func(name string, max float64) models.Column {
		return models.Column{Name: name, Type: models.Int, Min: ptr(0.0), Max: ptr(max)}
	}
	spec := models.Spec{
		Hospital: "st-olaf",
		Inputs: []models.Column{
			text("doctor_id", true),
			{Name: "admitted_at", Type: models.Date, Required: true},
			text("admission_type", true, "elective", "emergency"),
			text("ward_class", true, "A", "B1", "B2", "C"),
			count("age", 110),
			count("planned_los", 365),
			count("comorbidities", 20),
			text("sex", false, "F", "M", "X"),
			text("insurance", false, "public", "private", "self"),
			text("specialty", true),
		},
		Features: []models.Feature{
			{Name: "age", Column: "age", Kind: models.Numeric, Transform: models.NoTransform},
			{Name: "planned_los", Column: "planned_los", Kind: models.Numeric, Transform: models.Log1p},
			{Name: "comorbidities", Column: "comorbidities", Kind: models.Numeric, Transform: models.NoTransform},
			{Name: "admission_type", Column: "admission_type", Kind: models.Categorical, MinCount: 1},
			{Name: "ward_class", Column: "ward_class", Kind: models.Categorical, MinCount: 1},
			{Name: "specialty", Column: "specialty", Kind: models.Categorical, MinCount: 20},
			{Name: "doctor_id", Column: "doctor_id", Kind: models.Categorical, MinCount: 30},
			{Name: "sex", Column: "sex", Kind: models.Categorical, MinCount: 1},
			{Name: "insurance", Column: "insurance", Kind: models.Categorical, MinCount: 1},
			{Name: "admitted", Column: "admitted_at", Kind: models.DateParts, Parts: []string{"month"}},
		},
		Target:          "total_bill",
		TargetTransform: models.Log,
		Family:          models.FamilyRidge,
		Lambdas:         []float64{0.1, 1, 10, 100},
		GBDT:            models.GBDT{}.WithDefaults(),
		UnderRate:       ptr(0.2),
		MinRows:         200,
		Segments:        []string{"ward_class", "admission_type"},
		Lineage:         Lineage("st-olaf", strings.Repeat("cd", 32)),
	}
	for i := range spec.Inputs {
		if err := spec.Inputs[i].Prepare(); err != nil {
			t.Fatal(err)
		}
	}
	return spec
}

// Lineage is a test lineage: one staged cases file of the hospital, the
// contract's hash as given.
func Lineage(hospital, contractHash string) models.Lineage {
	return models.Lineage{
		Files:    []models.File{{Name: hospital + "/cases_2026-06.csv.gpg", SHA256: strings.Repeat("ab", 32)}},
		Contract: contractHash, Ward: "test",
	}
}

func ptr[T any](v T) *T { return &v }

// StOlaf fits a model in the st-olaf contract's shape (numeric,
// categorical with rare levels, a date; log target, calibrated) on n
// synthetic cases; seeds give different models. level shifts every bill
// by a factor, so that two versions are told apart by their answers.
func StOlaf(t testing.TB, n int, seed uint64, level float64) Fitted {
	t.Helper()
	spec := StOlafSpec(t)
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
