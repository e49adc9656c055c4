package train_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/train"
	"github.com/wardml/ward/pipelines/train/traintest"
)

// sparcsData finds the SPARCS development set: WARD_TEST_SPARCS, else
// shared/data beside the checkout (../shared/data, or two levels up from a
// worktree).
func sparcsData(t *testing.T) string {
	if p := os.Getenv("WARD_TEST_SPARCS"); p != "" {
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Dir(file)
	for range 6 {
		dir = filepath.Dir(dir)
		p := filepath.Join(dir, "shared", "data", "sparcs-2020-msk-dev.csv")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("the SPARCS development set is not found: set WARD_TEST_SPARCS to sparcs-2020-msk-dev.csv")
	}
	t.Skip("the SPARCS development set is not found (WARD_TEST_SPARCS)")
	return ""
}

// The SPARCS development set as 60 real hospitals, one contract each, a
// random quarter of each validated: the models ward chooses per hospital
// (among ridge, ridge-pooled, gbdt and gbdt-pooled, on the inner
// validation) have a case-weighted MAE well below per-hospital ridge's,
// the ordering measured with sklearn.
func TestSPARCSChosenModelsBeatRidge(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("trains 60 hospitals in four families (-short, or the race detector)")
	}
	contracts, err := traintest.SPARCS(sparcsData(t), t.TempDir(), traintest.SPARCSFamilies)
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, "sqlite:"+filepath.Join(t.TempDir(), "ward.db"))
	hs := traintest.Load(t, s, contracts)
	if len(hs) != 60 {
		t.Fatalf("%d hospitals, want 60", len(hs))
	}
	rs, err := train.Run(context.Background(), s, hs, idsOf(hs))
	if err != nil {
		t.Fatal(err)
	}
	table := SPARCSTable(t, rs)
	t.Logf("\n%s", table.text)
	if table.chosen > 0.95*table.mae[models.FamilyRidge] {
		t.Errorf("chosen models' MAE %.0f, per-hospital ridge %.0f: want at least 5%% below", table.chosen, table.mae[models.FamilyRidge])
	}
}

type sparcsTable struct {
	mae    map[string]float64
	chosen float64
	text   string
}

// SPARCSTable is the case-weighted validation MAE of every family and of
// the chosen models over the results.
func SPARCSTable(t *testing.T, rs []*train.Result) sparcsTable {
	sum, n := map[string]float64{}, map[string]float64{}
	shipped := map[string]int{}
	var chosen, cases float64
	for _, r := range rs {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.Hospital, r.Err)
		}
		for _, c := range r.Candidates {
			if c.Validation == nil {
				t.Fatalf("%s: family %s: %s", r.Hospital, c.Family, c.Error)
			}
			sum[c.Family] += c.Validation.MAE * float64(c.Validation.Count)
			n[c.Family] += float64(c.Validation.Count)
		}
		shipped[r.Family]++
		chosen += r.Validation.MAE * float64(r.Validation.Count)
		cases += float64(r.Validation.Count)
	}
	tb := sparcsTable{mae: map[string]float64{}, chosen: chosen / cases}
	var b strings.Builder
	fmt.Fprintf(&b, "%-14s %10s %8s\n", "family", "MAE", "shipped")
	for _, f := range models.Families {
		tb.mae[f] = sum[f] / n[f]
		fmt.Fprintf(&b, "%-14s %10.0f %8d\n", f, tb.mae[f], shipped[f])
	}
	fmt.Fprintf(&b, "%-14s %10.0f %8d  (%.1f%% below ridge)\n", "chosen", tb.chosen, len(rs), 100*(1-tb.chosen/tb.mae[models.FamilyRidge]))
	tb.text = b.String()
	return tb
}
