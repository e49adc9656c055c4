package store

import (
	"context"
	"encoding/csv"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
)

func TestTrainingReadJoinsWithLineage(t *testing.T) {
	engines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url)
		h := hospital(t)
		pts, cases := h.Table("patients"), h.Table("cases")

		// Before any file, the data is empty.
		ds := s.Training(h)
		for _, err := range ds.Rows(ctx) {
			t.Fatalf("empty store: %v", err)
		}
		if ds.Lineage.Rows != 0 || len(ds.Lineage.Files) != 0 {
			t.Fatalf("empty lineage: %+v", ds.Lineage)
		}

		patients := file(h.ID, "patients_1.csv", "patients")
		if _, err := s.Load(ctx, patients, pts, stream(
			row(t, pts, "P1", "F", "1980-05-06"),
			row(t, pts, "P2", "M", ""),
		)); err != nil {
			t.Fatal(err)
		}
		casesFile := file(h.ID, "cases_1.csv", "cases")
		// Keys that collations order differently: both engines give them
		// in byte order.
		if _, err := s.Load(ctx, casesFile, cases, stream(
			row(t, cases, "b1", "P1", "2026-01-10", "2026-01-10T09:30:00Z", "40", "true", "100"),
			row(t, cases, "B2", "P2", "2025-12-01", "", "", "false", "200"),
			row(t, cases, "a10", "P9", "2026-02-03", "", "7", "", ""),
			row(t, cases, "a9", "P1", "2026-01-20", "", "41", "", "300"),
		)); err != nil {
			t.Fatal(err)
		}

		var got [][]models.Value
		for r, err := range ds.Rows(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, r)
		}
		names := make([]string, len(ds.Columns))
		for i, c := range ds.Columns {
			names[i] = c.Name
		}
		wantNames := []string{"case_id", "patient_id", "admitted_at", "arrived", "age", "emergency", "total_bill", "sex", "birth_date"}
		if !slices.Equal(names, wantNames) {
			t.Fatalf("columns %v, want %v", names, wantNames)
		}
		birth := row(t, pts, "P1", "F", "1980-05-06")[2]
		want := [][]models.Value{
			append(row(t, cases, "B2", "P2", "2025-12-01", "", "", "false", "200"), models.Text("M"), models.Missing),
			append(row(t, cases, "a10", "P9", "2026-02-03", "", "7", "", ""), models.Missing, models.Missing),
			append(row(t, cases, "a9", "P1", "2026-01-20", "", "41", "", "300"), models.Text("F"), birth),
			append(row(t, cases, "b1", "P1", "2026-01-10", "2026-01-10T09:30:00Z", "40", "true", "100"), models.Text("F"), birth),
		}
		if len(got) != len(want) {
			t.Fatalf("%d rows, want %d: %v", len(got), len(want), got)
		}
		for i := range want {
			if !equalRows(got[i], want[i]) {
				t.Errorf("row %d:\n got %v\nwant %v", i, got[i], want[i])
			}
		}
		lin := ds.Lineage
		wantFiles := []string{patients.SHA256, casesFile.SHA256}
		slices.Sort(wantFiles)
		if lin.Rows != 4 || !slices.Equal(lin.Files, wantFiles) ||
			!lin.From.Equal(time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC)) || !lin.To.Equal(time.Date(2026, 2, 3, 0, 0, 0, 0, time.UTC)) {
			t.Fatalf("lineage %+v, want 4 rows of %v from 2025-12-01 to 2026-02-03", lin, wantFiles)
		}

		// A correction of P2 brings a third file into the lineage; P1's
		// rows still come from the first.
		fix := file(h.ID, "patients_correction.csv", "fix")
		if _, err := s.Load(ctx, fix, pts, stream(row(t, pts, "P2", "X", "1990-01-01"))); err != nil {
			t.Fatal(err)
		}
		for r, err := range ds.Rows(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			if r[0].Str == "B2" && r[7].Str != "X" {
				t.Errorf("B2 after the correction: %v", r)
			}
		}
		if len(ds.Lineage.Files) != 3 || !slices.Contains(ds.Lineage.Files, fix.SHA256) {
			t.Fatalf("lineage after the correction: %v", ds.Lineage.Files)
		}

		// Stopping early is fine.
		for range ds.Rows(ctx) {
			break
		}

		newest, err := s.Newest(ctx, h.ID, cases)
		if err != nil || newest != row(t, cases, "x", "x", "2026-02-03", "", "", "", "")[2] {
			t.Fatalf("Newest = %v, %v; want 2026-02-03", newest, err)
		}
		if v, err := s.Newest(ctx, h.ID, pts); err != nil || !v.Null {
			t.Fatalf("Newest of a table without a time column = %v, %v", v, err)
		}
	})
}

// The SPARCS public sample, parsed with its contract as ingest would,
// goes in and comes back value for value.
func TestSPARCSSampleRoundTrips(t *testing.T) {
	h, err := contract.Load("../../internal/contract/testdata/sparcs/hospital.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tbl := h.Table("discharges")
	f, err := os.Open("../../internal/contract/testdata/sparcs/sparcs-2016-sample.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	records, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	at := map[string]int{}
	for i, name := range records[0] {
		at[name] = i
	}
	var rows [][]models.Value
	rejected := 0
	for _, rec := range records[1:] {
		r := make([]models.Value, len(tbl.Columns))
		ok := true
		for i, c := range tbl.Columns {
			v, ferr := c.ParseText(rec[at[c.FileHeader()]])
			if ferr != nil {
				ok = false
				break
			}
			r[i] = v
		}
		if ok {
			rows = append(rows, r)
		} else {
			rejected++
		}
	}
	if len(rows) < 900 {
		t.Fatalf("only %d of %d rows parsed", len(rows), len(records)-1)
	}
	byID := map[float64][]models.Value{}
	for _, r := range rows {
		byID[r[0].Num] = r
	}
	engines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url)
		c, err := s.Load(ctx, File{Hospital: h.ID, Name: "sparcs-2016-sample.csv", SHA256: file("", "", "sparcs").SHA256,
			Rejected: int64(rejected)}, tbl, stream(rows...))
		if err != nil {
			t.Fatal(err)
		}
		if c.Inserted != int64(len(rows)) {
			t.Fatalf("inserted %d, want %d", c.Inserted, len(rows))
		}
		ds := s.Training(h)
		n := 0
		prev := -1.0
		for r, err := range ds.Rows(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			n++
			if r[0].Num <= prev {
				t.Fatalf("record %v after %v: not in key order", r[0].Num, prev)
			}
			prev = r[0].Num
			if w := byID[r[0].Num]; !equalRows(r, w) {
				t.Fatalf("record %v:\n got %v\nwant %v", r[0].Num, r, w)
			}
		}
		if n != len(rows) || ds.Lineage.Rows != int64(n) || len(ds.Lineage.Files) != 1 {
			t.Fatalf("%d rows back, lineage %+v; want %d", n, ds.Lineage, len(rows))
		}
	})
}
