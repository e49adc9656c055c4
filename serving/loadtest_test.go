package serving_test

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/wardml/ward/models/modeltest"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/serving/load"
)

// A minute of wrk at full speed, while the model is swapped ten times
// (five by the file watch, five by Reload, which SIGHUP calls): no request
// fails, and the heap stays where it was. CI runs it (a minute); -short
// and the race detector's run skip it.
func TestLoadWhileSwappingTenTimes(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute of load")
	}
	if raceEnabled {
		t.Skip("under the race detector the figures mean nothing; the plain run holds them")
	}
	testenv.LookPath(t, "wrk", "wrk")
	a, b := stOlaf(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "model.json")
	writeModel(t, path, a.Data)
	cfg := config(t, path)
	cfg.Watch = 100 * time.Millisecond
	cfg.PredictionLog = filepath.Join(dir, "predictions.jsonl")
	cfg.LogMaxSize, cfg.LogKeep = 32<<20, 2
	s := start(t, cfg, io.Discard)
	body, _ := json.Marshal(stOlafCase())

	const run = 60 * time.Second
	began := time.Now()
	type result struct {
		r   load.Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := load.Wrk(context.Background(), s.url+"/v1/predict", body, run, 1, 16)
		done <- result{r, err}
	}()
	at := func(d time.Duration) { time.Sleep(time.Until(began.Add(d))) }
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}

	at(4 * time.Second)
	heapStart := heap()
	samples := []string{fmt.Sprintf("%.1f", float64(heapStart)/(1<<20))}
	for i := range 10 {
		at(5*time.Second + time.Duration(i)*5*time.Second)
		next := []modeltest.Fitted{b, a}[i%2]
		writeModel(t, path, next.Data)
		if i%2 == 1 {
			// The watch may see the file first: then Reload finds it
			// unchanged. The count of swaps below holds either way.
			if _, err := s.Reload(); err != nil {
				t.Errorf("swap %d by Reload: %v", i+1, err)
			}
		}
		waitFor(t, fmt.Sprintf("swap %d", i+1), func() bool { return s.version(t) == next.Artifact.Version })
		samples = append(samples, fmt.Sprintf("%.1f", float64(heap())/(1<<20)))
	}
	at(run - 3*time.Second)
	heapEnd := heap() // still under load, as at the start
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	r := res.r
	t.Logf("wrk: %s", r)
	t.Logf("live heap under load (MiB): %s; start %.1f, end %.1f", strings.Join(samples, " "), float64(heapStart)/(1<<20), float64(heapEnd)/(1<<20))
	if r.Non2xx != 0 || r.Errors != 0 || r.Requests < 1000 {
		t.Errorf("%d requests, %d not 2xx, %d failed: want none failed", r.Requests, r.Non2xx, r.Errors)
	}
	if heapEnd > heapStart+heapStart/2+8<<20 {
		t.Errorf("the heap grew from %.1f to %.1f MiB under steady load", float64(heapStart)/(1<<20), float64(heapEnd)/(1<<20))
	}
	m := s.metrics(t)
	if !strings.Contains(m, `ward_serve_model_loads_total{outcome="swapped"} 10`+"\n") || !strings.Contains(m, `ward_serve_model_loads_total{outcome="refused"} 0`) {
		t.Errorf("loads:\n%s", grep(m, "loads_total"))
	}
	// The prediction log rotated under load and holds whole lines.
	if err := s.shutdown(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "predictions*.jsonl"))
	if len(files) != 3 {
		t.Errorf("prediction log files %v: want the live one and 2 rotated", files)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if lines := decodeLines(t, data); len(lines) == 0 {
			t.Errorf("%s: no lines", f)
		}
	}
}
