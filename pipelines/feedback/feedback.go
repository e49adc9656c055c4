// Package feedback is the last arrow of the loop, `ward feedback`: it joins
// the predictions that each hospital's model served (ward_predictions,
// which ingest loads from the server's prediction logs, or the server
// writes directly) with the real outcomes that later extracts bring, by
// case id, and says how each deployed model really performs: live error
// per model version and per month beside the validation error its
// artifact carries, degradation against the contract's threshold, and the
// drift of each input feature (the population stability index of the live
// inputs against the training distribution the artifact keeps).
//
// Run reads the store and nothing else, and writes nothing;
// pipelines/feedback/report renders what it finds. The exit code that CI
// acts on follows Report.Flagged: a hospital whose current model (the
// version that served its latest prediction) is degraded or drifted.
//
// What counts, so that nothing is counted twice or in the wrong place:
//
//   - a prediction is one instance of one request (the store keeps each
//     (hospital, request id, item) once, however often a log repeats it);
//   - a case predicted again by the same model version counts once, by
//     its latest prediction; the earlier ones are counted as repeated;
//   - a prediction without a case id, or whose case has no outcome yet,
//     is counted, not judged; so are the predictions of a model version
//     with no artifact (their live metrics are shown, nothing is flagged);
//   - the outcomes that no prediction names (cases with a target within
//     the span of the predicted cases' times) are counted per hospital;
//   - a month is the month of the case (the contract's training
//     time_column, as the validation window is), else of the prediction;
//   - drift is measured over every prediction of the version whose inputs
//     were logged: the population the model served, outcome or not.
package feedback

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/store"
	trainreport "github.com/wardml/ward/pipelines/train/report"
)

// Report is what feedback found, hospital by hospital.
type Report struct {
	// From and To bound the time the predictions were served (To
	// excluded); zero: unbounded.
	From      time.Time  `json:"from,omitzero"`
	To        time.Time  `json:"to,omitzero"`
	Hospitals []Hospital `json:"hospitals"`
}

// Flagged returns the hospitals whose current model is degraded or
// drifted.
func (r *Report) Flagged() []*Hospital {
	var out []*Hospital
	for i := range r.Hospitals {
		if h := &r.Hospitals[i]; h.Degraded || h.Drifted {
			out = append(out, h)
		}
	}
	return out
}

// Failed returns the hospitals that could not be assessed.
func (r *Report) Failed() []*Hospital {
	var out []*Hospital
	for i := range r.Hospitals {
		if h := &r.Hospitals[i]; h.Error != "" {
			out = append(out, h)
		}
	}
	return out
}

// Hospital is what feedback found for one hospital.
type Hospital struct {
	Hospital string `json:"hospital"`
	Name     string `json:"name"`
	// Current is the model version that served the hospital's latest
	// prediction: its verdict is the hospital's.
	Current  string `json:"current_version,omitempty"`
	Verdict  string `json:"verdict"`
	Reason   string `json:"reason"`
	Degraded bool   `json:"degraded"`
	Drifted  bool   `json:"drifted"`
	// Models are the versions that served predictions, in the order of
	// their first prediction.
	Models []Model `json:"models"`
	// Predictions counts every prediction of the window.
	Predictions int64 `json:"predictions"`
	// WithoutArtifact counts the predictions of versions with no artifact.
	WithoutArtifact int64 `json:"predictions_without_artifact"`
	// Unpredicted counts the outcomes that no prediction names (nil
	// without a time column to bound them by, or without predictions).
	Unpredicted *int64 `json:"unpredicted_outcomes,omitempty"`
	// Degradation and MinCases are the contract's thresholds.
	Degradation float64 `json:"degradation"`
	MinCases    int     `json:"min_cases"`
	// Error says why the hospital could not be assessed.
	Error string `json:"error,omitempty"`
}

// Model is what feedback found for one model version of a hospital.
type Model struct {
	Version string   `json:"version"`
	Digests []string `json:"digests"`
	// First and Last are the times of its first and last prediction.
	First       time.Time `json:"first_prediction"`
	Last        time.Time `json:"last_prediction"`
	Predictions int64     `json:"predictions"`
	// Artifact says whether --models held this version; without it the
	// model is not judged.
	Artifact bool `json:"artifact"`
	// Validation is the artifact's validation metrics of its raw
	// predictions (the server logs the raw prediction, ward.prediction),
	// and ValidationWindow the cases they cover.
	Validation       *models.Metrics `json:"validation,omitempty"`
	ValidationWindow models.Window   `json:"validation_window,omitzero"`
	// Live is the metrics of the cases with an outcome, one prediction
	// per case, by the same code as training's (models.Evaluate).
	Live models.Metrics `json:"live"`
	// MAERatio is live MAE / validation MAE; UnderRateChange is live
	// minus validation under-estimate rate.
	MAERatio        *float64 `json:"mae_ratio,omitempty"`
	UnderRateChange *float64 `json:"under_rate_change,omitempty"`
	Months          []Month  `json:"months"`
	// Drift is the PSI of each summarised input feature over DriftRows
	// live rows; DriftNote says why there is none.
	Drift     []FeatureDrift `json:"drift,omitempty"`
	DriftRows int            `json:"drift_rows"`
	DriftNote string         `json:"drift_note,omitempty"`
	Degraded  bool           `json:"degraded"`
	Drifted   bool           `json:"drifted"`
	Verdict   string         `json:"verdict"`
	Reason    string         `json:"reason"`
	Counts    Counts         `json:"counts"`
}

// FeatureDrift is one feature's PSI, live against training, and whether
// there were rows enough to judge it: at least min_cases, and RowsPerBin
// for each bin of its training distribution.
type FeatureDrift struct {
	models.FeatureDrift
	Bins   int  `json:"bins"`
	Judged bool `json:"judged"`
}

// RowsPerBin is the fewest live rows per bin of a feature's training
// distribution before its drift is judged. The PSI of a sample is large
// by chance alone when it is small against the bins (about bins/rows for
// an unchanged population: 0.8 for 50 rows over a doctor_id of 40
// levels); at 10 rows a bin, chance alone stays near the watch band.
const RowsPerBin = 10

// Month is the live metrics of one month's cases.
type Month struct {
	Month string `json:"month"` // YYYY-MM
	models.Metrics
}

// Counts are the predictions of a model version that its live metrics
// leave out, and why.
type Counts struct {
	// WithoutCaseID named no case: nothing to join.
	WithoutCaseID int64 `json:"without_case_id"`
	// AwaitingOutcome named a case that has no outcome yet (not loaded,
	// or its target still empty).
	AwaitingOutcome int64 `json:"awaiting_outcome"`
	// Repeated were earlier predictions of a case that the same version
	// predicted again (the latest counts).
	Repeated int64 `json:"repeated"`
	// InputsHashed logged a hash of the inputs: no drift from them.
	InputsHashed int64 `json:"inputs_hashed"`
	// UnreadableInputs logged inputs that the model's input schema does
	// not read (a version's inputs changed under the same name).
	UnreadableInputs int64 `json:"unreadable_inputs"`
}

// The verdicts.
const (
	Healthy            = "healthy"
	Degraded           = "degraded"
	Drifted            = "drifted"
	DegradedAndDrifted = "degraded and drifted"
	TooFewCases        = "too few cases"
	NoArtifact         = "no artifact"
	NoPredictions      = "no predictions"
)

// Option changes how Run assesses.
type Option func(*options)

type options struct {
	from, to time.Time
	models   map[string]map[string]*models.Artifact // hospital -> version
}

// WithModels gives the artifacts that predictions are matched to by
// hospital and model version (ReadModels reads them from a folder).
func WithModels(arts ...*models.Artifact) Option {
	return func(o *options) {
		for _, a := range arts {
			if o.models[a.Hospital] == nil {
				o.models[a.Hospital] = map[string]*models.Artifact{}
			}
			o.models[a.Hospital][a.Version] = a
		}
	}
}

// WithWindow keeps the predictions served from from (inclusive) to to
// (exclusive); a zero time leaves that end open.
func WithWindow(from, to time.Time) Option {
	return func(o *options) { o.from, o.to = from, to }
}

// Run assesses each hospital's models from what s holds. A hospital that
// cannot be read carries its error in the report and does not stop the
// others; the error returned is ctx's.
func Run(ctx context.Context, s *store.Store, hs []*contract.Hospital, opts ...Option) (*Report, error) {
	o := options{models: map[string]map[string]*models.Artifact{}}
	for _, opt := range opts {
		opt(&o)
	}
	r := &Report{From: o.from, To: o.to, Hospitals: make([]Hospital, len(hs))}
	q := store.PredictionQuery{From: o.from, To: o.to}
	for i, h := range hs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		res, err := assess(h, o.models[h.ID], s.Outcomes(ctx, h, q))
		if err == nil && h.Training.TimeColumn != "" && res.Predictions > 0 {
			var n int64
			n, err = s.Unpredicted(ctx, h, q)
			res.Unpredicted = &n
		}
		if err != nil {
			res = Hospital{Hospital: h.ID, Name: h.Name, Models: []Model{}, Error: fmt.Sprintf("feedback %s: %v", h.ID, err)}
		}
		r.Hospitals[i] = res
	}
	return r, ctx.Err()
}

// ReadModels reads every model artifact under dir: each file named as
// `ward train --out` names them (DIR/<id>/model.json), at any depth, so
// that a folder of earlier versions is read too. A file that is not a
// valid artifact is an error that names it.
func ReadModels(dir string) ([]*models.Artifact, error) {
	var out []*models.Artifact
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != trainreport.ModelFile {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		a, err := models.Decode(data)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, a)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("models %s: %w", dir, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("models %s: no %s in it (the layout of ward train --out: DIR/<id>/%s)", dir, trainreport.ModelFile, trainreport.ModelFile)
	}
	slices.SortFunc(out, func(a, b *models.Artifact) int {
		return strings.Compare(a.Hospital+"\x00"+a.Version, b.Hospital+"\x00"+b.Version)
	})
	return out, nil
}
