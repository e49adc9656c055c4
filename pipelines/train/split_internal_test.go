package train

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
)

// splitContract has a patient per case column, a date, and the split
// under test.
const splitContract = `
id: split-test
tables:
  - name: cases
    pattern: "cases_*.csv"
    key: [case_id]
    columns:
      - {name: case_id, type: int, required: true}
      - {name: patient, type: string}
      - {name: day, type: date, required: true}
      - {name: x, type: float}
      - {name: bill, type: float}
training:
  target: bill
  time_column: day
  group_column: patient
  features: [{name: x, kind: numeric}]
  split: SPLIT
`

// splitData is 400 cases, one a day from 2025-01-01, of 100 patients
// (some cases without one).
func splitData(t *testing.T, split string) *dataset {
	t.Helper()
	h, err := contract.Parse([]byte(strings.Replace(splitContract, "SPLIT", split, 1)), "split-test/hospital.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := &dataset{h: h, cols: h.InputColumns()}
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 400 {
		patient := models.Text(fmt.Sprintf("P%02d", (i*37)%100))
		if i%50 == 0 {
			patient = models.Missing
		}
		day := start.AddDate(0, 0, i)
		p.rows = append(p.rows, []models.Value{models.Number(float64(i)), patient, models.DateValue(day), models.Number(float64(i % 7)), models.Number(100)})
		p.at = append(p.at, day.Unix())
	}
	return p
}

// checkGrouped fails the test when a patient has cases on both sides.
func checkGrouped(t *testing.T, p *dataset, s sides) {
	t.Helper()
	side := map[string]bool{}
	for v, idx := range [][]int{s.train, s.valid} {
		for _, i := range idx {
			pt := p.rows[i][1]
			if pt.Null {
				continue
			}
			if was, seen := side[pt.Str]; seen && was != (v == 1) {
				t.Fatalf("patient %s has cases on both sides", pt.Str)
			}
			side[pt.Str] = v == 1
		}
	}
}

func TestTimeSplit(t *testing.T) {
	// 400 days from 2025-01-01 end on 2026-02-04: the last two months are
	// 2025-12-05 to 2026-02-04, and the month before them is the gap.
	p := splitData(t, "{validation: 2mo, gap: 1mo}")
	s, sp, err := p.timeSplit(0)
	if err != nil {
		t.Fatal(err)
	}
	if sp.Cutoff != "2025-12-05" || sp.End != "2026-02-05" || sp.Validation != (models.Window{From: "2025-12-05", To: "2026-02-04"}) ||
		sp.Training != (models.Window{From: "2025-01-01", To: "2025-11-04"}) || sp.GapCases != 30 || sp.ValidationCases != 62 || sp.TrainingCases != 308 || sp.Moved != 0 {
		t.Fatalf("split %+v", sp)
	}
	if len(s.train) != 308 || len(s.valid) != 62 || !slices.IsSorted(s.train) || !slices.IsSorted(s.valid) {
		t.Fatalf("sides %d, %d", len(s.train), len(s.valid))
	}
	// The backtest's second fold: the two months before.
	_, f, err := p.timeSplit(1)
	if err != nil || f.End != "2025-12-05" || f.Cutoff != "2025-10-05" || f.Training.To != "2025-09-04" {
		t.Fatalf("fold 2: %+v, %v", f, err)
	}
	// A fold before the data has no cases to validate on.
	if _, _, err := p.timeSplit(7); err == nil {
		t.Fatal("a fold before the first case: no error")
	}
}

func TestGroupedTimeSplitKeepsPatientsWhole(t *testing.T) {
	p := splitData(t, "{validation: 2mo, grouped: true}")
	s, sp, err := p.timeSplit(0)
	if err != nil {
		t.Fatal(err)
	}
	checkGrouped(t, p, s)
	ungrouped := splitData(t, "{validation: 2mo}")
	u, usp, _ := ungrouped.timeSplit(0)
	if sp.Moved == 0 || sp.ValidationCases != usp.ValidationCases+sp.Moved || len(s.train)+len(s.valid) != len(u.train)+len(u.valid) {
		t.Fatalf("grouped %+v, ungrouped %+v", sp, usp)
	}
	if sp.Validation.From >= sp.Cutoff || !slices.IsSorted(s.valid) {
		t.Errorf("the moved cases should widen the validation window: %+v", sp)
	}
}

func TestRandomSplitIsSeededAndGrouped(t *testing.T) {
	p := splitData(t, "{kind: random, fraction: 0.25, seed: 3, grouped: true}")
	s, sp, err := p.randomSplit()
	if err != nil {
		t.Fatal(err)
	}
	checkGrouped(t, p, s)
	again, _, _ := p.randomSplit()
	if !slices.Equal(s.valid, again.valid) {
		t.Error("the same seed draws other cases")
	}
	if sp.ValidationCases < 40 || sp.ValidationCases > 180 || sp.TrainingCases+sp.ValidationCases != 400 {
		t.Errorf("split %+v", sp)
	}
	other := splitData(t, "{kind: random, fraction: 0.25, seed: 4, grouped: true}")
	if o, _, _ := other.randomSplit(); slices.Equal(o.valid, s.valid) {
		t.Error("another seed draws the same cases")
	}
}
