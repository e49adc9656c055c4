package synth

import (
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
)

// Each kind of dirt shows up in the files at about the configured rate, and
// exactly as often as the summary says.
func TestDirtAtItsRate(t *testing.T) {
	const rate = 0.01
	out, sum := generate(t, WithHospitals(3), WithMonths(8), WithEncryption("none"), WithDirt(rate))
	hs, err := contract.LoadAll(filepath.Join(out, "hospitals"))
	if err != nil {
		t.Fatal(err)
	}
	var found, chances DirtCounts
	for _, h := range hs {
		var got, n DirtCounts
		original := map[string]string{} // case id -> bill, as first sent
		for _, f := range readExtracts(t, out, h) {
			correction := isCorrection(f.name)
			if correction {
				got.CorrectionFiles++
			}
			for i, rec := range f.rows {
				if i > 0 && slices.Equal(rec, f.rows[i-1]) {
					got.Duplicates++
					continue
				}
				if f.table.Name == "cases" {
					n.Duplicates++
				}
				if correction {
					got.Corrections++
					first, ok := original[rec[0]]
					if !ok || first == rec[10] || f.name[:13] <= "cases_"+rec[3][:7] {
						t.Errorf("%s %s: case %s was not sent earlier with another bill (%q, now %q)", h.ID, f.name, rec[0], first, rec[10])
					}
					continue
				}
				for j, c := range f.table.Columns {
					raw := rec[j]
					if slices.Contains(map[string][]string{"patients": patientsMissing, "doctors": doctorsMissing, "cases": casesMissing}[f.table.Name], c.Name) {
						n.Missing++
						if raw == "" {
							got.Missing++
							continue
						}
					}
					switch {
					case c.Type == models.Date && raw != "":
						n.BadDates++
						if _, ferr := c.ParseText(raw); ferr != nil {
							got.BadDates++
						}
					case c.Name == "age":
						n.BadAges++
						if _, ferr := c.ParseText(raw); ferr != nil {
							got.BadAges++
						}
					case c.Name == "total_bill" && raw != "":
						n.Corrections++
						if _, ok := original[rec[0]]; !ok {
							original[rec[0]] = raw
						}
					}
				}
			}
		}
		s := sum.Hospitals[slices.IndexFunc(sum.Hospitals, func(s HospitalSummary) bool { return s.ID == h.ID })]
		if got != s.Dirt {
			t.Errorf("%s: found %+v in the files, summary says %+v", h.ID, got, s.Dirt)
		}
		found.add(got)
		chances.add(n)
	}
	check := func(kind string, k, n int) {
		mean := rate * float64(n)
		t.Logf("%-11s %5d of %6d (%.4f)", kind, k, n, float64(k)/float64(n))
		if math.Abs(float64(k)-mean) > 5*math.Sqrt(mean) {
			t.Errorf("%s: %d of %d, want about %.0f", kind, k, n, mean)
		}
	}
	check("missing", found.Missing, chances.Missing)
	check("bad ages", found.BadAges, chances.BadAges)
	check("bad dates", found.BadDates, chances.BadDates)
	check("duplicates", found.Duplicates, chances.Duplicates)
	// The cases of the last month cannot be corrected any more.
	check("corrections", found.Corrections, chances.Corrections*7/8)
	if found.CorrectionFiles == 0 {
		t.Error("no correction file")
	}
}

// At the default rate, the dirt is rejected row by row: no file comes near
// its contract's max_rejected_rows, so none would be quarantined.
func TestDefaultDirtQuarantinesNoFile(t *testing.T) {
	out, sum := generate(t, WithEncryption("none"))
	hs, err := contract.LoadAll(filepath.Join(out, "hospitals"))
	if err != nil {
		t.Fatal(err)
	}
	rows, rejected, worst := 0, 0, 0.0
	for _, h := range hs {
		for _, f := range readExtracts(t, out, h) {
			_, bad := f.parse()
			share := float64(bad) / float64(max(1, len(f.rows)))
			worst = max(worst, share)
			if share >= h.Thresholds.MaxRejected() {
				t.Errorf("%s %s: %d of %d rows rejected, over max_rejected_rows %v", h.ID, f.name, bad, len(f.rows), h.Thresholds.MaxRejected())
			}
			if strings.HasPrefix(f.name, "cases_") {
				rows += len(f.rows)
				rejected += bad
			}
		}
	}
	want := 0
	for _, h := range sum.Hospitals {
		want += h.Dirt.Rejected()
	}
	t.Logf("cases files: %d of %d rows rejected (%.2f%%); the worst file of any table: %.2f%%", rejected, rows, 100*float64(rejected)/float64(rows), 100*worst)
	if rejected == 0 || rejected > want {
		t.Errorf("%d case rows rejected; the summary's dirt makes %d rejections in all tables", rejected, want)
	}
}
