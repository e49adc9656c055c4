package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/wardml/ward/internal/config"
	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/pipelines/store"
	"github.com/wardml/ward/pipelines/synth"
	"github.com/wardml/ward/pipelines/train"
	"github.com/wardml/ward/pipelines/train/report"
	"github.com/wardml/ward/pipelines/train/traintest"
)

// train: `ward train --all` on the synthetic group (5 hospitals x 24
// months, ~128k cases; the demo trains it twice within its 3-minute loop,
// so the target is a few seconds), against the reference of reading the
// same hospitals' rows from the store once: the floor of any training
// that reads the RDBMS. Each side runs in a child process of its own, so
// that its peak memory is its own.

var trainFlags struct {
	database, contracts, child string
	hospitals, months          int
}

func init() {
	register(&benchmark{
		Name:    "train",
		Summary: "ward train --all on the synthetic group (read, fit, pooled, report), against reading its rows from the store",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&trainFlags.database, "database", "", "database to load the group into (default: a SQLite file in a temporary folder)")
			fs.IntVar(&trainFlags.hospitals, "hospitals", synth.DefaultHospitals, "hospitals")
			fs.IntVar(&trainFlags.months, "months", synth.DefaultMonths, "months")
			fs.StringVar(&trainFlags.child, "child", "", "internal: run one side (read, train) and print its figures")
			fs.StringVar(&trainFlags.contracts, "contracts", "", "internal: the child's contracts folder")
		},
		Run: runTrain,
	})
}

// trainResult is what a child reports.
type trainResult struct {
	Rows    int64   `json:"rows"`
	Seconds float64 `json:"seconds"`
	Train   float64 `json:"train"`
	Write   float64 `json:"write"`
	CPU     float64 `json:"cpu"`
	Peak    int64   `json:"peak"`
}

func runTrain(ctx context.Context) error {
	if trainFlags.child != "" {
		return trainChild(ctx)
	}
	tmp, err := os.MkdirTemp("", "bench-train")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	sum, err := synth.Generate(ctx, filepath.Join(tmp, "group"), synth.WithEncryption("none"),
		synth.WithHospitals(trainFlags.hospitals), synth.WithMonths(trainFlags.months))
	if err != nil {
		return err
	}
	db := trainFlags.database
	if db == "" {
		db = "sqlite:" + filepath.Join(tmp, "ward.db")
	}
	s, err := store.Open(ctx, db)
	if err != nil {
		return err
	}
	start := time.Now()
	_, err = traintest.LoadGroup(s, sum.Contracts)
	s.Close()
	if err != nil {
		return err
	}
	fmt.Printf("train: %d hospitals x %d months, %d cases, loaded into %s in %.1f s\n\n",
		trainFlags.hospitals, trainFlags.months, sum.Cases, config.Redact(db), time.Since(start).Seconds())
	runs := map[string]trainResult{}
	for _, side := range []string{"read", "train", "train"} {
		r, err := trainRun(ctx, side, db, sum.Contracts, filepath.Join(tmp, "out"))
		if err != nil {
			return err
		}
		if prev, ok := runs[side]; !ok || r.Seconds < prev.Seconds {
			runs[side] = r
		}
	}
	read, tr := runs["read"], runs["train"]
	fmt.Printf("%-58s %8s %8s %11s\n", "", "wall", "cpu", "peak RSS")
	fmt.Printf("%-58s %7.2fs %7.2fs %11s\n", fmt.Sprintf("read the hospitals' rows, one after the other (%d; reference)", read.Rows), read.Seconds, read.CPU, mib(read.Peak))
	fmt.Printf("%-58s %7.2fs\n", "ward train --all: read, clean, split, fit, pooled, gate", tr.Train)
	fmt.Printf("%-58s %7.2fs\n", "  then the report: plots, Markdown, HTML, artifacts", tr.Write)
	fmt.Printf("%-58s %7.2fs %7.2fs %11s   (best of 2; target: under 15 s)\n", "  total", tr.Seconds, tr.CPU, mib(tr.Peak))
	fmt.Printf("%-58s %7.1fx\n", "train (without the report) / read", tr.Train/read.Seconds)
	if tr.Seconds > 15 {
		return fmt.Errorf("ward train --all took %.1f s, want under 15 s", tr.Seconds)
	}
	return nil
}

// trainRun re-runs this program as a child that runs one side.
func trainRun(ctx context.Context, side, db, contracts, out string) (trainResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return trainResult{}, err
	}
	cmd := exec.CommandContext(ctx, exe, "train", "-child", side, "-database", db, "-contracts", contracts)
	cmd.Env = append(os.Environ(), "WARD_BENCH_OUT="+out)
	cmd.Stderr = os.Stderr
	data, err := cmd.Output()
	if err != nil {
		return trainResult{}, fmt.Errorf("%s side: %w", side, err)
	}
	var r trainResult
	if err := json.Unmarshal(data, &r); err != nil {
		return trainResult{}, fmt.Errorf("%s side printed %q: %w", side, data, err)
	}
	return r, nil
}

func trainChild(ctx context.Context) error {
	hs, err := contract.LoadAll(trainFlags.contracts)
	if err != nil {
		return err
	}
	s, err := store.Open(ctx, trainFlags.database)
	if err != nil {
		return err
	}
	defer s.Close()
	var r trainResult
	start := time.Now()
	switch trainFlags.child {
	case "read":
		for _, h := range hs {
			for _, err := range s.Training(h).Rows(ctx) {
				if err != nil {
					return err
				}
				r.Rows++
			}
		}
	case "train":
		ids := make([]string, len(hs))
		for i, h := range hs {
			ids[i] = h.ID
		}
		results, err := train.Run(ctx, s, hs, ids)
		if err != nil {
			return err
		}
		for _, res := range results {
			if res.Err != nil {
				return res.Err
			}
		}
		r.Train = time.Since(start).Seconds()
		w := time.Now()
		if _, err := report.Write(os.Getenv("WARD_BENCH_OUT"), results); err != nil {
			return err
		}
		r.Write = time.Since(w).Seconds()
	default:
		return fmt.Errorf("unknown side %q", trainFlags.child)
	}
	r.Seconds = time.Since(start).Seconds()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		r.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	if r.Peak, err = peakRSS(); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}
