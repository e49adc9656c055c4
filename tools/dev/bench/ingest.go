package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/pipelines/ingest"
	"github.com/wardml/ward/pipelines/ingest/decrypt"
	"github.com/wardml/ward/pipelines/ingest/fetch"
	"github.com/wardml/ward/pipelines/ingest/staging"
	"github.com/wardml/ward/pipelines/store"
)

// The ingest benchmark: a plaintext cases CSV of N rows (the shape of the
// synthetic contracts' cases table) loaded into PostgreSQL by psql's
// \copy, the reference, and by ward's whole pipeline from a local drop
// box (`ward ingest --from`: fetch into staging with SHA-256 and fsync,
// parse and validate every cell, check keys, COPY, ledger), into the same
// table. ward runs in a child process, at N and at N/10 rows, so that its
// peak memory is its own and shows whether it grows with the file. Then
// the SFTP download comparison (bench sftp), so that one command gives
// every figure of the issue.
func init() {
	register(&benchmark{
		Name:    "ingest",
		Summary: "ward ingest of N cases rows vs psql \\copy (rows/s, ward's peak memory at N/10 and N), then bench sftp",
		Flags: func(fs *flag.FlagSet) {
			fs.IntVar(&ingestBench.rows, "rows", 1_000_000, "rows in the file")
			fs.IntVar(&ingestBench.runs, "runs", 3, "runs of each side; the best counts")
			fs.StringVar(&ingestBench.postgres, "postgres", "", "URL of an empty database (default: start a PostgreSQL server)")
			fs.BoolVar(&ingestBench.sftp, "sftp", true, "also run the SFTP download comparison (bench sftp)")
			fs.StringVar(&ingestBench.child, "child", "", "internal: the drop box the child ingests")
			fs.StringVar(&ingestBench.contracts, "contracts", "", "internal: the child's contracts folder")
			fs.StringVar(&ingestBench.cpuprofile, "cpuprofile", "", "write a CPU profile of ward's side (the last run at N rows) to `FILE`")
		},
		Run: runIngestBench,
	})
}

var ingestBench struct {
	rows, runs                             int
	postgres, child, contracts, cpuprofile string
	sftp                                   bool
}

// benchContract is the synthetic cases shape (the contract in testdata),
// sent unencrypted: the benchmark measures what ward adds to a load.
const benchContract = "internal/contract/testdata/st-olaf/hospital.yaml"

func runIngestBench(ctx context.Context) error {
	if ingestBench.child != "" {
		return ingestChild(ctx)
	}
	if _, err := exec.LookPath("psql"); err != nil {
		return errors.New("psql not found: install the Debian package postgresql-client")
	}
	work, err := os.MkdirTemp("", "ward-bench-ingest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	text, err := os.ReadFile(benchContract)
	if err != nil {
		return fmt.Errorf("%w (run from the repository's top folder)", err)
	}
	contracts := filepath.Join(work, "hospitals")
	if err := os.MkdirAll(filepath.Join(contracts, "st-olaf"), 0o755); err != nil {
		return err
	}
	text = []byte(strings.Replace(string(text), "encryption: openpgp", "encryption: none", 1))
	if err := os.WriteFile(filepath.Join(contracts, "st-olaf", contract.FileName), text, 0o644); err != nil {
		return err
	}
	h, err := contract.Load(filepath.Join(contracts, "st-olaf", contract.FileName))
	if err != nil {
		return err
	}
	cases := h.Table("cases")

	// Two drop boxes: N rows and N/10, each one marked-complete file.
	boxes := map[int]string{}
	for _, n := range []int{ingestBench.rows, ingestBench.rows / 10} {
		box := filepath.Join(work, fmt.Sprintf("box-%d", n))
		inbound := filepath.Join(box, filepath.FromSlash(h.Inbound.Folder))
		if err := os.MkdirAll(inbound, 0o755); err != nil {
			return err
		}
		file := filepath.Join(inbound, "cases_bench.csv")
		if err := writeCases(file, cases, n); err != nil {
			return err
		}
		if err := os.WriteFile(file+".done", nil, 0o644); err != nil {
			return err
		}
		boxes[n] = box
	}

	pg, err := openCases(ctx, ingestBench.postgres, h, cases, "")
	if err != nil {
		return err
	}
	defer pg.Close()
	url := pg.url
	reset := func() error { return pg.reset(ctx) }
	file := filepath.Join(boxes[ingestBench.rows], filepath.FromSlash(h.Inbound.Folder), "cases_bench.csv")
	psql := func() (float64, error) { return pg.psql(ctx, file) }
	child := func(box string) (childResult, error) {
		var r childResult
		args := []string{"ingest", "-child", box, "-contracts", contracts, "-postgres", url}
		if ingestBench.cpuprofile != "" && box == boxes[ingestBench.rows] {
			args = append(args, "-cpuprofile", ingestBench.cpuprofile)
		}
		cmd := exec.CommandContext(ctx, os.Args[0], args...)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return r, fmt.Errorf("child: %w", err)
		}
		return r, json.Unmarshal(out, &r)
	}

	var bestPsql, bestWard float64
	var peakLarge int64
	for range ingestBench.runs {
		if err := reset(); err != nil {
			return err
		}
		secs, err := psql()
		if err != nil {
			return err
		}
		if bestPsql == 0 || secs < bestPsql {
			bestPsql = secs
		}
		if err := reset(); err != nil {
			return err
		}
		r, err := child(boxes[ingestBench.rows])
		if err != nil {
			return err
		}
		if r.Rows != int64(ingestBench.rows) {
			return fmt.Errorf("ward loaded %d rows, want %d", r.Rows, ingestBench.rows)
		}
		if bestWard == 0 || r.Seconds < bestWard {
			bestWard = r.Seconds
		}
		peakLarge = max(peakLarge, r.PeakRSS)
	}
	if err := reset(); err != nil {
		return err
	}
	small, err := child(boxes[ingestBench.rows/10])
	if err != nil {
		return err
	}

	n := float64(ingestBench.rows)
	fmt.Printf("ingest: %d rows of %s.%s (plaintext CSV) into PostgreSQL, best of %d runs\n", ingestBench.rows, h.ID, cases.Name, ingestBench.runs)
	fmt.Printf("  %-58s %7.2fs %10.0f rows/s\n", "psql \\copy (reference)", bestPsql, n/bestPsql)
	fmt.Printf("  %-58s %7.2fs %10.0f rows/s\n", "ward ingest --from (stage, sha256, fsync, validate, COPY)", bestWard, n/bestWard)
	fmt.Printf("  ratio ward / psql: %.2fx (target >= 0.7)\n", bestPsql/bestWard)
	fmt.Printf("  ward's peak memory: %s at %d rows, %s at %d rows (target < 256 MiB, flat)\n",
		mib(small.PeakRSS), small.Rows, mib(peakLarge), ingestBench.rows)
	if ingestBench.sftp {
		fmt.Println()
		return benchSFTP(ctx)
	}
	return nil
}

// ingestChild runs ward's pipeline over one drop box and prints its
// figures as JSON.
func ingestChild(ctx context.Context) error {
	hs, err := contract.LoadAll(ingestBench.contracts)
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, ingestBench.postgres)
	if err != nil {
		return err
	}
	defer st.Close()
	dir, err := os.MkdirTemp("", "ward-bench-staging-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	stage, err := staging.Open(dir)
	if err != nil {
		return err
	}
	keys, err := decrypt.Load()
	if err != nil {
		return err
	}
	if ingestBench.cpuprofile != "" {
		f, err := os.Create(ingestBench.cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	sum := ingest.Run(ctx, hs, fetch.Dir(ingestBench.child), st, stage, keys)
	secs := time.Since(start).Seconds()
	total := sum.Total()
	if total.Loaded != 1 {
		return fmt.Errorf("ward ingest: %+v %v", total, sum.Hospitals[0].Files)
	}
	p, err := peakRSS()
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(childResult{Rows: total.Rows, Seconds: secs, PeakRSS: p})
}
