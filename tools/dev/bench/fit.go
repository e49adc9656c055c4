package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"gonum.org/v1/gonum/mat"

	"github.com/wardml/ward/models"
)

// fit: ward's streaming sparse ridge against the textbook dense solve of
// the same design matrix, on a million synthetic cases. Each side runs in
// a child process of its own, so that its peak memory is its own.

var fitFlags struct {
	n     int
	child string
}

func init() {
	register(&benchmark{
		Name:    "fit",
		Summary: "ridge on 1M cases: ward's sparse streaming fit vs a dense normal-equation solve (gonum mat), time and peak memory",
		Flags: func(fs *flag.FlagSet) {
			fs.IntVar(&fitFlags.n, "n", 1_000_000, "training cases")
			fs.StringVar(&fitFlags.child, "child", "", "internal: run one side (sparse, dense, fit) and print its figures")
		},
		Run: runFit,
	})
}

// Levels of the 8 categorical features: 400 in all.
var fitLevels = []int{150, 90, 60, 40, 25, 15, 12, 8}

const fitNumeric = 4

// fitSpec is the contract of the synthetic hospital.
func fitSpec() models.Spec {
	var inputs []models.Column
	var features []models.Feature
	for i := range fitLevels {
		name := fmt.Sprintf("cat%d", i)
		inputs = append(inputs, models.Column{Name: name, Type: models.String, Required: true})
		features = append(features, models.Feature{Name: name, Kind: models.Categorical, MinCount: 20})
	}
	for i := range fitNumeric {
		name := fmt.Sprintf("num%d", i)
		inputs = append(inputs, models.Column{Name: name, Type: models.Float})
		f := models.Feature{Name: name, Kind: models.Numeric}
		if i == 1 {
			f.Transform = models.Log1p
		}
		features = append(features, f)
	}
	for i := range inputs {
		if err := inputs[i].Prepare(); err != nil {
			panic(err)
		}
	}
	return models.Spec{
		Hospital: "bench", Inputs: inputs, Features: features,
		Target: "bill", TargetTransform: models.Log, Lambdas: []float64{1}, MinRows: 200,
		Lineage: models.Lineage{
			Files:    []models.File{{Name: "bench/cases.csv", SHA256: strings.Repeat("0", 64)}},
			Contract: strings.Repeat("0", 64), Ward: "bench",
		},
	}
}

// fitCases generates n cases on the fly, the same for the same seed: a
// pass never holds more than one row, which it reuses.
func fitCases(n int, seed uint64) models.Cases {
	truth := rand.New(rand.NewPCG(42, 42))
	names := make([][]string, len(fitLevels))
	effects := make([][]float64, len(fitLevels))
	for i, l := range fitLevels {
		for k := range l {
			names[i] = append(names[i], fmt.Sprintf("c%d-%03d", i, k))
			effects[i] = append(effects[i], 0.2*truth.NormFloat64())
		}
	}
	return func(yield func(models.Case, error) bool) {
		rng := rand.New(rand.NewPCG(seed, 1))
		row := make([]models.Value, len(fitLevels)+fitNumeric)
		for range n {
			y := 8.0
			for i, l := range fitLevels {
				u := rng.Float64()
				k := int(u * u * float64(l)) // skewed: low levels are common
				row[i] = models.Text(names[i][k])
				y += effects[i][k]
			}
			age := float64(rng.IntN(100))
			los := math.Floor(rng.ExpFloat64() * 4)
			x2, x3 := rng.NormFloat64(), rng.Float64()
			row[len(fitLevels)] = models.Number(age)
			row[len(fitLevels)+1] = models.Number(los)
			row[len(fitLevels)+2] = models.Number(x2)
			row[len(fitLevels)+3] = models.Number(x3)
			y += 0.01*age + 0.3*math.Log1p(los) + 0.1*x2 - 0.2*x3 + 0.3*rng.NormFloat64()
			if !yield(models.Case{Row: row, Target: models.Number(math.Exp(y))}, nil) {
				return
			}
		}
	}
}

// fitResult is what a child reports.
type fitResult struct {
	Seconds   float64   `json:"seconds"`
	CPU       float64   `json:"cpu"`
	Peak      int64     `json:"peak"`
	Intercept float64   `json:"intercept"`
	Coef      []float64 `json:"coef"`
}

func runFit(ctx context.Context) error {
	if fitFlags.child != "" {
		return fitChild(fitFlags.child, fitFlags.n)
	}
	n := fitFlags.n
	spec := fitSpec()
	fmt.Printf("fit: %d cases, %d categorical features (%d levels) + %d numeric, target log(bill), lambda 1\n",
		n, len(fitLevels), sum(fitLevels), fitNumeric)
	results := map[string]fitResult{}
	for _, side := range []string{"sparse", "dense", "fit"} {
		r, err := fitRun(ctx, side, n)
		if err != nil {
			return err
		}
		results[side] = r
	}
	sparse, dense, full := results["sparse"], results["dense"], results["fit"]
	width := len(sparse.Coef)
	diff := relDiff(append([]float64{sparse.Intercept}, sparse.Coef...), append([]float64{dense.Intercept}, dense.Coef...))
	fmt.Printf("encoded columns: %d (at most %d of them not zero in a row)\n\n", width, len(spec.Features))
	row := func(name string, r fitResult) {
		fmt.Printf("%-50s %8.2fs %8.2fs %11s\n", name, r.Seconds, r.CPU, mib(r.Peak))
	}
	fmt.Printf("%-50s %9s %9s %11s\n", "", "wall", "cpu", "peak RSS")
	row("ward: encoder + sparse Gram + Cholesky", sparse)
	row("dense: encoder + X (n x p) + X'X (gonum) + Cholesky", dense)
	fmt.Printf("%-50s %8.1fx %8.1fx %10.1fx\n", "dense / ward (target: ward at least 5x faster)",
		dense.Seconds/sparse.Seconds, dense.CPU/sparse.CPU, float64(dense.Peak)/float64(sparse.Peak))
	row(fmt.Sprintf("ward: models.Fit, + %d validation cases", n/10), full)
	fmt.Printf("%-50s %31s\n", "", "target: < 512.0 MiB")
	fmt.Printf("\nsparse and dense solutions agree to %.1e (relative)\n", diff)
	switch {
	case dense.CPU/sparse.CPU < 5:
		return fmt.Errorf("sparse fit only %.1fx faster than dense (cpu), want at least 5x", dense.CPU/sparse.CPU)
	case full.Peak >= 512<<20:
		return fmt.Errorf("ward's fit peaks at %s, want under 512 MiB", mib(full.Peak))
	case diff > 1e-9:
		return fmt.Errorf("sparse and dense solutions differ by %.1e", diff)
	}
	return nil
}

// fitRun re-runs this program as a child that runs one side.
func fitRun(ctx context.Context, side string, n int) (fitResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return fitResult{}, err
	}
	cmd := exec.CommandContext(ctx, exe, "fit", "-child", side, "-n", fmt.Sprint(n))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fitResult{}, fmt.Errorf("%s side: %w", side, err)
	}
	var r fitResult
	if err := json.Unmarshal(out, &r); err != nil {
		return fitResult{}, fmt.Errorf("%s side printed %q: %w", side, out, err)
	}
	return r, nil
}

func fitChild(side string, n int) error {
	spec := fitSpec()
	start := time.Now()
	var r fitResult
	var err error
	switch side {
	case "sparse":
		r, err = fitSparse(spec, n)
	case "dense":
		r, err = fitDense(spec, n)
	case "fit":
		var a *models.Artifact
		a, err = models.Fit(spec, fitCases(n, 1), fitCases(n/10, 2))
		if err == nil {
			r.Intercept = a.Intercept
			for _, c := range a.Coefficients {
				r.Coef = append(r.Coef, c.Value)
			}
		}
	default:
		err = fmt.Errorf("unknown side %q", side)
	}
	if err != nil {
		return err
	}
	r.Seconds = time.Since(start).Seconds()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return err
	}
	r.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	if r.Peak, err = peakRSS(); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

// fitEncoder is the pass both sides share: fitting the encoder.
func fitEncoder(spec models.Spec, n int) (*models.Encoder, error) {
	fit, err := models.NewEncoderFit(spec.Inputs, spec.Features)
	if err != nil {
		return nil, err
	}
	for c := range fitCases(n, 1) {
		if err := fit.Add(c.Row); err != nil {
			return nil, err
		}
	}
	return fit.Encoder()
}

func fitSparse(spec models.Spec, n int) (fitResult, error) {
	enc, err := fitEncoder(spec, n)
	if err != nil {
		return fitResult{}, err
	}
	g := models.NewGram(enc.Names())
	var s models.Sparse
	for c := range fitCases(n, 1) {
		if err := enc.Encode(&s, c.Row); err != nil {
			return fitResult{}, err
		}
		t, _ := models.Transform(models.Log, c.Target.Num)
		g.Add(&s, t)
	}
	r, err := g.Solve(spec.Lambdas[0])
	return fitResult{Intercept: r.Intercept, Coef: r.Coef}, err
}

// fitDense is the textbook way: the whole design matrix in memory, X'X
// by a dense symmetric rank-k update, centred, solved by Cholesky.
func fitDense(spec models.Spec, n int) (fitResult, error) {
	enc, err := fitEncoder(spec, n)
	if err != nil {
		return fitResult{}, err
	}
	p := enc.Width()
	x := mat.NewDense(n, p, nil)
	y := mat.NewVecDense(n, nil)
	var s models.Sparse
	i := 0
	for c := range fitCases(n, 1) {
		if err := enc.Encode(&s, c.Row); err != nil {
			return fitResult{}, err
		}
		for k, j := range s.Index {
			x.Set(i, j, s.Value[k])
		}
		t, _ := models.Transform(models.Log, c.Target.Num)
		y.SetVec(i, t)
		i++
	}
	var xtx mat.SymDense
	xtx.SymOuterK(1, x.T())
	var xty mat.VecDense
	xty.MulVec(x.T(), y)
	sums := make([]float64, p)
	for j := range p {
		sums[j] = mat.Sum(x.ColView(j))
	}
	ysum := mat.Sum(y)
	nf := float64(n)
	a := mat.NewSymDense(p, nil)
	c := mat.NewVecDense(p, nil)
	for j := range p {
		for k := j; k < p; k++ {
			a.SetSym(j, k, xtx.At(j, k)-sums[j]*sums[k]/nf)
		}
		a.SetSym(j, j, a.At(j, j)+spec.Lambdas[0])
		c.SetVec(j, xty.AtVec(j)-sums[j]*ysum/nf)
	}
	var chol mat.Cholesky
	if !chol.Factorize(a) {
		return fitResult{}, errors.New("dense: X'X + lambda I is not positive definite")
	}
	var b mat.VecDense
	if err := chol.SolveVecTo(&b, c); err != nil {
		return fitResult{}, err
	}
	r := fitResult{Intercept: ysum / nf, Coef: make([]float64, p)}
	for j := range p {
		r.Coef[j] = b.AtVec(j)
		r.Intercept -= r.Coef[j] * sums[j] / nf
	}
	return r, nil
}

func relDiff(a, b []float64) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var num, den float64
	for i := range a {
		num += (a[i] - b[i]) * (a[i] - b[i])
		den += b[i] * b[i]
	}
	return math.Sqrt(num / den)
}

func sum(xs []int) int {
	t := 0
	for _, x := range xs {
		t += x
	}
	return t
}
