package synth

import (
	"maps"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"gonum.org/v1/gonum/mat"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
)

// The generator exists so that the two findings of DESIGN.md show up in its
// data. This test checks them the way training will: a ridge regression of
// the log bill on the features each contract declares, read from the
// files through the contracts.
//
//	(a) per hospital, a model of its own beats one pooled model with the
//	    hospital as a feature, on the hospital's last three months;
//	(b) a random split's MAE is below the time split's (drift, and
//	    returning patients);
//	(c) returning patients carry a persistent effect: the residuals of a
//	    patient's cases are correlated (what leaks in a random split to any
//	    model flexible enough to recognise the patient).
func TestFindings(t *testing.T) {
	if testing.Short() {
		t.Skip("fits models on the whole default group")
	}
	out, _ := generate(t, WithEncryption("none"), WithDirt(0))
	hs, err := contract.LoadAll(filepath.Join(out, "hospitals"))
	if err != nil {
		t.Fatal(err)
	}
	type split struct{ train, valid [][]models.Value }
	splits := map[string]split{}
	var cols map[string]int
	var pooledTrain [][]models.Value
	for _, h := range hs {
		ds, rejected := joinCases(t, h, readExtracts(t, out, h))
		if rejected != 0 {
			t.Fatalf("%s: %d rows rejected in clean data", h.ID, rejected)
		}
		if cols != nil && !maps.Equal(cols, ds.cols) {
			t.Fatalf("%s: input columns differ from the other hospitals'", h.ID)
		}
		cols = ds.cols
		at, status, bill := cols["admitted_at"], cols["status"], cols["total_bill"]
		last := 0.0
		for _, r := range ds.rows {
			last = max(last, r[at].Num)
		}
		// Validation: the last months, as the contract's split says.
		lastMonth := time.Unix(int64(last)*86400, 0).UTC()
		cut := models.DateValue(time.Date(lastMonth.Year(), lastMonth.Month()-time.Month(h.Training.Split.Validation.Months-1), 1, 0, 0, 0, 0, time.UTC)).Num
		var s split
		for _, r := range ds.rows {
			// The contract's cleaning: no cancelled cases, no missing bills.
			if r[status].Str == "cancelled" || r[bill].Null {
				continue
			}
			if r[at].Num >= cut {
				s.valid = append(s.valid, r)
			} else {
				s.train = append(s.train, r)
			}
		}
		splits[h.ID] = s
		pooledTrain = append(pooledTrain, s.train...)
	}

	features := hs[0].Training.Features
	pooled := fit(cols, pooledTrain, append(slices.Clone(features), models.Feature{Name: "hospital", Column: "hospital", Kind: models.Categorical, MinCount: 1}))
	for _, h := range hs {
		s := splits[h.ID]
		own := fit(cols, s.train, h.Training.Features)
		maeOwn, maePooled := own.mae(s.valid), pooled.mae(s.valid)

		all := append(slices.Clone(s.train), s.valid...)
		r := rand.New(rand.NewPCG(1, 2))
		r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
		nv := int(float64(len(all)) * 0.2)
		maeRandom := fit(cols, all[nv:], h.Training.Features).mae(all[:nv])

		icc := own.residualCorrelation(s.train)
		t.Logf("%-10s %3d features, pooled %3d | train %5d valid %4d | MAE own %6.0f, pooled %6.0f (%+.1f%%) | random split %6.0f (%+.1f%% vs time) | patient residual corr %.2f",
			h.ID, own.enc.width, pooled.enc.width, len(s.train), len(s.valid), maeOwn, maePooled, 100*(maePooled/maeOwn-1), maeRandom, 100*(maeRandom/maeOwn-1), icc)
		if maeOwn >= maePooled*0.95 {
			t.Errorf("%s: per-hospital MAE %.0f is not clearly below the pooled model's %.0f", h.ID, maeOwn, maePooled)
		}
		if maeRandom >= maeOwn*0.97 {
			t.Errorf("%s: random-split MAE %.0f is not clearly below the time-split MAE %.0f", h.ID, maeRandom, maeOwn)
		}
		if icc < 0.2 {
			t.Errorf("%s: residuals of a patient's cases correlate at %.2f; want a persistent patient effect (>= 0.2)", h.ID, icc)
		}
	}
}

// model is a ridge regression of the log bill on encoded features.
type model struct {
	enc  *encoder
	beta []float64
}

// encoder turns a joined row into sparse features as the contract declares
// them: numeric standardised (missing: the mean), categorical one-hot with
// an "other" level for rare and unseen values, date parts one-hot.
type encoder struct {
	cols     map[string]int
	features []models.Feature
	mean, sd map[string]float64
	levels   map[string]map[string]int
	width    int // including the intercept at 0
}

func newEncoder(cols map[string]int, rows [][]models.Value, features []models.Feature) *encoder {
	e := &encoder{cols: cols, features: features, mean: map[string]float64{}, sd: map[string]float64{}, levels: map[string]map[string]int{}, width: 1}
	for _, f := range features {
		j := cols[f.Column]
		switch f.Kind {
		case models.Numeric:
			var sum, sq, n float64
			for _, r := range rows {
				if v := r[j]; !v.Null {
					x := transform(f.Transform, v.Num)
					sum, sq, n = sum+x, sq+x*x, n+1
				}
			}
			e.mean[f.Name] = sum / n
			e.sd[f.Name] = math.Sqrt(max(sq/n-(sum/n)*(sum/n), 1e-12))
			e.width++
		default:
			counts := map[string]int{}
			for _, r := range rows {
				for _, k := range keys(f, r[j]) {
					counts[k]++
				}
			}
			lv := map[string]int{"\x00other": e.width}
			e.width++
			names := slices.Sorted(maps.Keys(counts))
			for _, k := range names {
				if counts[k] >= max(1, f.MinCount) {
					lv[k] = e.width
					e.width++
				}
			}
			e.levels[f.Name] = lv
		}
	}
	return e
}

func transform(t string, x float64) float64 {
	switch t {
	case models.Log:
		return math.Log(x)
	case models.Log1p:
		return math.Log1p(x)
	}
	return x
}

// keys returns the levels of a categorical or date feature for a value
// (one per date part, named by the part).
func keys(f models.Feature, v models.Value) []string {
	if f.Kind == models.Categorical {
		if v.Null {
			return []string{"\x00missing"}
		}
		return []string{v.Str}
	}
	if v.Null {
		return nil
	}
	d := v.Time(models.Date)
	var out []string
	for _, p := range f.Parts {
		var x int
		switch p {
		case "year":
			x = d.Year()
		case "quarter":
			x = (int(d.Month())-1)/3 + 1
		case "month":
			x = int(d.Month())
		case "week":
			_, x = d.ISOWeek()
		case "dow":
			x = int(d.Weekday())
		case "dom":
			x = d.Day()
		}
		out = append(out, p+"="+strconv.Itoa(x))
	}
	return out
}

func (e *encoder) encode(r []models.Value) (idx []int, val []float64) {
	idx, val = append(idx, 0), append(val, 1)
	col := 1
	for _, f := range e.features {
		v := r[e.cols[f.Column]]
		if f.Kind == models.Numeric {
			x := 0.0
			if !v.Null {
				x = (transform(f.Transform, v.Num) - e.mean[f.Name]) / e.sd[f.Name]
			}
			idx, val = append(idx, col), append(val, x)
			col++
			continue
		}
		lv := e.levels[f.Name]
		for _, k := range keys(f, v) {
			j, ok := lv[k]
			if !ok {
				j = lv["\x00other"]
			}
			idx, val = append(idx, j), append(val, 1)
		}
	}
	return idx, val
}

// fit solves the ridge normal equations (lambda 1, intercept unpenalised),
// accumulated from sparse rows: each row has a dozen non-zeros.
func fit(cols map[string]int, rows [][]models.Value, features []models.Feature) *model {
	e := newEncoder(cols, rows, features)
	bill := cols["total_bill"]
	n := e.width
	xtx := make([]float64, n*n)
	xty := make([]float64, n)
	for _, r := range rows {
		y := math.Log(r[bill].Num)
		idx, val := e.encode(r)
		for a, i := range idx {
			xty[i] += val[a] * y
			for b, j := range idx {
				xtx[i*n+j] += val[a] * val[b]
			}
		}
	}
	for i := 1; i < n; i++ {
		xtx[i*n+i]++
	}
	var ch mat.Cholesky
	if !ch.Factorize(mat.NewSymDense(n, xtx)) {
		panic("ridge normal equations are not positive definite")
	}
	var beta mat.VecDense
	if err := ch.SolveVecTo(&beta, mat.NewVecDense(n, xty)); err != nil {
		panic(err)
	}
	return &model{enc: e, beta: beta.RawVector().Data}
}

func (m *model) predictLog(r []models.Value) float64 {
	idx, val := m.enc.encode(r)
	s := 0.0
	for a, i := range idx {
		s += m.beta[i] * val[a]
	}
	return s
}

func (m *model) residual(r []models.Value) float64 {
	return math.Log(r[m.enc.cols["total_bill"]].Num) - m.predictLog(r)
}

// mae is the mean absolute error of the predicted bill, in money.
func (m *model) mae(rows [][]models.Value) float64 {
	bill := m.enc.cols["total_bill"]
	sum := 0.0
	for _, r := range rows {
		sum += math.Abs(math.Exp(m.predictLog(r)) - r[bill].Num)
	}
	return sum / float64(len(rows))
}

// residualCorrelation is the correlation of the log-bill residuals of
// consecutive cases of the same patient.
func (m *model) residualCorrelation(rows [][]models.Value) float64 {
	pid := m.enc.cols["patient_id"]
	last := map[string]float64{}
	var xs, ys []float64
	for _, r := range rows {
		res := m.residual(r)
		p := r[pid].Str
		if prev, ok := last[p]; ok {
			xs, ys = append(xs, prev), append(ys, res)
		}
		last[p] = res
	}
	return correlation(xs, ys)
}

func correlation(xs, ys []float64) float64 {
	n := float64(len(xs))
	var sx, sy, sxx, syy, sxy float64
	for i := range xs {
		sx, sy = sx+xs[i], sy+ys[i]
		sxx, syy, sxy = sxx+xs[i]*xs[i], syy+ys[i]*ys[i], sxy+xs[i]*ys[i]
	}
	return (sxy/n - sx/n*sy/n) / math.Sqrt((sxx/n-sx/n*sx/n)*(syy/n-sy/n*sy/n))
}
