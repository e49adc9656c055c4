package extract

import (
	"bytes"
	"encoding/csv"
	"io"
	"testing"
	"time"
)

// BenchmarkExtract1M parses and validates a 1,000,000-row cases file (the
// st-olaf shape, 11 columns) and reports rows/s, beside the rows/s of
// encoding/csv alone reading the same bytes in the same run (the floor
// that any CSV validation built on it can reach): go test -bench Extract1M
// -benchtime 3x ./pipelines/ingest/extract/
func BenchmarkExtract1M(b *testing.B) {
	const rows = 1_000_000
	h := stOlaf(b)
	data := casesCSV(rows, nil)
	b.SetBytes(int64(len(data)))
	var csvTime, wardTime time.Duration
	for b.Loop() {
		start := time.Now()
		cr := csv.NewReader(bytes.NewReader(data))
		cr.ReuseRecord = true
		for {
			if _, err := cr.Read(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
		csvTime += time.Since(start)

		start = time.Now()
		x := New(bytes.NewReader(data), h, h.Table("cases"), "cases.csv")
		n := 0
		for _, err := range x.Rows() {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		wardTime += time.Since(start)
		if n != rows {
			b.Fatalf("%d rows", n)
		}
	}
	b.ReportMetric(float64(rows*b.N)/wardTime.Seconds(), "rows/s")
	b.ReportMetric(float64(rows*b.N)/csvTime.Seconds(), "csv-only-rows/s")
	b.ReportMetric(csvTime.Seconds()/wardTime.Seconds(), "ratio")
}
