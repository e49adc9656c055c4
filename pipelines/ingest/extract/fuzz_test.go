package extract

import (
	"bytes"
	"io"
	"testing"

	"github.com/wardml/ward/internal/contract"
)

// fuzzLimits keeps a fuzzed file small: every input exercises the limits.
func fuzzLimits(h *contract.Hospital) *contract.Hospital {
	h.Reports.ShowValues = false
	h.Inbound.Limits = contract.Limits{MaxPlaintextBytes: 1 << 20, MaxCellBytes: 4 << 10, MaxPageBytes: 1 << 20}
	return h
}

// checkRun ranges over a fuzzed file's rows and checks what any file,
// however broken, must give: no panic, rows of the table's width, no row
// after the final error, counts that add up, and reports that quote no
// cell.
func checkRun(t *testing.T, x *Extractor, width int) {
	t.Helper()
	var n int64
	var last error
	for row, err := range x.Rows() {
		if last != nil {
			t.Fatalf("a row after the final error %v", last)
		}
		if err != nil {
			last = err
			continue
		}
		if len(row) != width {
			t.Fatalf("a row of %d values, want %d", len(row), width)
		}
		n++
	}
	rep := x.Report()
	if last == nil && n != rep.Good {
		t.Fatalf("%d rows yielded, report says %d good", n, rep.Good)
	}
	if rep.Good+rep.Rejected > rep.Rows {
		t.Fatalf("report: %d good + %d rejected of %d rows", rep.Good, rep.Rejected, rep.Rows)
	}
	if (last == nil) != (rep.Verdict == Loaded || rep.Verdict == Partial) {
		t.Fatalf("verdict %s after error %v", rep.Verdict, last)
	}
	for _, f := range rep.shown().Failures {
		if f.Value != "" {
			t.Fatalf("a report quotes a value: %+v", f)
		}
	}
	if len(rep.Text()) > 1<<20 {
		t.Fatalf("a report of %d bytes", len(rep.Text()))
	}
}

func FuzzCSV(f *testing.F) {
	h := fuzzLimits(stOlaf(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		x := New(bytes.NewReader(data), h, h.Table("cases"), "cases_2026-11.csv", WithRejects(io.Discard), WithMaxLineBytes(64<<10))
		checkRun(t, x, len(h.Table("cases").Columns))
	})
}

func FuzzParquet(f *testing.F) {
	h := fuzzLimits(visits(f))
	width := len(h.Table("visits").Columns)
	f.Fuzz(func(t *testing.T, data []byte) {
		// In place (random access), and streamed (an OpenPGP plaintext,
		// spooled).
		checkRun(t, New(bytes.NewReader(data), h, h.Table("visits"), "visits_1.parquet", WithRejects(io.Discard)), width)
		checkRun(t, New(io.MultiReader(bytes.NewReader(data)), h, h.Table("visits"), "visits_1.parquet", WithRejects(io.Discard)), width)
	})
}
