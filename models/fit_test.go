package models_test

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/models/modeltest"
)

func loadContract(t *testing.T, path string) *contract.Hospital {
	t.Helper()
	h, err := contract.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// testSpec is the contract's training section as Fit takes it, with a
// test lineage.
func testSpec(t *testing.T, h *contract.Hospital) models.Spec {
	t.Helper()
	spec, err := h.ModelSpec(h.InputColumns(), modeltest.Lineage(h.ID, h.Hash))
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// hospital generates the cases of a hospital in the st-olaf contract's
// shape: the bill is log-linear in the features, with noise.
type hospital struct {
	cases    []models.Case
	admitted []time.Time
}

func genHospital(spec models.Spec, n int, seed uint64) hospital {
	rng := rand.New(rand.NewPCG(seed, 7))
	col := map[string]int{}
	for i, c := range spec.Inputs {
		col[c.Name] = i
	}
	specialties := []string{"cardiology", "orthopaedics", "general surgery", "oncology", "obstetrics", "neurology"}
	wardEffect := map[string]float64{"A": 0.5, "B1": 0.25, "B2": 0.1, "C": 0}
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var h hospital
	for i := range n {
		row := make([]models.Value, len(spec.Inputs))
		set := func(name string, v models.Value) {
			if j, ok := col[name]; ok {
				row[j] = v
			}
		}
		age := float64(rng.IntN(90) + 1)
		los := float64(rng.IntN(14))
		comorb := float64(rng.IntN(6))
		emergency := rng.IntN(3) == 0
		ward := []string{"A", "B1", "B2", "C"}[rng.IntN(4)]
		spec := rng.IntN(len(specialties))
		doctor := rng.IntN(40) * rng.IntN(3) // some doctors are rare
		sex := []string{"F", "M"}[rng.IntN(2)]
		insurance := []string{"public", "private", "self"}[rng.IntN(3)]
		day := start.AddDate(0, 0, i*540/n)
		logBill := 7 + 0.008*age + 0.35*math.Log1p(los) + 0.05*comorb + wardEffect[ward] + 0.1*float64(spec) + 0.002*float64(doctor) + 0.2*rng.NormFloat64()
		if emergency {
			logBill += 0.3
		}
		set("age", models.Number(age))
		set("planned_los", models.Number(los))
		set("comorbidities", models.Number(comorb))
		set("admission_type", models.Text(map[bool]string{true: "emergency", false: "elective"}[emergency]))
		set("ward_class", models.Text(ward))
		set("specialty", models.Text(specialties[spec]))
		set("doctor_id", models.Text(fmt.Sprintf("D%03d", doctor)))
		set("sex", models.Text(sex))
		set("insurance", models.Text(insurance))
		set("admitted_at", models.DateValue(day))
		if rng.IntN(50) == 0 {
			set("age", models.Missing)
		}
		bill := math.Round(math.Exp(logBill)*100) / 100
		h.cases = append(h.cases, models.Case{Row: row, Target: models.Number(bill), Segments: []string{ward, map[bool]string{true: "emergency", false: "elective"}[emergency]}})
		h.admitted = append(h.admitted, day)
	}
	return h
}

// split returns the cases before and from cutoff as Cases.
func (h hospital) split(cutoff time.Time) (train, valid models.Cases) {
	pick := func(before bool) models.Cases {
		return func(yield func(models.Case, error) bool) {
			for i, c := range h.cases {
				if h.admitted[i].Before(cutoff) == before && !yield(c, nil) {
					return
				}
			}
		}
	}
	return pick(true), pick(false)
}

func collect(cs models.Cases) []models.Case {
	var out []models.Case
	for c := range cs {
		out = append(out, c)
	}
	return out
}

var cutoff = time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)

func stOlaf(t *testing.T) (models.Spec, hospital) {
	spec := testSpec(t, loadContract(t, "../internal/contract/testdata/st-olaf/hospital.yaml"))
	return spec, genHospital(spec, 4000, 1)
}

func TestFitLearnsAndServesTheSameBits(t *testing.T) {
	spec, h := stOlaf(t)
	train, valid := h.split(cutoff)
	a, err := models.Fit(spec, train, valid)
	if err != nil {
		t.Fatal(err)
	}
	v := a.Metrics["validation"]
	vcases := collect(valid)
	if v.Count != len(vcases) || a.Training.ValidationRows != len(vcases) || a.Training.Rows != len(h.cases)-len(vcases) {
		t.Fatalf("counts: metrics %d, training %+v; want %d validation of %d", v.Count, a.Training, len(vcases), len(h.cases))
	}
	// The model must beat the best constant: the median bill of training.
	var trainBills []float64
	for c := range train {
		trainBills = append(trainBills, c.Target.Num)
	}
	slices.Sort(trainBills)
	med := trainBills[len(trainBills)/2]
	var actual, constant []float64
	for _, c := range vcases {
		actual = append(actual, c.Target.Num)
		constant = append(constant, med)
	}
	base := models.Evaluate(actual, constant)
	if v.MAE > 0.5*base.MAE {
		t.Errorf("validation MAE %.0f; the median alone gets %.0f: the model learned too little", v.MAE, base.MAE)
	}
	coef := map[string]float64{}
	for _, c := range a.Coefficients {
		coef[c.Name] = c.Value
	}
	if coef["age"] <= 0 || coef["ward_class=A"] <= coef["ward_class=C"] || coef["admission_type=emergency"] <= coef["admission_type=elective"] {
		t.Errorf("coefficients do not follow the data: age %v, ward A %v vs C %v, emergency %v vs elective %v",
			coef["age"], coef["ward_class=A"], coef["ward_class=C"], coef["admission_type=emergency"], coef["admission_type=elective"])
	}
	if !slices.Contains(a.Encoder.Names(), "doctor_id=(other)") || !slices.Contains(a.Encoder.Names(), "doctor_id=D000") {
		t.Errorf("doctor_id levels: %v", a.Encoder.Names())
	}

	// Written and read back, the model predicts every validation case to
	// the bit as training did: the metrics recomputed from the decoded
	// model's predictions equal the stored ones exactly.
	data, err := a.Encode()
	if err != nil {
		t.Fatal(err)
	}
	b, err := models.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	var s models.Sparse
	var raw, cal []float64
	for _, c := range vcases {
		p, err := b.Predict(&s, c.Row)
		if err != nil {
			t.Fatal(err)
		}
		q, _ := a.Predict(nil, c.Row)
		if math.Float64bits(p.Value) != math.Float64bits(q.Value) || math.Float64bits(p.Calibrated) != math.Float64bits(q.Calibrated) {
			t.Fatalf("decoded model predicts %v/%v, fitted one %v/%v", p.Value, p.Calibrated, q.Value, q.Calibrated)
		}
		raw = append(raw, p.Value)
		cal = append(cal, p.Calibrated)
	}
	if got := models.Evaluate(actual, raw); got.MAE != v.MAE || got.RMSE != v.RMSE || got.UnderRate != v.UnderRate {
		t.Errorf("decoded model's validation metrics %+v differ from the stored %+v", got, v.Metrics)
	}
	if got := models.Evaluate(actual, cal); v.Calibrated == nil || got.MAE != v.Calibrated.MAE {
		t.Errorf("decoded model's calibrated metrics %+v differ from the stored %+v", got, v.Calibrated)
	}
	if again, _ := b.Encode(); !bytes.Equal(again, data) {
		t.Error("a decoded artifact does not encode to the same bytes")
	}
	// Segments: every ward class, with its counts adding up.
	total := 0
	for _, seg := range v.Segments["ward_class"] {
		total += seg.Count
	}
	if len(v.Segments["ward_class"]) != 4 || total != v.Count || len(v.Segments["admission_type"]) != 2 {
		t.Errorf("segments %+v", v.Segments)
	}
}

func TestFitCalibratesToTheTargetRate(t *testing.T) {
	spec, h := stOlaf(t)
	train, valid := h.split(cutoff)
	a, err := models.Fit(spec, train, valid)
	if err != nil {
		t.Fatal(err)
	}
	// The shift is fitted on the inner validation, where the rate is met
	// exactly; the outer window, which it never saw, only comes near.
	in, v := a.Metrics["inner"], a.Metrics["validation"]
	want := math.Floor(*spec.UnderRate*float64(in.Count)) / float64(in.Count)
	if a.Calibration == nil || in.Calibrated == nil || in.Calibrated.UnderRate != want {
		t.Fatalf("inner calibrated under rate %+v, want %v", in.Calibrated, want)
	}
	if v.Calibrated == nil || math.Abs(v.Calibrated.UnderRate-*spec.UnderRate) > 0.08 {
		t.Fatalf("outer calibrated under rate %+v, want near %v", v.Calibrated, *spec.UnderRate)
	}
	// Raw log-scale predictions sit near the median: under about half the
	// time. The calibrated ones trade some MAE for fewer under-estimates.
	if v.UnderRate < 0.35 || v.Calibrated.MAE <= v.MAE || a.Calibration.Shift <= 0 {
		t.Errorf("raw under rate %v MAE %v, calibrated MAE %v, shift %v", v.UnderRate, v.MAE, v.Calibrated.MAE, a.Calibration.Shift)
	}
	p, err := a.Predict(nil, collect(valid)[0].Row)
	if err != nil {
		t.Fatal(err)
	}
	if r := p.Calibrated / p.Value; math.Abs(r-math.Exp(a.Calibration.Shift)) > 1e-12 {
		t.Errorf("with a log target the calibration is a factor exp(shift) = %v; got %v", math.Exp(a.Calibration.Shift), r)
	}
}

func TestFitIsDeterministic(t *testing.T) {
	spec, h := stOlaf(t)
	encode := func(spec models.Spec) []byte {
		train, valid := h.split(cutoff)
		a, err := models.Fit(spec, train, valid)
		if err != nil {
			t.Fatal(err)
		}
		data, err := a.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	first, second := encode(spec), encode(spec)
	if !bytes.Equal(first, second) {
		t.Fatal("two fits of the same data and contract give different bytes")
	}
	spec.Lambdas = []float64{5}
	if bytes.Equal(first, encode(spec)) {
		t.Error("a different lambda grid gives the same bytes: the comparison cannot fail")
	}
	a, _ := models.Decode(first)
	if len(a.Version) != 12 {
		t.Errorf("version %q, want the content hash's 12 hex digits", a.Version)
	}
}

func TestFitRefusesBadData(t *testing.T) {
	spec, h := stOlaf(t)
	only := func(cases []models.Case) models.Cases {
		return func(yield func(models.Case, error) bool) {
			for _, c := range cases {
				if !yield(c, nil) {
					return
				}
			}
		}
	}
	train, valid := collect(only(h.cases[:3000])), collect(only(h.cases[3000:]))
	withTarget := func(cases []models.Case, f func(i int) models.Value) []models.Case {
		out := slices.Clone(cases)
		for i := range out {
			out[i].Target = f(i)
		}
		return out
	}
	col := func(name string) int {
		return slices.IndexFunc(spec.Inputs, func(c models.Column) bool { return c.Name == name })
	}
	constantAge := slices.Clone(train)
	for i := range constantAge {
		row := slices.Clone(constantAge[i].Row)
		row[col("age")] = models.Number(40)
		constantAge[i].Row = row
	}
	failing := func(yield func(models.Case, error) bool) {
		yield(train[0], nil)
		yield(models.Case{}, errors.New("connection reset"))
	}
	shrinking := 0
	changing := func(yield func(models.Case, error) bool) {
		shrinking++
		for _, c := range train[:len(train)-shrinking] {
			if !yield(c, nil) {
				return
			}
		}
	}
	for _, c := range []struct {
		name         string
		train, valid models.Cases
		is           error
		msg          string
	}{
		{"too few rows", only(train[:150]), only(valid), models.ErrTooFewRows, "150 training cases with a target, want at least 200"},
		{"no target", only(withTarget(train, func(int) models.Value { return models.Missing })), only(valid), models.ErrNoTarget, "target total_bill"},
		{"target outside log", only(withTarget(train, func(i int) models.Value { return models.Number(float64(i % 500)) })), only(valid), nil, "training case 1: target total_bill 0: log needs a value above 0"},
		{"constant feature", only(constantAge), only(valid), models.ErrConstant, "feature age: constant on the training rows: every value of age is 40"},
		{"no validation", only(train), only(nil), models.ErrNoValidation, "validation window has no rows"},
		{"source error", failing, only(valid), nil, "training cases: connection reset"},
		{"passes differ", changing, only(valid), nil, "the training cases changed between passes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, err := models.Fit(spec, c.train, c.valid)
			if err == nil || a != nil {
				t.Fatalf("got an artifact and %v", err)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %v is not %v", err, c.is)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q lacks %q", err, c.msg)
			}
		})
	}
}

// sparcs reads the real SPARCS sample through its contract, as ingest
// would.
func sparcs(t *testing.T) (*contract.Hospital, [][]models.Value, []models.Column) {
	h := loadContract(t, "../internal/contract/testdata/sparcs/hospital.yaml")
	f, err := os.Open("../internal/contract/testdata/sparcs/sparcs-2016-sample.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	records, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	cols := h.InputColumns()
	file := h.Table(h.Training.Table).Columns // cols, as the file writes them
	var rows [][]models.Value
	for i, rec := range records[1:] {
		row := make([]models.Value, len(cols))
		for j := range cols {
			v, ferr := file[j].ParseText(rec[j])
			if ferr != nil {
				t.Fatalf("row %d: %v", i+1, ferr)
			}
			row[j] = v
		}
		rows = append(rows, row)
	}
	return h, rows, cols
}

func TestFitOnSPARCS(t *testing.T) {
	h, rows, cols := sparcs(t)
	spec := testSpec(t, h)
	target := slices.IndexFunc(cols, func(c models.Column) bool { return c.Name == h.Training.Target })
	var cases []models.Case
	for _, r := range rows {
		in := make([]models.Value, len(spec.Inputs))
		for i, c := range spec.Inputs {
			in[i] = r[slices.IndexFunc(cols, func(x models.Column) bool { return x.Name == c.Name })]
		}
		cases = append(cases, models.Case{Row: in, Target: r[target]})
	}
	// The contract's random split: a fifth validated on, by a seeded draw.
	rng := rand.New(rand.NewPCG(uint64(h.Training.Split.Seed), 0))
	held := make([]bool, len(cases))
	for i := range held {
		held[i] = rng.Float64() < h.Training.Split.Fraction
	}
	side := func(v bool) models.Cases {
		return func(yield func(models.Case, error) bool) {
			for i, c := range cases {
				if held[i] == v && !yield(c, nil) {
					return
				}
			}
		}
	}
	a, err := models.Fit(spec, side(false), side(true))
	if err != nil {
		t.Fatal(err)
	}
	v := a.Metrics["validation"]
	var actual, constant []float64
	for c := range side(true) {
		actual = append(actual, c.Target.Num)
	}
	med := slices.Clone(actual)
	slices.Sort(med)
	for range actual {
		constant = append(constant, med[len(med)/2])
	}
	if base := models.Evaluate(actual, constant); v.MAE >= base.MAE || v.MedianAPE == nil || *v.MedianAPE >= *base.MedianAPE {
		t.Errorf("on real charges the model (MAE %.0f, median APE %v) must beat the validation median itself (MAE %.0f, median APE %v)",
			v.MAE, *v.MedianAPE, base.MAE, *base.MedianAPE)
	}
	t.Logf("SPARCS: %d training, %d validation cases, lambda %v, MAE %.0f (median: %.0f), median APE %.3f",
		a.Training.Rows, a.Training.ValidationRows, a.Lambda, v.MAE, models.Evaluate(actual, constant).MAE, *v.MedianAPE)
	if _, err := a.Encode(); err != nil {
		t.Fatal(err)
	}
}
