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
	// held marks the rows (by index into p.rows) that the inner
	// validation holds out; nil for validation cases.
	held []bool
}

// viewOf is a view of the hospital's own model.
func (p *dataset) viewOf(idx []int, caps []capping, held []bool) view {
	return view{p: p, idx: idx, inputs: p.inputs, caps: caps, segments: p.segments, held: held}
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
			if !yield(models.Case{Row: row, Target: target, Segments: seg, Inner: v.held != nil && v.held[i]}, nil) {
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

// fit fits the hospital's model of a family on one split; a pooled
// family builds on prior, the pooled model fitted on the same split.
func (p *dataset) fit(s sides, sp Split, family string, prior *models.Artifact) (*models.Artifact, error) {
	held, err := p.innerSplit(s.train)
	if err != nil {
		return nil, p.advise(err, sp)
	}
	spec := p.spec
	spec.Family, spec.Prior, spec.PriorLevel = family, prior, p.h.ID
	spec.Lineage.Train, spec.Lineage.Validation = sp.Training, sp.Validation
	a, err := models.Fit(spec, p.viewOf(s.train, p.capsOf(s.train), held).cases(), p.viewOf(s.valid, nil, nil).cases())
	if err != nil {
		return nil, p.advise(err, sp)
	}
	return a, nil
}

// ownFamily is the family fitted on the hospital's cases alone that a
// family stands for where no pooled model is at hand (the comparison
// split, the backtest).
func ownFamily(family string) string {
	switch family {
	case models.FamilyRidgePooled:
		return models.FamilyRidge
	case models.FamilyGBDTPooled:
		return models.FamilyGBDT
	}
	return family
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

// Candidate is one family the contract lists, fitted on the main split:
// its figures on the inner validation (which the choice is made on) and
// on the validation window (shown, never chosen on).
type Candidate struct {
	Family     string          `json:"family"`
	Shipped    bool            `json:"shipped,omitempty"`
	Inner      *models.Metrics `json:"inner,omitempty"`
	Validation *models.Metrics `json:"validation,omitempty"`
	// Lambda of a ridge family; Trees and LearningRate of a gbdt.
	Lambda       float64 `json:"lambda,omitempty"`
	Trees        int     `json:"trees,omitempty"`
	LearningRate float64 `json:"learning_rate,omitempty"`
	Error        string  `json:"error,omitempty"`

	artifact *models.Artifact
}

// candidates fits every family the contract lists and picks the one with
// the lowest inner-validation figure of the gate's metric (ties: the
// earlier in the list).
func (p *dataset) candidates(priors map[string]*models.Artifact, priorErr map[string]error) ([]Candidate, int, error) {
	var out []Candidate
	best := -1
	metric := p.h.Training.Gate.Metric
	var errs []error
	for _, family := range p.h.Training.Model.Families {
		c := Candidate{Family: family}
		var a *models.Artifact
		var err error
		if base := ownFamily(family); base != family {
			prior := priors[base]
			if prior == nil {
				err = priorErr[base]
				if err == nil {
					err = errors.New("no pooled model: no other hospital declares the same features over the same columns")
				}
			} else {
				a, err = p.fit(p.main, p.split, family, prior)
			}
		} else {
			a, err = p.fit(p.main, p.split, family, nil)
		}
		if err != nil {
			c.Error = err.Error()
			errs = append(errs, fmt.Errorf("family %s: %w", family, err))
			out = append(out, c)
			continue
		}
		in, v := a.Metrics["inner"].Metrics, a.Metrics["validation"].Metrics
		c.Inner, c.Validation, c.artifact = &in, &v, a
		if a.Forest != nil {
			c.Trees, c.LearningRate = len(a.Forest.Trees), a.Forest.LearningRate
		} else {
			c.Lambda = a.Lambda
		}
		if best < 0 || metricOf(in, metric) < metricOf(*out[best].Inner, metric) {
			best = len(out)
		}
		out = append(out, c)
	}
	if best < 0 {
		return out, -1, errors.Join(errs...)
	}
	out[best].Shipped = true
	return out, best, nil
}

// fitHospital trains one hospital: every candidate family on the main
// split and the choice among them, the comparison split, the backtest,
// the plots' points and the gate.
func fitHospital(r *Result, p *dataset, baseline *models.Artifact, priors map[string]*models.Artifact, priorErr map[string]error) {
	r.Rows, r.Cleaned, r.Cleaning, r.Split = p.read, len(p.rows), p.cleaning, p.split
	if p.err != nil {
		r.Err = p.err
		return
	}
	cands, best, err := p.candidates(priors, priorErr)
	r.Candidates = cands
	if err != nil {
		r.Err = err
		return
	}
	a := cands[best].artifact
	r.Family = a.Family
	r.Choice = choice(cands, best, p.h.Training.Gate.Metric)
	if to := a.Lineage.Validation.To; to != "" {
		a.Version = strings.ReplaceAll(to[:7], "-", ".") + "-" + a.Version
	}
	own := ownFamily(a.Family)
	if s, sp, ok, err := p.otherSplit(); ok {
		c := &Comparison{Split: sp, Family: own}
		if err == nil {
			var other *models.Artifact
			if other, err = p.fit(s, sp, own, nil); err == nil {
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
	val, inner := a.Metrics["validation"], a.Metrics["inner"]
	r.Artifact, r.Version, r.Lineage = a, a.Version, a.Lineage
	r.Validation, r.Inner, r.Lambda, r.Grid, r.Calibration = &val, &inner, a.Lambda, a.Training.Grid, a.Calibration
	r.Folds = p.backtest(a, own)
	if r.Points, err = p.points(a); err != nil {
		r.Err = err
		return
	}
	r.Gate = p.gate(r.Points, baseline)
}

// choice says why the shipped candidate won.
func choice(cands []Candidate, best int, metric string) string {
	b := cands[best]
	if len(cands) == 1 {
		return fmt.Sprintf("%s is the contract's only family", b.Family)
	}
	var others []string
	for i, c := range cands {
		switch {
		case i == best:
		case c.Inner == nil:
			others = append(others, fmt.Sprintf("%s could not be fitted", c.Family))
		default:
			others = append(others, fmt.Sprintf("%s %s", c.Family, formatMetric(metricOf(*c.Inner, metric), metric)))
		}
	}
	return fmt.Sprintf("%s has the lowest %s on the inner validation, %s (%s); the validation window was not looked at", b.Family, metric, formatMetric(metricOf(*b.Inner, metric), metric), strings.Join(others, ", "))
}

// backtest fits the folds of a rolling-origin backtest: the first is the
// main split's, each next one a validation window earlier. A fold that
// cannot be fitted (too few cases that early) says why.
func (p *dataset) backtest(a *models.Artifact, family string) []Fold {
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
			if b, err = p.fit(s, sp, family, nil); err == nil {
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
