package main

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/wardml/ward/pipelines/synth"
)

// synth times `ward synth` on the default group (5 hospitals x 24 months,
// CSV, mixed encryption; target: under 30 s) against the reference of
// copying its output: reading and writing the same bytes, the floor that
// any generator of these files pays.
func init() {
	var months, hospitals int
	var format string
	register(&benchmark{
		Name:    "synth",
		Summary: "ward synth of the default group, against copying its output",
		Flags: func(fs *flag.FlagSet) {
			fs.IntVar(&hospitals, "hospitals", synth.DefaultHospitals, "hospitals")
			fs.IntVar(&months, "months", synth.DefaultMonths, "months")
			fs.StringVar(&format, "format", synth.DefaultFormat, "csv or parquet")
		},
		Run: func(ctx context.Context) error {
			tmp, err := os.MkdirTemp("", "bench-synth")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			out := filepath.Join(tmp, "group")
			start := time.Now()
			sum, err := synth.Generate(ctx, out, synth.WithHospitals(hospitals), synth.WithMonths(months), synth.WithFormat(format))
			if err != nil {
				return err
			}
			gen := time.Since(start)
			start = time.Now()
			bytes, err := copyTree(out, filepath.Join(tmp, "copy"))
			if err != nil {
				return err
			}
			cp := time.Since(start)
			fmt.Printf("synth %d hospitals x %d months (%s, %s): %d files, %d cases, %.1f MiB\n",
				hospitals, months, format, sum.Encryption, sum.Files, sum.Cases, float64(bytes)/(1<<20))
			fmt.Printf("  generate        %8.2f s   (target: under 30 s)\n", gen.Seconds())
			fmt.Printf("  copy the output %8.2f s   (reference)\n", cp.Seconds())
			fmt.Printf("  ratio           %8.1f x\n", gen.Seconds()/cp.Seconds())
			return nil
		},
	})
}

// copyTree copies every file under src to dst and returns the bytes copied.
func copyTree(src, dst string) (int64, error) {
	var n int64
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		n += int64(len(data))
		return os.WriteFile(target, data, 0o644)
	})
	return n, err
}
