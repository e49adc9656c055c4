package store

import (
	"context"
	"testing"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
)

// A late extract of an older period (patients_2023-12 after
// patients_2024-02) never replaces the newer rows: by period for a table
// without a time column, by the time column for one with it (the period
// breaking ties); each refused row is counted and named with the file of
// the row that was kept. A correction file still replaces. Both engines.
func TestLateExtractKeepsNewerRows(t *testing.T) {
	engines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url)
		h := hospital(t)
		patients, cases := h.Table("patients"), h.Table("cases")
		load := func(tb *contract.Table, name string, rows ...[]string) Counts {
			t.Helper()
			var vs [][]models.Value
			for _, r := range rows {
				vs = append(vs, row(t, tb, r...))
			}
			opts := []LoadOption{WithPeriod(tb.PeriodOf(name))}
			if h.IsCorrection(name) {
				opts = append(opts, WithReplace())
			}
			c, err := s.Load(ctx, file(h.ID, name, name), tb, stream(vs...), opts...)
			if err != nil {
				t.Fatalf("load %s: %v", name, err)
			}
			return c
		}
		birth := func(id string) string {
			t.Helper()
			for _, r := range tableRows(t, s, h.ID, patients) {
				if r[0].Str == id {
					return r[2].Format(models.Date)
				}
			}
			t.Fatalf("no patient %s", id)
			return ""
		}

		load(patients, "patients_2024-02.csv", []string{"P1", "F", "1980-01-01"}, []string{"P2", "M", "1990-01-01"})
		c := load(patients, "patients_2023-12.csv", []string{"P3", "F", "1970-01-01"}, []string{"P1", "F", "1900-01-01"})
		if c.Inserted != 1 || c.Updated != 0 || c.Refused != 1 {
			t.Fatalf("late extract: %+v, want 1 inserted, 1 refused", c)
		}
		if r := c.RefusedRows; len(r) != 1 || r[0].Row != 2 || r[0].By != "patients_2024-02.csv" || r[0].Period != "2024-02" {
			t.Fatalf("refused rows: %+v", r)
		}
		if b := birth("P1"); b != "1980-01-01" {
			t.Fatalf("P1 born %s after the late extract, want the newer 1980-01-01", b)
		}
		// A newer period replaces; so does a correction of an old one.
		if c := load(patients, "patients_2024-03.csv", []string{"P2", "M", "1991-01-01"}); c.Updated != 1 || c.Refused != 0 {
			t.Fatalf("newer extract: %+v", c)
		}
		if c := load(patients, "patients_correction_2023-12.csv", []string{"P1", "F", "1900-01-01"}); c.Updated != 1 || c.Refused != 0 {
			t.Fatalf("correction: %+v", c)
		}
		if b := birth("P1"); b != "1900-01-01" {
			t.Fatalf("P1 born %s after the correction", b)
		}

		// cases has a time column: a later admitted_at wins, whatever the
		// file's period; on the same admitted_at the later period wins.
		caseRow := func(id, admitted, bill string) []string {
			return []string{id, "P1", admitted, "", "40", "false", bill}
		}
		load(cases, "cases_2024-02.csv", caseRow("C1", "2024-02-10", "100"), caseRow("C2", "2024-02-11", "200"))
		c = load(cases, "cases_2024-05.csv", caseRow("C1", "2024-01-01", "1"), caseRow("C2", "2024-02-11", "300"))
		if c.Refused != 1 || c.Updated != 1 || c.RefusedRows[0].Row != 1 {
			t.Fatalf("cases of a later period with an older admitted_at: %+v", c)
		}
		c = load(cases, "cases_2024-01.csv", caseRow("C2", "2024-02-11", "5"))
		if c.Refused != 1 || c.Updated != 0 {
			t.Fatalf("cases of an older period, same admitted_at: %+v", c)
		}
		got := tableRows(t, s, h.ID, cases)
		if len(got) != 2 || got[0][6].Num != 100 || got[1][6].Num != 300 {
			t.Fatalf("cases: %v", got)
		}
	})
}
