package models

import (
	"errors"
	"fmt"
	"iter"
	"math"
	"slices"
	"strings"
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
	// Family is ridge (default), ridge-pooled, gbdt or gbdt-pooled.
	Family string
	// Lambdas is the grid of ridge penalties.
	Lambdas []float64
	// GBDT holds the boosting settings (family gbdt).
	GBDT GBDT
	// Prior is the pooled model a pooled family builds on (as Fit made
	// it, with HospitalColumn as its last feature: family ridge for
	// ridge-pooled, gbdt for gbdt-pooled), and PriorLevel this hospital's
	// value of HospitalColumn.
	Prior      *Artifact
	PriorLevel string
	// UnderRate, when set, calibrates the model to this under-estimate
	// rate on the inner validation.
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
	// Inner marks a training case that the inner validation holds out:
	// every choice (penalty, trees, calibration) is made on it, by the
	// model fitted on the other training cases. When no training case is
	// marked, the last fifth of them (in the order they come) is.
	Inner bool
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

// The model families.
const (
	FamilyRidge       = "ridge"
	FamilyRidgePooled = "ridge-pooled"
	FamilyGBDT        = "gbdt"
	FamilyGBDTPooled  = "gbdt-pooled"
)

// Families lists the model families, in the order reports show them.
var Families = []string{FamilyRidge, FamilyRidgePooled, FamilyGBDT, FamilyGBDTPooled}

// Fit fits a model of the spec's family in passes over the cases, by an
// honest protocol: every choice (the ridge penalty, the learning rate and
// number of trees, the calibration shift) is made on the inner validation
// (the training cases marked Inner), by the model fitted on the other
// training cases; the model is then refitted on all the training cases
// with those choices, and the validation cases (the outer window) are
// read once, at the end, for the metrics that the report shows and the
// gate compares. Metrics["inner"] holds the inner model's figures on the
// inner validation, by which the training pipeline chooses a family.
//
//  1. the encoder, from the training cases (means, levels, a sample of
//     each numeric feature for the drift summary, whose bins it cuts);
//  2. the family's fit: ridge streams Gram matrices (O(p^2) numbers for p
//     encoded columns, whatever the number of cases), scoring every
//     lambda of the grid without the rows; gbdt holds the training cases
//     binned (two bytes per tree feature) and boosts;
//  3. the inner model's predictions of the inner validation: its metrics,
//     and the calibration;
//  4. the model's predictions of the validation cases: its metrics, and
//     the drift summary of the validation cases.
//
// Bad data is an error and no artifact: too few cases (ErrTooFewRows), a
// target without values (ErrNoTarget), a target outside its transform's
// domain, a constant feature (ErrConstant), no validation cases
// (ErrNoValidation).
func Fit(spec Spec, train, valid Cases) (*Artifact, error) {
	family := spec.Family
	if family == "" {
		family = FamilyRidge
	}
	if !slices.Contains(Families, family) {
		return nil, fmt.Errorf("family %q: want one of %s", family, strings.Join(Families, ", "))
	}
	if family == FamilyRidgePooled || family == FamilyGBDTPooled {
		want := map[string]string{FamilyRidgePooled: FamilyRidge, FamilyGBDTPooled: FamilyGBDT}[family]
		if spec.Prior == nil || spec.Prior.inner == nil || spec.Prior.Family != want {
			return nil, fmt.Errorf("family %s: needs the pooled %s model, as Fit made it", family, want)
		}
	}
	if err := CheckTransform(spec.TargetTransform); err != nil {
		return nil, fmt.Errorf("target %s: %w", spec.Target, err)
	}
	ef, err := NewEncoderFit(spec.Inputs, spec.Features)
	if err != nil {
		return nil, err
	}
	missing, marked := 0, 0
	if err := spec.cases("training", train, func(c Case, y float64) error {
		if c.Inner {
			marked++
		}
		return ef.Add(c.Row)
	}, &missing); err != nil {
		return nil, err
	}
	rows := ef.Rows()
	switch {
	case rows == 0 && missing > 0:
		return nil, fmt.Errorf("target %s: %w: all %d training cases lack it", spec.Target, ErrNoTarget, missing)
	case rows < max(spec.MinRows, 2):
		return nil, fmt.Errorf("%w: %d training cases with a target, want at least %d", ErrTooFewRows, rows, max(spec.MinRows, 2))
	}
	innerRows := marked
	if marked == 0 {
		innerRows = rows / 5
	}
	if innerRows < 1 || rows-innerRows < 2 {
		return nil, fmt.Errorf("%w: the inner validation holds %d of the %d training cases: want at least 1 held out and 2 left to fit on", ErrTooFewRows, innerRows, rows)
	}
	// inner says whether the k-th training case (of those with a target)
	// is in the inner validation.
	inner := func(k int, c Case) bool {
		if marked > 0 {
			return c.Inner
		}
		return k >= rows-innerRows
	}
	// A pooled family reads the cases as the pooled model does: with its
	// encoder (less the hospital), so that a level this hospital has not
	// seen yet but the pool has keeps what the pool learnt of it.
	var enc *Encoder
	if spec.Prior != nil && (family == FamilyRidgePooled || family == FamilyGBDTPooled) {
		enc, err = spec.Prior.Encoder.withoutLast(spec.Inputs)
	} else {
		enc, err = ef.Encoder()
	}
	if err != nil {
		return nil, err
	}
	a := &Artifact{
		FormatVersion: FormatVersion,
		Hospital:      spec.Hospital,
		Version:       spec.Version,
		Family:        family,
		Inputs:        slices.Clone(spec.Inputs),
		Target:        Target{Column: spec.Target, Transform: spec.TargetTransform},
		Encoder:       enc,
		Coefficients:  []Coefficient{},
		Metrics:       map[string]Evaluation{},
		Training:      Training{Rows: rows, InnerRows: innerRows, MissingTarget: missing},
		Lineage:       spec.Lineage,
		Summary:       ef.summary(enc),
	}
	var in *Artifact
	switch family {
	case FamilyRidge, FamilyRidgePooled:
		in, err = fitRidge(&spec, a, train, inner)
	case FamilyGBDT:
		in, err = fitGBDT(&spec, a, train, inner)
	case FamilyGBDTPooled:
		in, err = fitPooledForest(&spec, a)
	}
	if err != nil {
		return nil, err
	}

	// The inner model on the inner validation: the figures a family is
	// chosen by, and the calibration.
	var s Sparse
	var actual, predicted, transformed, residuals []float64
	k := 0
	if err := spec.cases("training", train, func(c Case, y float64) error {
		k++
		if !inner(k-1, c) {
			return nil
		}
		p, err := in.Predict(&s, c.Row)
		if err != nil {
			return err
		}
		actual = append(actual, c.Target.Num)
		predicted = append(predicted, p.Value)
		transformed = append(transformed, p.Transformed)
		residuals = append(residuals, y-p.Transformed)
		return nil
	}, new(int)); err != nil {
		return nil, err
	}
	if len(actual) != innerRows {
		return nil, fmt.Errorf("the training cases changed between passes (%d inner cases, then %d): they must come in the same order each time", innerRows, len(actual))
	}
	var calibrated []float64
	if spec.UnderRate != nil {
		cal, err := Calibrate(*spec.UnderRate, residuals)
		if err != nil {
			return nil, err
		}
		a.Calibration, in.Calibration = &cal, &cal
		if calibrated, err = in.calibrated(transformed); err != nil {
			return nil, err
		}
	}
	a.Metrics["inner"] = evaluation(nil, nil, actual, predicted, calibrated)
	a.inner = in

	// The outer validation, read once.
	actual, predicted, transformed = nil, nil, nil
	segments := make([][]string, len(spec.Segments))
	// The drift summary is the validation window's (binned at the training
	// deciles): feedback judges live inputs against the cases the model was
	// judged on, as it judges live error against the validation error.
	if err := a.compile(); err != nil {
		return nil, fmt.Errorf("artifact: %w", err)
	}
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
		return nil
	}, new(int)); err != nil {
		return nil, err
	}
	if len(actual) == 0 {
		return nil, ErrNoValidation
	}
	a.Training.ValidationRows = len(actual)
	calibrated = nil
	if a.Calibration != nil {
		if calibrated, err = a.calibrated(transformed); err != nil {
			return nil, err
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

// calibrated is the calibrated answers of predictions in the transformed
// space.
func (a *Artifact) calibrated(transformed []float64) ([]float64, error) {
	out := make([]float64, len(transformed))
	for i, t := range transformed {
		p, err := a.answer(t)
		if err != nil {
			return nil, fmt.Errorf("case %d: %w", i+1, err)
		}
		out[i] = p.Calibrated
	}
	return out, nil
}

// fitRidge fits the ridge families: the penalty chosen on the inner
// validation, then the refit on every training case. ridge-pooled fits
// the residuals of the pooled model (its inner model for the inner fit,
// the whole for the refit), so that the hospital's coefficients shrink
// toward the pooled ones instead of toward zero; the two add up to one
// linear model on the hospital's own encoder.
func fitRidge(spec *Spec, a *Artifact, train Cases, inner func(int, Case) bool) (*Artifact, error) {
	enc := a.Encoder
	var priorIn, priorFull reduced
	pooled := spec.Prior != nil && a.Family == FamilyRidgePooled
	if pooled {
		var err error
		if priorFull, err = spec.Prior.forHospital(spec.PriorLevel, enc); err != nil {
			return nil, err
		}
		if priorIn, err = spec.Prior.inner.forHospital(spec.PriorLevel, enc); err != nil {
			return nil, err
		}
	}
	var s Sparse
	gIn, gInV, gFull := NewGram(enc.Names()), NewGram(enc.Names()), NewGram(enc.Names())
	k := 0
	if err := spec.cases("training", train, func(c Case, y float64) error {
		if err := enc.Encode(&s, c.Row); err != nil {
			return err
		}
		yIn, yFull := y, y
		if pooled {
			yIn, yFull = y-priorIn.linear(&s), y-priorFull.linear(&s)
		}
		if inner(k, c) {
			gInV.Add(&s, yIn)
		} else {
			gIn.Add(&s, yIn)
		}
		gFull.Add(&s, yFull)
		k++
		return nil
	}, new(int)); err != nil {
		return nil, err
	}
	if gFull.Rows() != a.Training.Rows {
		return nil, fmt.Errorf("the training cases changed between passes (%d, then %d): they must come in the same order each time", a.Training.Rows, gFull.Rows())
	}
	rIn, grid, err := Choose(gIn, gInV, spec.Lambdas)
	if err != nil {
		return nil, err
	}
	r, err := gFull.Solve(rIn.Lambda)
	if err != nil {
		return nil, err
	}
	in := &Artifact{Encoder: enc, Target: a.Target, Family: a.Family, Intercept: rIn.Intercept + priorIn.intercept, coef: rIn.Coef}
	a.Lambda, a.Intercept, a.Training.Grid = r.Lambda, r.Intercept+priorFull.intercept, grid
	if pooled {
		for i := range r.Coef {
			r.Coef[i] += priorFull.coef[i]
			in.coef[i] += priorIn.coef[i]
		}
	}
	a.Coefficients = make([]Coefficient, len(r.Coef))
	for i, name := range enc.Names() {
		a.Coefficients[i] = Coefficient{Name: name, Value: r.Coef[i]}
	}
	return in, nil
}

// linear is a reduced ridge's prediction of an encoded row, less its
// intercept.
func (r *reduced) linear(s *Sparse) float64 {
	y := r.intercept
	for k, i := range s.Index {
		y += r.coef[i] * s.Value[k]
	}
	return y
}

// fitGBDT boosts trees on the hospital's cases: for each learning rate of
// the grid, on the training cases outside the inner validation, stopping
// early on it; the best rate and its number of trees are refitted on
// every training case.
func fitGBDT(spec *Spec, a *Artifact, train Cases, inner func(int, Case) bool) (*Artifact, error) {
	p := spec.GBDT.WithDefaults()
	if err := p.Check(); err != nil {
		return nil, fmt.Errorf("gbdt: %w", err)
	}
	enc := a.Encoder
	codes := enc.codes()
	for f, c := range codes {
		if c > 1<<16 {
			return nil, fmt.Errorf("gbdt: feature %s has %d levels: at most %d; raise its min_count", enc.TreeFeatures()[f], c, 1<<16)
		}
	}
	cols := make([][]float64, len(codes))
	var y []float64
	var held []bool
	var s Sparse
	k := 0
	if err := spec.cases("training", train, func(c Case, t float64) error {
		if err := enc.treeValues(&s, c.Row); err != nil {
			return err
		}
		for f, x := range s.dense {
			cols[f] = append(cols[f], x)
		}
		y = append(y, t)
		held = append(held, inner(k, c))
		k++
		return nil
	}, new(int)); err != nil {
		return nil, err
	}
	if len(y) != a.Training.Rows {
		return nil, fmt.Errorf("the training cases changed between passes (%d, then %d): they must come in the same order each time", a.Training.Rows, len(y))
	}
	b := newBinning(cols, codes, p.MaxBins)
	all := b.bin(cols)
	var fitRows, heldRows []int
	for i, h := range held {
		if h {
			heldRows = append(heldRows, i)
		} else {
			fitRows = append(fitRows, i)
		}
	}
	tm, ty := all.rows(fitRows), pick(y, fitRows)
	vm, vy := all.rows(heldRows), pick(y, heldRows)
	var best boosted
	bestLR := 0.0
	var grid []GridPoint
	for _, lr := range p.LearningRates {
		r := boost(p, lr, b, tm, ty, vm, vy, p.MaxTrees)
		rmse := r.rmse
		grid = append(grid, GridPoint{Lambda: p.L2, LearningRate: lr, Trees: r.best, RMSE: &rmse})
		if bestLR == 0 || r.rmse < best.rmse {
			best, bestLR = r, lr
		}
	}
	// The refit sees a quarter or so more cases than the inner fit that
	// chose the number of trees: it gets as many more trees.
	rounds := best.best
	if best.best > 0 {
		rounds = max(1, int(math.Round(float64(best.best)*float64(all.n)/float64(tm.n))))
	}
	full := boost(p, bestLR, b, all, y, nil, nil, rounds)
	in := &Artifact{Encoder: enc, Target: a.Target, Family: a.Family, Intercept: best.base, Forest: &Forest{LearningRate: bestLR, Trees: append([]Tree{}, best.trees...)}}
	a.Lambda, a.Intercept, a.Training.Grid = p.L2, full.base, grid
	a.Forest = &Forest{LearningRate: bestLR, Trees: append([]Tree{}, full.trees...)}
	return in, in.compile()
}

// rows is the matrix of some of m's rows.
func (m *matrix) rows(idx []int) *matrix {
	out := &matrix{n: len(idx), f: m.f, bins: make([]uint16, 0, len(idx)*m.f)}
	for _, i := range idx {
		out.bins = append(out.bins, m.bins[i*m.f:(i+1)*m.f]...)
	}
	return out
}

// fitPooledForest is a hospital's share of the pooled gbdt: the pooled
// forest with the hospital's feature resolved, on the hospital's encoder.
// The pooled model's inner forest (fitted without any inner validation
// case) is the inner model.
func fitPooledForest(spec *Spec, a *Artifact) (*Artifact, error) {
	full, err := spec.Prior.forHospital(spec.PriorLevel, a.Encoder)
	if err != nil {
		return nil, err
	}
	rin, err := spec.Prior.inner.forHospital(spec.PriorLevel, a.Encoder)
	if err != nil {
		return nil, err
	}
	a.Lambda, a.Intercept, a.Forest = spec.Prior.Lambda, full.intercept, full.forest
	a.Training.Grid = slices.Clone(spec.Prior.Training.Grid)
	return &Artifact{Encoder: a.Encoder, Target: a.Target, Family: a.Family, Intercept: rin.intercept, Forest: rin.forest}, nil
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
