package train

import (
	"errors"
	"fmt"
	"strings"

	"github.com/wardml/ward/models"
)

// view is a set of one hospital's cases as models.Fit sees them: each row
// projected onto the spec's inputs, with the caps of its training side
// applied. hospital, when set, is one more input (and the one segment):
// the pooled model's.
type view struct {
	p        *dataset
	idx      []int
	inputs   []int // columns of p's rows, in the spec's input order
	caps     []capping
	segments []int
	hospital bool
}

// viewOf is a view of the hospital's own model.
func (p *dataset) viewOf(idx []int, caps []capping) view {
	return view{p: p, idx: idx, inputs: p.inputs, caps: caps, segments: p.segments}
}

// cases yields the view's cases, reusing one row: Fit keeps none.
func (v view) cases() models.Cases {
	return func(yield func(models.Case, error) bool) {
		n := len(v.inputs)
		if v.hospital {
			n++
		}
		row := make([]models.Value, n)
		seg := make([]string, len(v.segments))
		if v.hospital {
			row[n-1] = models.Text(v.p.h.ID)
			seg = []string{v.p.h.ID}
		}
		for _, i := range v.idx {
			r := v.p.rows[i]
			project(row, r, v.inputs)
			target := r[v.p.target]
			for _, c := range v.caps {
				capAt(&target, c, c.col == v.p.target)
				for j, in := range v.inputs {
					capAt(&row[j], c, c.col == in)
				}
			}
			if !v.hospital {
				for j, c := range v.segments {
					seg[j] = segmentOf(r[c], v.p.cols[c].Type)
				}
			}
			if !yield(models.Case{Row: row, Target: target, Segments: seg}, nil) {
				return
			}
		}
	}
}

// project copies the columns cols of row r into dst, in order.
func project(dst, r []models.Value, cols []int) []models.Value {
	for j, c := range cols {
		dst[j] = r[c]
	}
	return dst
}

// capAt lowers v to the cap's limit when the cap applies to it.
func capAt(v *models.Value, c capping, applies bool) {
	if applies && !v.Null && v.Num > c.limit {
		v.Num = c.limit
	}
}

// segmentOf is a case's value of a segment column, as the report shows it.
func segmentOf(v models.Value, t models.Type) string {
	if v.Null || (t == models.String && v.Str == "") {
		return models.MissingLevel
	}
	return v.Format(t)
}

// fit fits the hospital's model on one split.
func (p *dataset) fit(s sides, sp Split) (*models.Artifact, error) {
	spec := p.spec
	spec.Lineage.Train, spec.Lineage.Validation = sp.Training, sp.Validation
	a, err := models.Fit(spec, p.viewOf(s.train, p.capsOf(s.train)).cases(), p.viewOf(s.valid, nil).cases())
	if err != nil {
		return nil, p.advise(err, sp)
	}
	return a, nil
}

// advise adds what to do to the errors of bad data.
func (p *dataset) advise(err error, sp Split) error {
	where := fmt.Sprintf("the %s split", sp.Kind)
	if sp.Kind == TimeSplit {
		where = fmt.Sprintf("the time split at %s", sp.Cutoff)
	}
	switch {
	case errors.Is(err, models.ErrTooFewRows):
		return fmt.Errorf("%w (%s; training.min_rows is %d): wait for more data, or lower min_rows or the validation window in the contract", err, where, p.h.Training.MinRows)
	case errors.Is(err, models.ErrNoValidation):
		return fmt.Errorf("%w (%s): its cases have no %s yet; load the extracts that bring them, shorten split.validation, or drop such cases (cleaning: drop_missing) so that the window ends with the last case that has one", err, where, p.h.Training.Target)
	case errors.Is(err, models.ErrNoTarget):
		return fmt.Errorf("%w (%s): the cases in the database have no %s; check the extracts", err, where, p.h.Training.Target)
	}
	return err
}

// fitHospital trains one hospital: the model of the main split, the
// comparison split, the backtest, the plots' points and the gate.
func fitHospital(r *Result, p *dataset, baseline *models.Artifact) {
	r.Rows, r.Cleaned, r.Cleaning, r.Split = p.read, len(p.rows), p.cleaning, p.split
	if p.err != nil {
		r.Err = p.err
		return
	}
	a, err := p.fit(p.main, p.split)
	if err != nil {
		r.Err = err
		return
	}
	if to := a.Lineage.Validation.To; to != "" {
		a.Version = strings.ReplaceAll(to[:7], "-", ".") + "-" + a.Version
	}
	if s, sp, ok, err := p.otherSplit(); ok {
		c := &Comparison{Split: sp}
		if err == nil {
			var other *models.Artifact
			if other, err = p.fit(s, sp); err == nil {
				v := other.Metrics["validation"]
				c.Metrics = &v.Metrics
				a.Metrics[sp.Kind+"_split"] = models.Evaluation{Metrics: v.Metrics}
			}
		}
		if err != nil {
			c.Error = err.Error()
		}
		r.Comparison = c
	}
	val := a.Metrics["validation"]
	r.Artifact, r.Version, r.Lineage = a, a.Version, a.Lineage
	r.Validation, r.Lambda, r.Grid, r.Calibration = &val, a.Lambda, a.Training.Grid, a.Calibration
	r.Folds = p.backtest(a)
	if r.Points, err = p.points(a); err != nil {
		r.Err = err
		return
	}
	r.Gate = p.gate(r.Points, baseline)
}

// backtest fits the folds of a rolling-origin backtest: the first is the
// main split's, each next one a validation window earlier. A fold that
// cannot be fitted (too few cases that early) says why.
func (p *dataset) backtest(a *models.Artifact) []Fold {
	k := p.h.Training.Split.Folds
	if k == 0 || p.split.Kind != TimeSplit {
		return nil
	}
	m := a.Metrics["validation"].Metrics
	folds := []Fold{{Split: p.split, Lambda: a.Lambda, Metrics: &m}}
	for f := 1; f < k; f++ {
		s, sp, err := p.timeSplit(f)
		fold := Fold{Split: sp}
		if err == nil {
			var b *models.Artifact
			if b, err = p.fit(s, sp); err == nil {
				m := b.Metrics["validation"].Metrics
				fold.Lambda, fold.Metrics = b.Lambda, &m
			}
		}
		if err != nil {
			fold.Error = err.Error()
		}
		folds = append(folds, fold)
	}
	return folds
}

// points predicts every case of the main split with the model, against
// the bills as they were (not capped).
func (p *dataset) points(a *models.Artifact) ([]Point, error) {
	var s models.Sparse
	row := make([]models.Value, len(p.inputs))
	out := make([]Point, 0, len(p.main.train)+len(p.main.valid))
	for side, idx := range [][]int{p.main.train, p.main.valid} {
		for _, i := range idx {
			r := p.rows[i]
			if r[p.target].Null {
				continue
			}
			pr, err := a.Predict(&s, project(row, r, p.inputs))
			if err != nil {
				return nil, fmt.Errorf("case %d: %w", i+1, err)
			}
			pt := Point{Actual: r[p.target].Num, Predicted: pr.Value, Validation: side == 1}
			if p.at != nil {
				pt.At = p.at[i]
			}
			out = append(out, pt)
		}
	}
	return out, nil
}
