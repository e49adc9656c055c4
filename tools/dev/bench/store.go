package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/store"
)

// The store benchmark: ward's PostgreSQL load path (COPY into a staging
// table, upsert by key, ledger entry, one transaction) against psql's
// \copy of the same plaintext CSV into a table of the same shape (same
// columns, types and primary key; ward's own columns filled by defaults).
// Three figures for ward: the store alone (values made in memory), the
// store fed by a CSV reader that parses and checks every cell with the
// contract (most of what ingest adds), and the store loading a file whose
// every key is already in the table (a correction, its slowest case). ward runs in a child
// process so that its peak memory is its own; it is measured at N/10 rows
// and at N, to show that it does not grow with the file.
func init() {
	register(&benchmark{
		Name:    "store",
		Summary: "PostgreSQL load of N cases rows: ward's Load vs psql \\copy; ward's peak memory at N/10 and N",
		Flags: func(fs *flag.FlagSet) {
			fs.IntVar(&storeBench.rows, "rows", 1_000_000, "rows in the file")
			fs.StringVar(&storeBench.postgres, "postgres", "", "URL of an empty database (default: start a PostgreSQL server)")
			fs.StringVar(&storeBench.contract, "contract", "internal/contract/testdata/st-olaf/hospital.yaml", "contract whose cases table is loaded")
			fs.IntVar(&storeBench.runs, "runs", 3, "runs of each side; the best counts")
			fs.StringVar(&storeBench.child, "child", "", "internal: run ward's side (values|csv) and print its figures")
			fs.StringVar(&storeBench.file, "file", "", "internal: the child's CSV file")
		},
		Run: runStore,
	})
}

var storeBench struct {
	rows                            int
	postgres, contract, child, file string
	runs                            int
}

// childResult is what the child prints.
type childResult struct {
	Rows    int64   `json:"rows"`
	Seconds float64 `json:"seconds"`
	PeakRSS int64   `json:"peak_rss"`
}

func runStore(ctx context.Context) error {
	if storeBench.child != "" {
		return storeChild(ctx)
	}
	h, err := contract.Load(storeBench.contract)
	if err != nil {
		return err
	}
	cases := h.Table(h.Training.Table)
	pg, err := openCases(ctx, storeBench.postgres, h, cases, "bench_ref")
	if err != nil {
		return err
	}
	defer pg.Close()
	url := pg.url
	dir, err := os.MkdirTemp("", "ward-bench-store-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	small, large := filepath.Join(dir, "cases_small.csv"), filepath.Join(dir, "cases.csv")
	if err := writeCases(small, cases, storeBench.rows/10); err != nil {
		return err
	}
	if err := writeCases(large, cases, storeBench.rows); err != nil {
		return err
	}

	reset := func() error { return pg.reset(ctx) }
	psql := func() (float64, error) { return pg.psql(ctx, large) }
	child := func(mode, file string) (childResult, error) {
		var r childResult
		cmd := exec.CommandContext(ctx, os.Args[0], "store", "-child", mode, "-file", file,
			"-postgres", url, "-contract", storeBench.contract, "-rows", strconv.Itoa(storeBench.rows))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return r, fmt.Errorf("child %s: %w", mode, err)
		}
		return r, json.Unmarshal(out, &r)
	}

	best := map[string]float64{}
	peak := map[string]int64{}
	keep := func(name string, secs float64) {
		if b, ok := best[name]; !ok || secs < b {
			best[name] = secs
		}
	}
	for range storeBench.runs {
		for _, side := range []string{"psql", "values", "csv", "resend"} {
			if err := reset(); err != nil {
				return err
			}
			if side == "psql" {
				secs, err := psql()
				if err != nil {
					return err
				}
				keep(side, secs)
				continue
			}
			r, err := child(side, large)
			if err != nil {
				return err
			}
			if r.Rows != int64(storeBench.rows) {
				return fmt.Errorf("ward (%s) loaded %d rows, want %d", side, r.Rows, storeBench.rows)
			}
			keep(side, r.Seconds)
			peak[side] = max(peak[side], r.PeakRSS)
		}
	}
	if err := reset(); err != nil {
		return err
	}
	smallRun, err := child("csv", small)
	if err != nil {
		return err
	}

	n := float64(storeBench.rows)
	fmt.Printf("store: %d rows of %s.%s into PostgreSQL, best of %d runs\n", storeBench.rows, h.ID, cases.Name, storeBench.runs)
	fmt.Printf("  %-34s %8.2fs %10.0f rows/s\n", "psql \\copy (reference)", best["psql"], n/best["psql"])
	for _, side := range []struct{ key, label string }{
		{"values", "ward Load, values in memory"},
		{"csv", "ward Load, CSV parsed and checked"},
		{"resend", "ward Load, every key replaced"},
	} {
		fmt.Printf("  %-34s %8.2fs %10.0f rows/s  %.2fx psql  peak %s\n", side.label, best[side.key], n/best[side.key],
			best["psql"]/best[side.key], mib(peak[side.key]))
	}
	fmt.Printf("  peak memory, CSV: %s at %d rows, %s at %d rows\n", mib(smallRun.PeakRSS), smallRun.Rows, mib(peak["csv"]), storeBench.rows)
	return nil
}

// storeChild loads one file with ward and prints its figures as JSON.
func storeChild(ctx context.Context) error {
	h, err := contract.Load(storeBench.contract)
	if err != nil {
		return err
	}
	cases := h.Table(h.Training.Table)
	st, err := store.Open(ctx, storeBench.postgres)
	if err != nil {
		return err
	}
	defer st.Close()
	f, err := os.Open(storeBench.file)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	rows := csvRows(f, cases)
	if storeBench.child != "csv" {
		rows = generated(cases, storeBench.rows)
	}
	entry := store.File{Hospital: h.ID, Name: filepath.Base(storeBench.file), Size: info.Size(),
		SHA256: fmt.Sprintf("%x", sha256.Sum256([]byte(storeBench.child+storeBench.file)))}
	if storeBench.child == "resend" {
		// The same rows under another name: every key is replaced.
		if _, err := st.Load(ctx, entry, cases, rows); err != nil {
			return err
		}
		entry.Name, entry.SHA256 = "correction_"+entry.Name, fmt.Sprintf("%x", sha256.Sum256([]byte(entry.SHA256)))
	}
	start := time.Now()
	c, err := st.Load(ctx, entry, cases, rows)
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	p, err := peakRSS()
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(childResult{Rows: c.Inserted + c.Updated, Seconds: secs, PeakRSS: p})
}

// csvRows reads a CSV with a header and parses every cell with its
// column, as ingest does.
func csvRows(r io.Reader, t *contract.Table) store.Rows {
	return func(yield func([]models.Value, error) bool) {
		cr := csv.NewReader(bufio.NewReaderSize(r, 1<<20))
		cr.ReuseRecord = true
		if _, err := cr.Read(); err != nil {
			yield(nil, err)
			return
		}
		row := make([]models.Value, len(t.Columns))
		for line := 2; ; line++ {
			rec, err := cr.Read()
			if err == io.EOF {
				return
			}
			if err != nil {
				yield(nil, err)
				return
			}
			for i := range t.Columns {
				v, ferr := t.Columns[i].ParseText(rec[i])
				if ferr != nil {
					yield(nil, fmt.Errorf("line %d: %w", line, ferr))
					return
				}
				row[i] = v
			}
			if !yield(row, nil) {
				return
			}
		}
	}
}

// generated makes the same rows as writeCases, as values.
func generated(t *contract.Table, n int) store.Rows {
	return func(yield func([]models.Value, error) bool) {
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range n {
			if !yield(caseValues(rng, i), nil) {
				return
			}
		}
	}
}

// writeCases writes n synthetic rows of the st-olaf cases table.
func writeCases(path string, t *contract.Table, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	cells := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cells[i] = c.Name
	}
	fmt.Fprintln(w, strings.Join(cells, ","))
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		for j, v := range caseValues(rng, i) {
			cells[j] = v.Format(t.Columns[j].Type)
		}
		fmt.Fprintln(w, strings.Join(cells, ","))
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

var (
	admissionTypes = []string{"elective", "emergency"}
	wardClasses    = []string{"A", "B1", "B2", "C"}
	statuses       = []string{"completed", "completed", "completed", "cancelled"}
)

// caseValues is row i of the st-olaf cases table, in contract order.
func caseValues(rng *rand.Rand, i int) []models.Value {
	day := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, rng.IntN(1000))
	return []models.Value{
		models.Text(fmt.Sprintf("C%08d", i)),
		models.Text(fmt.Sprintf("P%06d", rng.IntN(400_000))),
		models.Text(fmt.Sprintf("D%04d", rng.IntN(500))),
		models.DateValue(day),
		models.Text(admissionTypes[rng.IntN(len(admissionTypes))]),
		models.Text(wardClasses[rng.IntN(len(wardClasses))]),
		models.Number(float64(rng.IntN(100))),
		models.Number(float64(rng.IntN(30))),
		models.Number(float64(rng.IntN(10))),
		models.Text(statuses[rng.IntN(len(statuses))]),
		models.Number(float64(rng.IntN(50_000_000)) / 100),
	}
}
