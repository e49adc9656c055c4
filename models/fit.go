package models

import (
	"errors"
	"fmt"
	"iter"
	"slices"
)

// Errors of bad training data, wrapped with the details, so that the
// training pipeline can tell them apart (errors.Is) and say what to do.
var (
	ErrTooFewRows   = errors.New("too few training rows")
	ErrNoTarget     = errors.New("the target has no values")
	ErrNoValidation = errors.New("the validation window has no rows with a target")
)

// Spec says what to fit: a hospital's training settings, resolved by the
// training pipeline from its contract.
type Spec struct {
	Hospital string
	// Version of the model; empty: the content hash of the artifact as
	// Fit makes it (metric sets added later leave it as it is).
	Version string
	// Inputs are the columns the rows are aligned with: exactly the
	// columns the features read (InputsFor gives them).
	Inputs   []Column
	Features []Feature
	// Target names the target column; TargetTransform is none, log or log1p.
	Target          string
	TargetTransform string
	// Lambdas is the grid of ridge penalties.
	Lambdas []float64
	// UnderRate, when set, calibrates the model to this under-estimate
	// rate on the validation window.
	UnderRate *float64
	// MinRows is the fewest training cases (with a target) to fit on.
	MinRows int
	// Segments names the columns of Case.Segments that validation metrics
	// are broken down by.
	Segments []string
	Lineage  Lineage
}

// Case is one training or validation case.
type Case struct {
	// Row holds the inputs, aligned with Spec.Inputs.
	Row []Value
	// Target is the observed value in its own unit; a missing target keeps
	// the case out of the fit.
	Target Value
	// Segments holds the case's value of each of Spec.Segments
	// (validation cases only).
	Segments []string
}

// Cases yields cases, or an error that ends the pass. Fit ranges over the
// training cases twice and the validation cases twice: each range must
// yield the same cases in the same order (the same query, ordered), which
// is also what makes the artifact the same bytes every time. Fit keeps no
// case past its turn, so a source may reuse one row for all of them.
type Cases = iter.Seq2[Case, error]

// InputsFor returns the columns of all that the features read, in the
// order of all: the inputs of a model.
func InputsFor(all []Column, features []Feature) ([]Column, error) {
	read := map[string]bool{}
	for _, f := range features {
		name := f.Column
		if name == "" {
			name = f.Name
		}
		if !slices.ContainsFunc(all, func(c Column) bool { return c.Name == name }) {
			return nil, fmt.Errorf("feature %s: column %q is not among the columns", f.Name, name)
		}
		read[name] = true
	}
	var out []Column
	for _, c := range all {
		if read[c.Name] {
			out = append(out, c)
		}
	}
	return out, nil
}

// Fit fits a ridge model in streaming passes, holding O(p^2) numbers for p
// encoded columns, the level counts, a bounded sample of each numeric
// feature, and one prediction per validation case:
//
//  1. the encoder, from the training cases (means, levels, a sample of
//     each numeric feature for the drift summary, whose bins it cuts);
//  2. the training Gram (X'X, X'y) of the encoded cases;
//  3. the validation Gram, which scores every lambda of the grid without
//     the rows;
//  4. the chosen model's predictions of the validation cases: its metrics,
//     and the calibration; the drift summary of the validation cases.
//
// Bad data is an error and no artifact: too few cases (ErrTooFewRows), a
// target without values (ErrNoTarget), a target outside its transform's
// domain, a constant feature (ErrConstant), no validation cases
// (ErrNoValidation).
func Fit(spec Spec, train, valid Cases) (*Artifact, error) {
	if err := CheckTransform(spec.TargetTransform); err != nil {
		return nil, fmt.Errorf("target %s: %w", spec.Target, err)
	}
	ef, err := NewEncoderFit(spec.Inputs, spec.Features)
	if err != nil {
		return nil, err
	}
	missing := 0
	if err := spec.cases("training", train, func(c Case, y float64) error {
		return ef.Add(c.Row)
	}, &missing); err != nil {
		return nil, err
	}
	switch rows := ef.Rows(); {
	case rows == 0 && missing > 0:
		return nil, fmt.Errorf("target %s: %w: all %d training cases lack it", spec.Target, ErrNoTarget, missing)
	case rows < max(spec.MinRows, 2):
		return nil, fmt.Errorf("%w: %d training cases with a target, want at least %d", ErrTooFewRows, rows, max(spec.MinRows, 2))
	}
	enc, err := ef.Encoder()
	if err != nil {
		return nil, err
	}

	var s Sparse
	gram := NewGram(enc.Names())
	encode := func(g *Gram) func(Case, float64) error {
		return func(c Case, y float64) error {
			if err := enc.Encode(&s, c.Row); err != nil {
				return err
			}
			g.Add(&s, y)
			return nil
		}
	}
	if err := spec.cases("training", train, encode(gram), new(int)); err != nil {
		return nil, err
	}
	if gram.Rows() != ef.Rows() {
		return nil, fmt.Errorf("the training cases changed between passes (%d, then %d): they must come in the same order each time", ef.Rows(), gram.Rows())
	}
	vgram := NewGram(enc.Names())
	if err := spec.cases("validation", valid, encode(vgram), new(int)); err != nil {
		return nil, err
	}
	if vgram.Rows() == 0 {
		return nil, ErrNoValidation
	}
	ridge, grid, err := Choose(gram, vgram, spec.Lambdas)
	if err != nil {
		return nil, err
	}

	a := &Artifact{
		FormatVersion: FormatVersion,
		Hospital:      spec.Hospital,
		Version:       spec.Version,
		Family:        Family,
		Inputs:        slices.Clone(spec.Inputs),
		Target:        Target{Column: spec.Target, Transform: spec.TargetTransform},
		Encoder:       enc,
		Lambda:        ridge.Lambda,
		Intercept:     ridge.Intercept,
		Coefficients:  make([]Coefficient, len(ridge.Coef)),
		Metrics:       map[string]Evaluation{},
		Training:      Training{Rows: gram.Rows(), ValidationRows: vgram.Rows(), MissingTarget: missing, Grid: grid},
		Lineage:       spec.Lineage,
		Summary:       ef.summary(enc),
		coef:          ridge.Coef,
	}
	for i, name := range enc.Names() {
		a.Coefficients[i] = Coefficient{Name: name, Value: ridge.Coef[i]}
	}

	var actual, predicted, transformed, residuals []float64
	segments := make([][]string, len(spec.Segments))
	// The drift summary is the validation window's (binned at the training
	// deciles): feedback judges live inputs against the cases the model was
	// judged on, as it judges live error against the validation error.
	window := a.Drift()
	if err := spec.cases("validation", valid, func(c Case, y float64) error {
		if err := window.Add(c.Row); err != nil {
			return err
		}
		p, err := a.Predict(&s, c.Row)
		if err != nil {
			return err
		}
		if len(c.Segments) != len(spec.Segments) {
			return fmt.Errorf("%d segment values, want %d (%v)", len(c.Segments), len(spec.Segments), spec.Segments)
		}
		for j, v := range c.Segments {
			segments[j] = append(segments[j], v)
		}
		actual = append(actual, c.Target.Num)
		predicted = append(predicted, p.Value)
		transformed = append(transformed, p.Transformed)
		residuals = append(residuals, y-p.Transformed)
		return nil
	}, new(int)); err != nil {
		return nil, err
	}
	if len(actual) != vgram.Rows() {
		return nil, fmt.Errorf("the validation cases changed between passes (%d, then %d): they must come in the same order each time", vgram.Rows(), len(actual))
	}
	var calibrated []float64
	if spec.UnderRate != nil {
		cal, err := Calibrate(*spec.UnderRate, residuals)
		if err != nil {
			return nil, err
		}
		a.Calibration = &cal
		calibrated = make([]float64, len(transformed))
		for i, t := range transformed {
			p, err := a.answer(t)
			if err != nil {
				return nil, fmt.Errorf("validation case %d: %w", i+1, err)
			}
			calibrated[i] = p.Calibrated
		}
	}
	a.Metrics["validation"] = evaluation(spec.Segments, segments, actual, predicted, calibrated)
	a.Summary.recount(window)

	if a.Version == "" {
		if a.Version, err = contentVersion(a); err != nil {
			return nil, err
		}
	}
	if err := a.prepare(); err != nil {
		return nil, fmt.Errorf("artifact: %w", err)
	}
	return a, nil
}

// evaluation computes the metrics of a set of cases, overall and by each
// segment column; calibrated may be nil.
func evaluation(names []string, segments [][]string, actual, predicted, calibrated []float64) Evaluation {
	ev := Evaluation{Metrics: Evaluate(actual, predicted)}
	if calibrated != nil {
		c := Evaluate(actual, calibrated)
		ev.Calibrated = &c
	}
	for j, name := range names {
		if ev.Segments == nil {
			ev.Segments = map[string][]Segment{}
		}
		ev.Segments[name] = BySegment(segments[j], actual, predicted, calibrated)
	}
	return ev
}

// cases runs one pass over a set of cases: it skips (and counts in
// missing) those without a target, transforms the target, and hands each
// case to do. Errors name the pass and the case.
func (spec *Spec) cases(pass string, cases Cases, do func(Case, float64) error, missing *int) error {
	n := 0
	for c, err := range cases {
		n++
		if err != nil {
			return fmt.Errorf("%s cases: %w", pass, err)
		}
		if c.Target.Null {
			*missing++
			continue
		}
		y, ok := Transform(spec.TargetTransform, c.Target.Num)
		if !ok {
			return fmt.Errorf("%s case %d: target %s %s: %s; clean such cases out, or choose another target_transform", pass, n, spec.Target, Number(c.Target.Num).Format(Float), domain(spec.TargetTransform))
		}
		if err := do(c, y); err != nil {
			return fmt.Errorf("%s case %d: %w", pass, n, err)
		}
	}
	return nil
}
