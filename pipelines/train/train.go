// Package train is the second stage of the loop: it reads each hospital's
// cases from the RDBMS (pipelines/store), prepares them as the hospital's
// contract says (joins, cleaning rules), splits them in time, fits one
// ridge model per hospital with models.Fit, and measures it against what
// the design asks to see beside it: the same model under a random split
// (the optimism of a split that ignores time), a pooled model over the
// compatible hospitals (the baseline that per-hospital models must beat),
// a rolling-origin backtest, and the model in production (the gate).
//
// Run does all of it and returns one Result per hospital: the artifact and
// everything the report shows (pipelines/train/report renders and writes
// it). Run reads from the store and nothing else; it writes nothing.
// The same data and contracts give the same results to the bit.
package train

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"

	"golang.org/x/sync/errgroup"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/version"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/store"
)

// Result is what training one hospital gave: the model, or the error that
// kept it from being made, and everything the report shows.
type Result struct {
	Hospital string `json:"hospital"`
	Name     string `json:"name"`
	// Version is the model's version, YYYY.MM-HASH: the month of the last
	// case of the validation window (the data's end), then the first 12
	// hex digits of the SHA-256 of the artifact without its version (the
	// content hash models.Fit gives). The same data, contract and ward
	// give the same version; a deploy message reads as when the data
	// ends. A contract without a time column has the hash alone. Empty on
	// an error.
	Version string `json:"version,omitempty"`
	// Error says why there is no model; the rest may be partly filled.
	Error string `json:"error,omitempty"`
	// Rows: cases read from the store, and left after cleaning.
	Rows     int    `json:"rows"`
	Cleaned  int    `json:"cleaned"`
	Cleaning []Rule `json:"cleaning"`
	Split    Split  `json:"split"`
	// Validation is the shipped model's evaluation on its validation
	// window: raw and calibrated predictions, overall and by segment.
	Validation *models.Evaluation `json:"validation,omitempty"`
	// Inner is the shipped family's inner model on the inner validation
	// (a part of the training cases): what its penalty, trees and
	// calibration were chosen on.
	Inner *models.Evaluation `json:"inner,omitempty"`
	// Family is the shipped model's; Candidates are every family the
	// contract lists, and Choice says why this one shipped.
	Family      string              `json:"family,omitempty"`
	Candidates  []Candidate         `json:"candidates,omitempty"`
	Choice      string              `json:"choice,omitempty"`
	Lambda      float64             `json:"lambda,omitempty"`
	Grid        []models.GridPoint  `json:"grid,omitempty"`
	Calibration *models.Calibration `json:"calibration,omitempty"`
	// Comparison is the same model under the other kind of split: the
	// random split beside a time split (or the time split beside a
	// contract's random one), so that the optimism shows.
	Comparison *Comparison    `json:"comparison,omitempty"`
	Pooled     Pooled         `json:"pooled"`
	Folds      []Fold         `json:"folds,omitempty"`
	Gate       Gate           `json:"gate"`
	Lineage    models.Lineage `json:"lineage"`

	// Artifact is the model (nil on an error).
	Artifact *models.Artifact `json:"-"`
	// Points are the model's predictions of the cases it was trained and
	// validated on, in store order, for the report's plots.
	Points []Point `json:"-"`
	// Err is the error behind Error.
	Err error `json:"-"`
}

// Point is one case as the model saw it.
type Point struct {
	// At is the case's time (Unix seconds); 0 without a time column.
	At         int64
	Actual     float64
	Predicted  float64
	Validation bool
}

// Comparison is the model's evaluation under another split.
type Comparison struct {
	Split Split `json:"split"`
	// Family is the one fitted: the shipped one's, or for a pooled family
	// its counterpart on the hospital's cases alone.
	Family  string          `json:"family,omitempty"`
	Metrics *models.Metrics `json:"metrics,omitempty"`
	Error   string          `json:"error,omitempty"`
}

// Pooled is the pooled baseline scored on the hospital's validation
// window, or why there is none.
type Pooled struct {
	// Hospitals are the hospitals pooled (their ids).
	Hospitals []string        `json:"hospitals,omitempty"`
	Lambda    float64         `json:"lambda,omitempty"`
	Metrics   *models.Metrics `json:"metrics,omitempty"`
	// Reason says why there is no pooled baseline.
	Reason string `json:"reason,omitempty"`
}

// Fold is one window of the rolling-origin backtest. The first is the
// main split's.
type Fold struct {
	Split   Split           `json:"split"`
	Lambda  float64         `json:"lambda,omitempty"`
	Metrics *models.Metrics `json:"metrics,omitempty"`
	Error   string          `json:"error,omitempty"`
}

// Option changes how Run trains.
type Option func(*options)

type options struct {
	parallel  int
	baselines map[string]*models.Artifact
	ward      string
}

// WithParallel bounds the hospitals read and fitted at once (default: the
// number of CPUs).
func WithParallel(n int) Option { return func(o *options) { o.parallel = max(n, 1) } }

// WithBaseline gives the model in production of its hospital: the gate
// compares the new model with it on the new model's validation window.
func WithBaseline(a *models.Artifact) Option {
	return func(o *options) { o.baselines[a.Hospital] = a }
}

// ErrNoData is wrapped by the error of a hospital with no cases in the
// store.
var ErrNoData = errors.New("no cases in the database")

// Run trains the hospitals whose ids are in ids, reading their cases (and
// those of the hospitals pooled with them) from s. all is every hospital
// of the group: the pooled baseline of a hospital takes the rows of all
// the hospitals whose features are compatible with its own, whether they
// are trained in this run or not, so that one hospital per CI job gets
// the same baseline as a run over all of them. A hospital that fails does
// not stop the others: its Result carries the error. The results come in
// the order of ids.
func Run(ctx context.Context, s *store.Store, all []*contract.Hospital, ids []string, opts ...Option) ([]*Result, error) {
	o := options{parallel: runtime.NumCPU(), baselines: map[string]*models.Artifact{}, ward: version.Get().String()}
	for _, opt := range opts {
		opt(&o)
	}
	byID := map[string]*contract.Hospital{}
	for _, h := range all {
		byID[h.ID] = h
	}
	for id := range o.baselines {
		if !slices.Contains(ids, id) {
			return nil, fmt.Errorf("baseline model of hospital %s: %s is not being trained", id, id)
		}
	}
	results := make([]*Result, len(ids))
	for i, id := range ids {
		h := byID[id]
		switch {
		case h == nil:
			return nil, fmt.Errorf("hospital %s: no contract", id)
		case slices.Index(ids, id) != i:
			return nil, fmt.Errorf("hospital %s: named twice", id)
		}
		results[i] = &Result{Hospital: h.ID, Name: h.Name}
	}

	// The hospitals to read: those trained, and those pooled with them.
	pools := poolsOf(all, ids)
	var read []*contract.Hospital
	for _, h := range all {
		if slices.Contains(ids, h.ID) || slices.ContainsFunc(pools, func(p *pool) bool { return slices.Contains(p.members, h) }) {
			read = append(read, h)
		}
	}
	sets := make([]*dataset, len(read))
	var g errgroup.Group
	g.SetLimit(o.parallel)
	for i, h := range read {
		g.Go(func() error { sets[i] = prepare(ctx, s, h, o.ward); return nil })
	}
	_ = g.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	prepared := make(map[string]*dataset, len(read))
	for _, d := range sets {
		prepared[d.h.ID] = d
	}

	// The pooled models first: the pooled families build on them.
	for _, pl := range pools {
		g.Go(func() error { pl.fit(prepared, o.ward); return nil })
	}
	_ = g.Wait()
	for _, r := range results {
		priors, errs := priorsFor(r.Hospital, pools)
		g.Go(func() error { fitHospital(r, prepared[r.Hospital], o.baselines[r.Hospital], priors, errs); return nil })
	}
	_ = g.Wait()
	for _, r := range results {
		r.Pooled = pooledFor(r, pools, prepared)
		if r.Err != nil {
			r.Error = fmt.Sprintf("train %s: %v", r.Hospital, r.Err)
			r.Err = fmt.Errorf("train %s: %w", r.Hospital, r.Err)
			r.Version, r.Artifact, r.Points = "", nil, nil
		}
	}
	return results, ctx.Err()
}
