package models

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/mat"
)

// Gram accumulates what a ridge regression needs from its rows, in one
// streaming pass and O(p^2) memory whatever the number of rows: the upper
// triangle of X'X, X'y, the column sums, and the sums of y and y^2. A row
// costs O(k^2) for its k non-zero columns, so the one-hot columns of
// categorical features, almost all zero, cost nothing.
type Gram struct {
	names []string
	n     int
	xtx   []float64 // p x p, row-major; only the upper triangle is used
	sum   []float64
	xty   []float64
	ysum  float64
	yy    float64
}

// NewGram starts a Gram over the columns with the given names (used in
// error messages).
func NewGram(names []string) *Gram {
	p := len(names)
	return &Gram{names: names, xtx: make([]float64, p*p), sum: make([]float64, p), xty: make([]float64, p)}
}

// Add adds one row with its target. x.Index must be increasing, as Encode
// makes it.
func (g *Gram) Add(x *Sparse, y float64) {
	p := len(g.sum)
	for a, i := range x.Index {
		va := x.Value[a]
		row := g.xtx[i*p : i*p+p]
		for b := a; b < len(x.Index); b++ {
			row[x.Index[b]] += va * x.Value[b]
		}
		g.sum[i] += va
		g.xty[i] += va * y
	}
	g.n++
	g.ysum += y
	g.yy += y * y
}

// Rows is the number of rows added.
func (g *Gram) Rows() int { return g.n }

// Ridge is a fitted ridge regression: y = Intercept + Coef . x.
type Ridge struct {
	Lambda    float64
	Intercept float64
	Coef      []float64
}

// conditionLimit is where a system counts as singular: past it, the
// solution has lost most of its digits to rounding.
const conditionLimit = 1e12

// Solve fits the ridge regression that minimises
//
//	sum_i (y_i - b0 - x_i . b)^2 + lambda * |b|^2
//
// over the rows added: the intercept b0 is not penalised (the columns are
// centred on their means), and lambda is not scaled by the number of rows.
// It solves (Xc'Xc + lambda I) b = Xc'yc with a Cholesky factorisation. A
// matrix that is not positive definite is an error naming the first column
// that causes it: a constant one, or one that is a linear combination of
// the columns before it (the levels of a one-hot feature sum to one, as
// the intercept does, so lambda 0 fails with any categorical feature).
func (g *Gram) Solve(lambda float64) (Ridge, error) {
	if !(lambda >= 0) || math.IsInf(lambda, 0) {
		return Ridge{}, fmt.Errorf("ridge: lambda %v: want a finite number >= 0", lambda)
	}
	if g.n < 2 {
		return Ridge{}, fmt.Errorf("ridge: %d rows: want at least 2", g.n)
	}
	p := len(g.sum)
	n := float64(g.n)
	a := g.centred()
	for i := range p {
		a[i*p+i] += lambda
	}
	c := mat.NewVecDense(p, nil)
	for i := range p {
		c.SetVec(i, g.xty[i]-g.sum[i]*g.ysum/n)
	}
	sym := mat.NewSymDense(p, a)
	var chol mat.Cholesky
	if !chol.Factorize(sym) || chol.Cond() > conditionLimit {
		return Ridge{}, g.singular(sym, lambda)
	}
	b := mat.NewVecDense(p, nil)
	if err := chol.SolveVecTo(b, c); err != nil {
		return Ridge{}, fmt.Errorf("ridge at lambda %v: %w", lambda, err)
	}
	r := Ridge{Lambda: lambda, Intercept: g.ysum / n, Coef: make([]float64, p)}
	for i := range p {
		r.Coef[i] = b.AtVec(i)
		r.Intercept -= r.Coef[i] * g.sum[i] / n
	}
	return r, nil
}

// centred returns the upper triangle of Xc'Xc = X'X - n m m', m the means.
func (g *Gram) centred() []float64 {
	p := len(g.sum)
	n := float64(g.n)
	a := make([]float64, p*p)
	for i := range p {
		for j := i; j < p; j++ {
			a[i*p+j] = g.xtx[i*p+j] - g.sum[i]*g.sum[j]/n
		}
	}
	return a
}

// singular names the first column whose leading block is not positive
// definite: with the columns before it fine, it is the culprit.
func (g *Gram) singular(sym *mat.SymDense, lambda float64) error {
	p := len(g.sum)
	ok := func(k int) bool {
		var chol mat.Cholesky
		return chol.Factorize(sym.SliceSym(0, k)) && chol.Cond() <= conditionLimit
	}
	lo, hi := 0, p // ok(lo) holds (the empty block), ok(hi) fails
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if ok(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	j := hi - 1
	n := float64(g.n)
	variance := (g.xtx[j*p+j] - g.sum[j]*g.sum[j]/n) / n
	why := "is a linear combination of the columns before it (with the intercept)"
	if variance <= 1e-12*math.Max(1, math.Abs(g.sum[j]/n)) {
		why = "is constant on the training rows"
	}
	hint := "drop the feature or raise lambda"
	if lambda == 0 {
		hint = "use a lambda above 0"
	}
	return fmt.Errorf("ridge at lambda %v: %w: column %s %s; %s", lambda, ErrSingular, g.names[j], why, hint)
}

// ErrSingular is wrapped by the error of a ridge system that is not
// positive definite.
var ErrSingular = errors.New("X'X + lambda I is not positive definite")

// SSE is the sum of squared errors of r on the rows of g, computed from
// the sums alone: a validation Gram scores every lambda of a grid without
// the validation rows.
func (g *Gram) SSE(r Ridge) float64 {
	p := len(g.sum)
	b0, b := r.Intercept, r.Coef
	quad := 0.0 // b' X'X b from the upper triangle
	for i := range p {
		if b[i] == 0 {
			continue
		}
		row := g.xtx[i*p : i*p+p]
		s := row[i] * b[i]
		for j := i + 1; j < p; j++ {
			s += 2 * row[j] * b[j]
		}
		quad += b[i] * s
	}
	bxty, bsum := 0.0, 0.0
	for i := range p {
		bxty += b[i] * g.xty[i]
		bsum += b[i] * g.sum[i]
	}
	n := float64(g.n)
	sse := g.yy - 2*b0*g.ysum - 2*bxty + n*b0*b0 + 2*b0*bsum + quad
	return math.Max(sse, 0)
}

// GridPoint is one lambda of the grid: its validation RMSE in the
// transformed target's space, or why it could not be fitted.
type GridPoint struct {
	Lambda float64 `json:"lambda"`
	// LearningRate and Trees: a gbdt's point of the grid, with the number
	// of trees early stopping kept.
	LearningRate float64  `json:"learning_rate,omitempty"`
	Trees        int      `json:"trees,omitempty"`
	RMSE         *float64 `json:"rmse,omitempty"`
	Error        string   `json:"error,omitempty"`
}

// Choose fits a ridge for each lambda on train and keeps the one with the
// lowest squared error on valid (ties: the smaller lambda). Every fit
// reuses the one Gram. A lambda that cannot be fitted is recorded in the
// grid and skipped; Choose fails only when none can be.
func Choose(train, valid *Gram, lambdas []float64) (Ridge, []GridPoint, error) {
	if len(lambdas) == 0 {
		return Ridge{}, nil, errors.New("ridge: no lambdas to choose from")
	}
	if valid.n == 0 {
		return Ridge{}, nil, ErrNoValidation
	}
	grid := slices.Clone(lambdas)
	slices.Sort(grid)
	grid = slices.Compact(grid)
	points := make([]GridPoint, len(grid))
	var best Ridge
	bestSSE := math.Inf(1)
	var errs []error
	for i, l := range grid {
		points[i].Lambda = l
		r, err := train.Solve(l)
		if err != nil {
			points[i].Error = err.Error()
			errs = append(errs, err)
			continue
		}
		sse := valid.SSE(r)
		rmse := math.Sqrt(sse / float64(valid.n))
		points[i].RMSE = &rmse
		if sse < bestSSE {
			best, bestSSE = r, sse
		}
	}
	if best.Coef == nil {
		return Ridge{}, points, errors.Join(errs...)
	}
	return best, points, nil
}
