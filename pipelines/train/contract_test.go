package train_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/store"
	"github.com/wardml/ward/pipelines/train"
	"github.com/wardml/ward/pipelines/train/report"
	"github.com/wardml/ward/pipelines/train/traintest"
)

// harbourContract is a hospital unlike the synthetic group: other tables,
// other names, an int target on log1p, a timestamp for time, an int and a
// bool among the features, a gap, a grouped split and a backtest. ID is
// replaced by the hospital's id, and EXTRA by more lines of the stays
// table's columns.
const harbourContract = `
id: ID
tables:
  - name: wards
    pattern: "wards*.csv"
    key: [ward_code]
    columns:
      - {name: ward_code, type: string, required: true}
      - {name: ward_tier, type: int, required: true, min: 1, max: 3}
  - name: stays
    pattern: "stays_*.csv"
    key: [adm_no]
    time_column: arrived
    joins: [{table: wards, on: {ward_code: ward_code}}]
    columns:
      - {name: adm_no, type: int, required: true}
      - {name: patient_ref, type: string, required: true}
      - {name: arrived, type: timestamp, required: true}
      - {name: ward_code, type: string, required: true}
      - {name: age_years, type: float}
      - {name: stay_nights, type: int, min: 0}
      - {name: urgent, type: bool}
      - {name: charges, type: int, min: 0}
EXTRA
training:
  table: stays
  target: charges
  target_transform: log1p
  time_column: arrived
  group_column: patient_ref
  cleaning:
    - drop_missing: charges
    - drop_outside: {column: age_years, min: 0, max: 100}
  features:
    - {name: age, column: age_years, kind: numeric}
    - {name: stay_nights, kind: numeric, transform: log1p}
    - {name: urgent, kind: numeric}
    - {name: ward_tier, kind: categorical}
    - {name: ward_code, kind: categorical, min_count: 5}
    - {name: arrived_parts, column: arrived, kind: date, parts: [dow, quarter]}
  segments: [urgent, ward_tier]
  model: {lambdas: [0.1, 1, 10]}
  split: {validation: 2mo, gap: 1mo, folds: 3, grouped: true}
  gate: {metric: rmse}
  min_rows: MINROWS
`

// harbour is a harbour-like hospital: its contract and how its data is
// spoiled.
type harbour struct {
	id      string
	minRows int
	extra   string // more columns of stays, in the contract only
	// edits are old/new pairs of contract text.
	edits []string
	// noCharges leaves every charge empty; constantAge gives every case
	// age 40; chargesFrom leaves the charges empty from that day on.
	noCharges, constantAge bool
	chargesFrom            time.Time
}

func (hb harbour) contract(t *testing.T) *contract.Hospital {
	t.Helper()
	y := strings.NewReplacer("ID", hb.id, "EXTRA", hb.extra, "MINROWS", fmt.Sprint(cmp.Or(hb.minRows, 100))).Replace(harbourContract)
	y = strings.NewReplacer(hb.edits...).Replace(y)
	h, err := contract.Parse([]byte(y), hb.id+"/hospital.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// Five cases with an impossible age and ten without charges, which the
// cleaning rules drop.
const (
	harbourBadAges   = 5
	harbourNoCharges = 10
)

// load writes 2,400 stays of 800 patients over 2024-01 to 2025-06 (so
// that patients come back), and loads them into s.
func (hb harbour) load(t *testing.T, s *store.Store) *contract.Hospital {
	t.Helper()
	h := hb.contract(t)
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 11))
	wards := "ward_code,ward_tier\n"
	codes := []string{"N1", "N2", "S1", "S2", "E1", "ICU"}
	tiers := map[string]int{"N1": 1, "N2": 1, "S1": 2, "S2": 2, "E1": 2, "ICU": 3}
	for _, c := range codes {
		wards += fmt.Sprintf("%s,%d\n", c, tiers[c])
	}
	patient := make([]float64, 800)
	for i := range patient {
		patient[i] = 0.3 * rng.NormFloat64()
	}
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	years := map[int]*strings.Builder{}
	const n = 2400
	for i := range n {
		at := start.Add(time.Duration(float64(547*24*time.Hour) * float64(i) / n)).Add(time.Duration(rng.IntN(3600)) * time.Second)
		p := rng.IntN(len(patient))
		code := codes[rng.IntN(len(codes))]
		age := 18 + rng.Float64()*70
		nights := rng.IntN(12)
		urgent := rng.IntN(3) == 0
		logc := 6 + 0.01*age + 0.3*math.Log1p(float64(nights)) + 0.5*float64(tiers[code]) + patient[p] + 0.15*rng.NormFloat64()
		if urgent {
			logc += 0.4
		}
		charges := fmt.Sprint(int(math.Round(math.Exp(logc))))
		ageText := fmt.Sprintf("%.1f", age)
		switch {
		case hb.constantAge:
			ageText = "40"
		case i%480 == 17:
			ageText = "150"
		}
		if hb.noCharges || i%240 == 5 || (!hb.chargesFrom.IsZero() && !at.Before(hb.chargesFrom)) {
			charges = ""
		}
		b := years[at.Year()]
		if b == nil {
			b = &strings.Builder{}
			b.WriteString("adm_no,patient_ref,arrived,ward_code,age_years,stay_nights,urgent,charges\n")
			years[at.Year()] = b
		}
		fmt.Fprintf(b, "%d,R%04d,%s,%s,%s,%d,%t,%s\n", 100000+i, p, at.Format(time.RFC3339), code, ageText, nights, urgent, charges)
	}
	files := map[string]string{"wards.csv": wards}
	for y, b := range years {
		files[fmt.Sprintf("stays_%d.csv", y)] = b.String()
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		file := filepath.Join(dir, name)
		if err := os.WriteFile(file, []byte(files[name]), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := traintest.LoadFile(s, h, file); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// A hospital with other tables, names and types trains by its contract
// alone, with every split setting the contract offers.
func TestAnotherContractTrainsByConfiguration(t *testing.T) {
	engines(t, func(t *testing.T, _, url string) {
		s := open(t, url)
		h := harbour{id: "harbour"}.load(t, s)
		rs, err := train.Run(context.Background(), s, []*contract.Hospital{h}, []string{h.ID})
		if err != nil {
			t.Fatal(err)
		}
		r := rs[0]
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		a := r.Artifact
		if r.Rows != 2400 || r.Cleaning[0].Removed != harbourNoCharges || r.Cleaning[1].Removed != harbourBadAges || r.Cleaned != 2400-harbourNoCharges-harbourBadAges {
			t.Errorf("rows %d, cleaning %+v, cleaned %d", r.Rows, r.Cleaning, r.Cleaned)
		}
		// Two months validated on, a month left out before them, and the
		// patients with a case in the window moved there whole.
		sp := r.Split
		if sp.Kind != train.TimeSplit || sp.Cutoff != "2025-05-01" || sp.End != "2025-07-01" || sp.Gap != "1mo" || sp.GapCases == 0 ||
			!sp.Grouped || sp.Moved == 0 || sp.Training.To >= "2025-04-01" || sp.Validation.To != "2025-06-30" || sp.Validation.From >= sp.Cutoff || sp.Training.From != "2024-01-01" {
			t.Errorf("split %+v", sp)
		}
		if sp.TrainingCases+sp.ValidationCases+sp.GapCases != r.Cleaned {
			t.Errorf("split %+v does not account for the %d cases", sp, r.Cleaned)
		}
		if len(r.Folds) != 3 || r.Folds[1].Split.End != "2025-05-01" || r.Folds[2].Split.End != "2025-03-01" {
			t.Fatalf("folds %+v", r.Folds)
		}
		for i, f := range r.Folds {
			if f.Metrics == nil || f.Error != "" {
				t.Errorf("fold %d: %+v", i+1, f)
			}
		}
		if r.Folds[0].Metrics.MAE != r.Validation.MAE {
			t.Errorf("the first fold is not the model shipped: %+v", r.Folds[0])
		}
		if c := r.Comparison; c == nil || c.Split.Kind != train.RandomSplit || c.Metrics == nil {
			t.Errorf("comparison %+v", c)
		}
		if r.Pooled.Metrics != nil || !strings.Contains(r.Pooled.Reason, "no pooled baseline") {
			t.Errorf("pooled %+v", r.Pooled)
		}
		if !strings.HasPrefix(r.Version, "2025.06-") || r.Gate.Metric != "rmse" || r.Gate.New != r.Validation.RMSE {
			t.Errorf("version %s, gate %+v", r.Version, r.Gate)
		}
		// The model learned the bill from the contract's features: it
		// beats the training median on the validation window, and urgent
		// stays cost more.
		var train []float64
		var actual []float64
		for _, p := range r.Points {
			if p.Validation {
				actual = append(actual, p.Actual)
			} else {
				train = append(train, p.Actual)
			}
		}
		slices.Sort(train)
		constant := make([]float64, len(actual))
		for i := range constant {
			constant[i] = train[len(train)/2]
		}
		if base := models.Evaluate(actual, constant); r.Validation.MAE > 0.6*base.MAE {
			t.Errorf("validation MAE %.0f; the training median gets %.0f", r.Validation.MAE, base.MAE)
		}
		coef := map[string]float64{}
		for _, c := range a.Coefficients {
			coef[c.Name] = c.Value
		}
		if coef["urgent"] <= 0 || coef["ward_tier=3"] <= coef["ward_tier=1"] {
			t.Errorf("coefficients %v", coef)
		}
		if segs := r.Validation.Segments; len(segs["urgent"]) != 2 || len(segs["ward_tier"]) != 3 {
			t.Errorf("segments %+v", segs)
		}
		files, err := report.Render(r)
		if err != nil {
			t.Fatal(err)
		}
		if files["report/residuals-over-time.png"] == nil || !strings.Contains(string(files["report/report.md"]), "## Backtest") {
			t.Errorf("report files %v", slices.Sorted(maps.Keys(files)))
		}
	})
}

// The real SPARCS sample: one flat table of awkward headers, no time
// column (so a random split, and nothing to compare it with), and no
// other hospital to pool with.
func TestSPARCSTrainsByConfiguration(t *testing.T) {
	engines(t, func(t *testing.T, _, url string) {
		s := open(t, url)
		h, err := contract.Load("../../internal/contract/testdata/sparcs/hospital.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if err := traintest.LoadFile(s, h, "../../internal/contract/testdata/sparcs/sparcs-2016-sample.csv"); err != nil {
			t.Fatal(err)
		}
		rs, err := train.Run(context.Background(), s, []*contract.Hospital{h}, []string{h.ID})
		if err != nil {
			t.Fatal(err)
		}
		r := rs[0]
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		if r.Split.Kind != train.RandomSplit || r.Split.Seed != 7 || r.Comparison != nil || r.Folds != nil || r.Pooled.Metrics != nil ||
			r.Artifact.Lineage.Validation != (models.Window{}) {
			t.Errorf("split %+v, comparison %+v, pooled %+v", r.Split, r.Comparison, r.Pooled)
		}
		if len(r.Version) != 12 || r.Validation.Count != r.Split.ValidationCases || r.Validation.Count < r.Cleaned/10 {
			t.Errorf("version %q, %d validated of %d", r.Version, r.Validation.Count, r.Cleaned)
		}
		md, err := report.Render(r)
		if err != nil {
			t.Fatal(err)
		}
		if text := string(md["report/report.md"]); !strings.Contains(text, "no time column") || !strings.Contains(text, "No pooled baseline") || md["report/residuals-over-time.png"] != nil {
			t.Errorf("report:\n%s", text)
		}
	})
}

// Bad data gets an error that names the hospital, says what is wrong and
// what to do, and no artifact; the other hospitals of the run train.
func TestBadDataGetsAClearErrorAndNoModel(t *testing.T) {
	engines(t, func(t *testing.T, _, url string) {
		s := open(t, url)
		good := harbour{id: "good"}.load(t, s)
		missing := harbour{id: "missing-column"}
		missing.load(t, s)
		missing.extra = "      - {name: weight_kg, type: float}"
		missingH := missing.contract(t)
		missingH.Training.Features = append(missingH.Training.Features, models.Feature{Name: "weight_kg", Column: "weight_kg", Kind: models.Numeric, Transform: models.NoTransform})
		empty := harbour{id: "no-data"}.contract(t)
		cases := []struct {
			h    *contract.Hospital
			is   error
			want string
		}{
			{harbour{id: "too-few", minRows: 5000}.load(t, s), models.ErrTooFewRows, "training cases with a target, want at least 5000 (the time split at 2025-05-01; training.min_rows is 5000): wait for more data, or lower min_rows"},
			{harbour{id: "no-target", noCharges: true}.load(t, s), nil, "column charges (the target) has no value in any of the 2400 cases in the database"},
			{harbour{id: "constant", constantAge: true}.load(t, s), models.ErrConstant, "feature age: constant on the training rows: every value of age_years is 40; drop it from the features"},
			{missingH, nil, "column weight_kg (read by feature weight_kg) has no value in any of the 2400 cases in the database: the extracts loaded so far do not fill it (was it added to the contract after they were loaded?)"},
			{harbour{id: "no-validation", edits: []string{"    - drop_missing: charges\n", "", "grouped: true", "grouped: false"}, chargesFrom: time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)}.load(t, s), models.ErrNoValidation, "the validation window has no rows with a target (the time split at 2025-05-01): its cases have no charges yet; load the extracts that bring them"},
			{empty, train.ErrNoData, "no cases in the database: load its extracts with ward ingest first"},
		}
		all := []*contract.Hospital{good}
		ids := []string{good.ID}
		for _, c := range cases {
			all = append(all, c.h)
			ids = append(ids, c.h.ID)
		}
		rs, err := train.Run(context.Background(), s, all, ids)
		if err != nil {
			t.Fatal(err)
		}
		if rs[0].Err != nil || rs[0].Artifact == nil {
			t.Fatalf("the good hospital: %v", rs[0].Err)
		}
		out := t.TempDir()
		sum, err := report.Write(out, rs)
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range cases {
			r := rs[i+1]
			t.Run(c.h.ID, func(t *testing.T) {
				if r.Err == nil || r.Artifact != nil || r.Version != "" {
					t.Fatalf("trained %q, error %v", r.Version, r.Err)
				}
				if c.is != nil && !errors.Is(r.Err, c.is) {
					t.Errorf("error %v is not %v", r.Err, c.is)
				}
				if !strings.HasPrefix(r.Error, "train "+c.h.ID+": ") || !strings.Contains(r.Error, c.want) {
					t.Errorf("error %q\nwant %q", r.Error, c.want)
				}
				if _, err := os.Stat(filepath.Join(out, c.h.ID)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("output folder for a hospital without a model: %v", err)
				}
				if l := sum.Hospitals[i+1]; l.Error != r.Error || l.Model != "" || l.Gate != "" {
					t.Errorf("summary line %+v", l)
				}
			})
		}
		if _, err := os.Stat(filepath.Join(out, good.ID, report.ModelFile)); err != nil {
			t.Errorf("the good hospital's model: %v", err)
		}
	})
}
