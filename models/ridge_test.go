package models_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/wardml/ward/models"
)

// design is a random design matrix, dense, with its rows as Sparse rows.
type design struct {
	x    *mat.Dense
	y    []float64
	rows []models.Sparse
}

// denseDesign has Gaussian columns with different means and scales.
func denseDesign(rng *rand.Rand, n, p int) design {
	x := mat.NewDense(n, p, nil)
	y := make([]float64, n)
	beta := make([]float64, p)
	for j := range beta {
		beta[j] = rng.NormFloat64()
	}
	for i := range n {
		for j := range p {
			x.Set(i, j, float64(j%3)+float64(1+j%4)*rng.NormFloat64())
		}
		y[i] = 5 + mat.Dot(x.RowView(i), mat.NewVecDense(p, beta)) + rng.NormFloat64()
	}
	return design{x: x, y: y, rows: sparseRows(x)}
}

// oneHotDesign has blocks of one-hot columns (one 1 per block and row,
// levels of skewed frequency) and two numeric columns: the shape of
// encoded categorical features. The true effects depend on the blocks
// only, so designs drawn with different rngs share them.
func oneHotDesign(rng *rand.Rand, n int, blocks []int, noise float64) design {
	p := 2
	for _, b := range blocks {
		p += b
	}
	x := mat.NewDense(n, p, nil)
	y := make([]float64, n)
	truth := rand.New(rand.NewPCG(uint64(p), 42))
	effect := make([]float64, p)
	for j := range effect {
		effect[j] = truth.NormFloat64()
	}
	for i := range n {
		x.Set(i, 0, rng.NormFloat64())
		x.Set(i, 1, rng.ExpFloat64())
		y[i] = 3 + effect[0]*x.At(i, 0) + effect[1]*x.At(i, 1) + noise*rng.NormFloat64()
		off := 2
		for _, b := range blocks {
			// Level k with weight 1/(k+1), so some levels are rare.
			var k int
			for {
				k = rng.IntN(b)
				if rng.Float64() < 1/float64(k+1) {
					break
				}
			}
			x.Set(i, off+k, 1)
			y[i] += effect[off+k]
			off += b
		}
	}
	return design{x: x, y: y, rows: sparseRows(x)}
}

func sparseRows(x *mat.Dense) []models.Sparse {
	n, p := x.Dims()
	rows := make([]models.Sparse, n)
	for i := range n {
		for j := range p {
			if v := x.At(i, j); v != 0 {
				rows[i].Index = append(rows[i].Index, j)
				rows[i].Value = append(rows[i].Value, v)
			}
		}
	}
	return rows
}

func names(p int) []string {
	out := make([]string, p)
	for i := range out {
		out[i] = fmt.Sprintf("x%d", i)
	}
	return out
}

func (d design) gram() *models.Gram {
	_, p := d.x.Dims()
	g := models.NewGram(names(p))
	for i := range d.rows {
		g.Add(&d.rows[i], d.y[i])
	}
	return g
}

// closedForm solves the same ridge densely and plainly: centre X and y,
// then b = (Xc'Xc + lambda I)^-1 Xc'yc with an LU solve, b0 = mean(y) -
// mean(X) b.
func closedForm(t *testing.T, d design, lambda float64) (float64, []float64) {
	n, p := d.x.Dims()
	xc := mat.DenseCopyOf(d.x)
	means := make([]float64, p)
	for j := range p {
		means[j] = mat.Sum(xc.ColView(j)) / float64(n)
		for i := range n {
			xc.Set(i, j, xc.At(i, j)-means[j])
		}
	}
	ymean := 0.0
	for _, v := range d.y {
		ymean += v
	}
	ymean /= float64(n)
	yc := mat.NewVecDense(n, nil)
	for i, v := range d.y {
		yc.SetVec(i, v-ymean)
	}
	var a mat.Dense
	a.Mul(xc.T(), xc)
	for j := range p {
		a.Set(j, j, a.At(j, j)+lambda)
	}
	var c, b mat.VecDense
	c.MulVec(xc.T(), yc)
	if err := b.SolveVec(&a, &c); err != nil {
		t.Fatalf("dense solve: %v", err)
	}
	b0 := ymean
	for j := range p {
		b0 -= means[j] * b.AtVec(j)
	}
	return b0, b.RawVector().Data
}

func relErr(got, want []float64) float64 {
	var num, den float64
	for i := range want {
		num += (got[i] - want[i]) * (got[i] - want[i])
		den += want[i] * want[i]
	}
	return math.Sqrt(num / den)
}

func TestRidgeMatchesDenseClosedForm(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name    string
		d       design
		lambdas []float64
	}{
		{"dense", denseDesign(rng, 500, 12), []float64{0, 0.01, 1, 100}},
		// lambda 0 is singular with full one-hot blocks; below 0.1 the
		// direction that moves a whole block against the intercept is
		// pinned by lambda alone, and the dense reference's own rounding
		// (1/lambda times its error in X'y) reaches 1e-9.
		{"sparse one-hot", oneHotDesign(rng, 3000, []int{7, 20, 3, 40}, 0.5), []float64{0.1, 1, 10, 1000}},
	}
	for _, c := range cases {
		g := c.d.gram()
		for _, lambda := range c.lambdas {
			t.Run(fmt.Sprintf("%s/lambda=%v", c.name, lambda), func(t *testing.T) {
				r, err := g.Solve(lambda)
				if err != nil {
					t.Fatal(err)
				}
				b0, b := closedForm(t, c.d, lambda)
				if e := relErr(r.Coef, b); e > 1e-9 {
					t.Errorf("coefficients differ from the dense closed form: relative error %g", e)
				}
				if e := math.Abs(r.Intercept-b0) / math.Abs(b0); e > 1e-9 {
					t.Errorf("intercept %v, dense %v: relative error %g", r.Intercept, b0, e)
				}
			})
		}
	}
}

func TestSSEFromSums(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	train := oneHotDesign(rng, 2000, []int{5, 9}, 0.5)
	valid := oneHotDesign(rand.New(rand.NewPCG(5, 6)), 400, []int{5, 9}, 0.5)
	r, err := train.gram().Solve(1)
	if err != nil {
		t.Fatal(err)
	}
	want := 0.0
	for i := range valid.rows {
		pred := r.Intercept
		for k, j := range valid.rows[i].Index {
			pred += r.Coef[j] * valid.rows[i].Value[k]
		}
		want += (valid.y[i] - pred) * (valid.y[i] - pred)
	}
	if got := valid.gram().SSE(r); math.Abs(got-want)/want > 1e-9 {
		t.Errorf("SSE from the validation sums %v, from the rows %v", got, want)
	}
}

func TestChooseLambdaOnValidation(t *testing.T) {
	// Few rows and many noisy levels: shrinking helps on fresh rows.
	rng := rand.New(rand.NewPCG(7, 8))
	train := oneHotDesign(rng, 300, []int{60, 40}, 3)
	valid := oneHotDesign(rng, 300, []int{60, 40}, 3)
	lambdas := []float64{1000, 0.001, 10, 1, 0.1, 100}
	best, grid, err := models.Choose(train.gram(), valid.gram(), lambdas)
	if err != nil {
		t.Fatal(err)
	}
	if len(grid) != len(lambdas) {
		t.Fatalf("grid has %d points, want %d", len(grid), len(lambdas))
	}
	bestRMSE := math.Inf(1)
	for i, p := range grid {
		if i > 0 && p.Lambda <= grid[i-1].Lambda {
			t.Errorf("grid is not in increasing order of lambda: %v", grid)
		}
		if p.RMSE == nil {
			t.Fatalf("lambda %v: %s", p.Lambda, p.Error)
		}
		bestRMSE = math.Min(bestRMSE, *p.RMSE)
	}
	var chosen float64
	for _, p := range grid {
		if p.Lambda == best.Lambda {
			chosen = *p.RMSE
		}
	}
	if chosen != bestRMSE {
		t.Errorf("chose lambda %v (validation RMSE %v), but the best RMSE is %v", best.Lambda, chosen, bestRMSE)
	}
	if best.Lambda == 0.001 || best.Lambda == 1000 {
		t.Errorf("chose lambda %v at the edge of the grid; this data should want some shrinkage, not all", best.Lambda)
	}
}

func TestSingularNamesTheColumn(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	// A constant column.
	d := denseDesign(rng, 200, 5)
	for i := range 200 {
		d.x.Set(i, 2, 4)
	}
	d.rows = sparseRows(d.x)
	_, err := d.gram().Solve(0)
	if !errors.Is(err, models.ErrSingular) || !strings.Contains(err.Error(), "column x2 is constant") || !strings.Contains(err.Error(), "lambda above 0") {
		t.Errorf("constant column at lambda 0: got %v", err)
	}
	if _, err := d.gram().Solve(0.1); err != nil {
		t.Errorf("a constant column with lambda 0.1 is solvable, got %v", err)
	}

	// One-hot levels summing to one, like the intercept: the last level of
	// the first block is the combination of the others.
	oh := oneHotDesign(rng, 500, []int{4, 3}, 0.5)
	_, err = oh.gram().Solve(0)
	if !errors.Is(err, models.ErrSingular) || !strings.Contains(err.Error(), "column x5 is a linear combination") {
		t.Errorf("collinear one-hot block at lambda 0: got %v", err)
	}
	if _, err := oh.gram().Solve(0.01); err != nil {
		t.Errorf("one-hot blocks with lambda 0.01 are solvable, got %v", err)
	}
}

func TestChooseSkipsUnsolvableLambdas(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	train := oneHotDesign(rng, 500, []int{4}, 0.5)
	valid := oneHotDesign(rng, 100, []int{4}, 0.5)
	best, grid, err := models.Choose(train.gram(), valid.gram(), []float64{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	if best.Lambda != 1 || grid[0].Error == "" || grid[0].RMSE != nil {
		t.Errorf("lambda 0 is singular here and must be skipped with its reason; got best %v, grid %+v", best.Lambda, grid)
	}
	if _, _, err := models.Choose(train.gram(), valid.gram(), []float64{0}); !errors.Is(err, models.ErrSingular) {
		t.Errorf("a grid of only singular lambdas: got %v, want ErrSingular", err)
	}
	if _, _, err := models.Choose(train.gram(), models.NewGram(names(6)), []float64{1}); !errors.Is(err, models.ErrNoValidation) {
		t.Errorf("an empty validation Gram: got %v, want ErrNoValidation", err)
	}
}
