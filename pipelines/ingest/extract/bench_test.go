package extract

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

// BenchmarkExtract parses and validates a cases file (the st-olaf shape,
// 11 columns) of 100k and of 1M rows, and reports rows/s beside the rows/s
// of encoding/csv alone reading the same bytes in the same run (the floor
// that validation built on it can reach), and the peak live heap that
// ward adds while it reads (as the garbage collector measures it, over
// what was live before: the input held in memory is not counted). It does
// not grow with the file but for the set of keys seen (~40 MiB at 1M):
//
//	go test -run XXX -bench Extract -benchtime 3x ./pipelines/ingest/extract/
func BenchmarkExtract(b *testing.B) {
	for _, rows := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprint(rows), func(b *testing.B) {
			h := stOlaf(b)
			data := casesCSV(rows, nil)
			b.SetBytes(int64(len(data)))
			var csvTime, wardTime time.Duration
			var peak uint64
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

				stop := watchHeap(&peak)
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
				stop()
				if n != rows {
					b.Fatalf("%d rows", n)
				}
			}
			b.ReportMetric(float64(rows*b.N)/wardTime.Seconds(), "rows/s")
			b.ReportMetric(float64(rows*b.N)/csvTime.Seconds(), "csv-only-rows/s")
			b.ReportMetric(csvTime.Seconds()/wardTime.Seconds(), "ratio")
			b.ReportMetric(float64(peak)/(1<<20), "peak-live-MiB")
		})
	}
}

// watchHeap samples the live heap (as of the last collection) until stop
// is called, keeping its peak above what was live at the start.
func watchHeap(peak *uint64) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	runtime.GC()
	metrics.Read(s)
	base := s[0].Value.Uint64()
	go func() {
		defer close(finished)
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > base {
				*peak = max(*peak, v-base)
			}
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return func() { close(done); <-finished }
}
