package report

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/wardml/ward/internal/page"
	"github.com/wardml/ward/pipelines/train"
)

// Option changes how Write writes.
type Option func(*options)

type options struct{ parallel int }

// WithParallel bounds the hospitals rendered at once (default: the number
// of CPUs): the plots take most of the time.
func WithParallel(n int) Option { return func(o *options) { o.parallel = max(n, 1) } }

// SummaryFile is the summary of a run, in the output folder.
const SummaryFile = "summary.json"

// Summary is one line per hospital of a run.
type Summary struct {
	Hospitals []Line `json:"hospitals"`
}

// Line is what a hospital's training gave. Gate is passed or failed, and
// empty with Error when there is no model.
type Line struct {
	Hospital      string   `json:"hospital"`
	Version       string   `json:"version,omitempty"`
	Rows          int      `json:"rows"`
	ValidationMAE *float64 `json:"validation_mae,omitempty"`
	PooledMAE     *float64 `json:"pooled_mae,omitempty"`
	RandomMAE     *float64 `json:"random_split_mae,omitempty"`
	Gate          string   `json:"gate,omitempty"`
	Model         string   `json:"model,omitempty"`
	Error         string   `json:"error,omitempty"`
}

// The gate's verdicts in a summary.
const (
	GatePassed = "passed"
	GateFailed = "failed"
)

// Write renders each trained hospital into dir/<id>/ and writes
// dir/summary.json. A hospital's folder is replaced whole, and only once
// all of it is rendered: a hospital that failed to train, or to render,
// keeps what an earlier run left (and its line says why it has no new
// model). The error joins the hospitals that could not be written.
func Write(dir string, results []*train.Result, opts ...Option) (*Summary, error) {
	o := options{parallel: runtime.NumCPU()}
	for _, opt := range opts {
		opt(&o)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("output %s: %w", dir, err)
	}
	sum := &Summary{Hospitals: make([]Line, len(results))}
	written := make([]error, len(results))
	var g errgroup.Group
	g.SetLimit(o.parallel)
	for i, r := range results {
		sum.Hospitals[i] = lineOf(r)
		if r.Err == nil {
			g.Go(func() error { written[i] = writeHospital(dir, r); return nil })
		}
	}
	_ = g.Wait()
	var errs []error
	for i, err := range written {
		line := &sum.Hospitals[i]
		switch {
		case err != nil:
			line.Error, line.Gate = err.Error(), ""
			errs = append(errs, err)
		case results[i].Err == nil:
			line.Model = filepath.Join(dir, line.Hospital, ModelFile)
		}
	}
	data, err := json.MarshalIndent(sum, "", "  ")
	if err == nil {
		err = page.WriteFile(filepath.Join(dir, SummaryFile), append(data, '\n'))
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("output %s: %w", dir, err))
	}
	return sum, errors.Join(errs...)
}

func lineOf(r *train.Result) Line {
	l := Line{Hospital: r.Hospital, Version: r.Version, Rows: r.Rows, Error: r.Error}
	if r.Err != nil {
		return l
	}
	l.Gate = GateFailed
	if r.Gate.Passed {
		l.Gate = GatePassed
	}
	l.ValidationMAE = &r.Validation.MAE
	if r.Pooled.Metrics != nil {
		l.PooledMAE = &r.Pooled.Metrics.MAE
	}
	switch {
	case r.Split.Kind == train.RandomSplit:
		l.RandomMAE = &r.Validation.MAE
	case r.Comparison != nil && r.Comparison.Metrics != nil:
		l.RandomMAE = &r.Comparison.Metrics.MAE
	}
	return l
}

// writeHospital renders a hospital into a temporary folder beside its
// own, then puts it in place of the old one.
func writeHospital(dir string, r *train.Result) error {
	files, err := Render(r)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(dir, "."+r.Hospital+".new-")
	if err != nil {
		return fmt.Errorf("output %s: %w", r.Hospital, err)
	}
	defer os.RemoveAll(tmp)
	for name, data := range files {
		file := filepath.Join(tmp, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			return fmt.Errorf("output %s: %w", r.Hospital, err)
		}
		if err := os.WriteFile(file, data, 0o644); err != nil {
			return fmt.Errorf("output %s: %w", r.Hospital, err)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("output %s: %w", r.Hospital, err)
	}
	final := filepath.Join(dir, r.Hospital)
	if _, err := os.Stat(final); err == nil {
		// The old folder goes aside in one step (into a folder of its
		// own, whose name is free), then the new one takes its name.
		aside, err := os.MkdirTemp(dir, "."+r.Hospital+".old-")
		if err != nil {
			return fmt.Errorf("output %s: %w", r.Hospital, err)
		}
		defer os.RemoveAll(aside)
		if err := os.Rename(final, filepath.Join(aside, r.Hospital)); err != nil {
			return fmt.Errorf("output %s: %w", r.Hospital, err)
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("output %s: %w", r.Hospital, err)
	}
	return nil
}

// WriteTable prints the summary as a table for people.
func (s *Summary) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "%-12s %-22s %8s %12s %12s %12s  %s\n", "HOSPITAL", "VERSION", "ROWS", "MAE", "POOLED MAE", "RANDOM MAE", "GATE")
	opt := func(v *float64) string {
		if v == nil {
			return "-"
		}
		return page.Num(*v)
	}
	for _, l := range s.Hospitals {
		gate := l.Gate
		if l.Error != "" {
			gate = "error: " + strings.SplitN(l.Error, "\n", 2)[0]
		}
		fmt.Fprintf(w, "%-12s %-22s %8s %12s %12s %12s  %s\n", l.Hospital, cmp.Or(l.Version, "-"), page.Count(l.Rows),
			opt(l.ValidationMAE), opt(l.PooledMAE), opt(l.RandomMAE), gate)
	}
}
