package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/store"
	"github.com/wardml/ward/pipelines/train"
	"github.com/wardml/ward/pipelines/train/traintest"
)

// quality: ward's model families against the Python references on the
// same data, in the same run: on the SPARCS development set (60 real
// hospitals, ward's own split of each, exported for Python), every
// family's case-weighted MAE beside xgboost's (and sklearn's pooled
// HistGradientBoosting), tuned the same way (an inner random quarter of
// the training part for early stopping and the learning rate, then a
// refit with the trees scaled to the cases); and on a million synthetic
// cases, the time ward's gbdt takes to train against xgboost's hist
// method on the same cores, by the same protocol.

var qualityFlags struct {
	sparcs, python string
	n              int
	skipSpeed      bool
	skipSPARCS     bool
}

func init() {
	register(&benchmark{
		Name:    "quality",
		Summary: "model families on the SPARCS development set vs xgboost and sklearn (MAE), and gbdt training on 1M cases vs xgboost hist (time)",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&qualityFlags.sparcs, "sparcs", "", "the SPARCS development set (default: shared/data/sparcs-2020-msk-dev.csv beside the checkout)")
			fs.StringVar(&qualityFlags.python, "python", "/usr/bin/python3", "a Python with xgboost and sklearn (Debian's python3-xgboost, python3-sklearn)")
			fs.IntVar(&qualityFlags.n, "n", 1_000_000, "synthetic training cases of the speed comparison")
			fs.BoolVar(&qualityFlags.skipSpeed, "skip-speed", false, "only the SPARCS comparison")
			fs.BoolVar(&qualityFlags.skipSPARCS, "skip-sparcs", false, "only the speed comparison")
		},
		Run: runQuality,
	})
}

func runQuality(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "ward-quality-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "reference.py")
	if err := os.WriteFile(script, []byte(qualityPython), 0o644); err != nil {
		return err
	}
	if !qualityFlags.skipSPARCS {
		if err := sparcsQuality(ctx, dir, script); err != nil {
			return err
		}
	}
	if qualityFlags.skipSpeed {
		return nil
	}
	return speedQuality(ctx, dir, script)
}

func findSPARCS() (string, error) {
	if qualityFlags.sparcs != "" {
		return qualityFlags.sparcs, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range 6 {
		p := filepath.Join(dir, "shared", "data", "sparcs-2020-msk-dev.csv")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		dir = filepath.Dir(dir)
	}
	return "", errors.New("the SPARCS development set is not found: give -sparcs FILE")
}

func sparcsQuality(ctx context.Context, dir, script string) error {
	csvPath, err := findSPARCS()
	if err != nil {
		return err
	}
	contracts, err := traintest.SPARCS(csvPath, dir, traintest.SPARCSFamilies)
	if err != nil {
		return err
	}
	s, err := store.Open(ctx, "sqlite:"+filepath.Join(dir, "ward.db"))
	if err != nil {
		return err
	}
	defer s.Close()
	hs, err := traintest.LoadGroup(s, contracts)
	if err != nil {
		return err
	}
	ids := make([]string, len(hs))
	for i, h := range hs {
		ids[i] = h.ID
	}
	start := time.Now()
	rs, err := train.Run(ctx, s, hs, ids)
	if err != nil {
		return err
	}
	wardTime := time.Since(start)
	sum, n := map[string]float64{}, map[string]float64{}
	shipped := map[string]int{}
	for _, r := range rs {
		if r.Err != nil {
			return r.Err
		}
		for _, c := range r.Candidates {
			if c.Validation == nil {
				return fmt.Errorf("%s: %s: %s", r.Hospital, c.Family, c.Error)
			}
			sum[c.Family] += c.Validation.MAE * float64(c.Validation.Count)
			n[c.Family] += float64(c.Validation.Count)
		}
		shipped[r.Family]++
		sum["chosen"] += r.Validation.MAE * float64(r.Validation.Count)
		n["chosen"] += float64(r.Validation.Count)
	}
	// ward's split of each hospital, exported for the references.
	data := filepath.Join(dir, "sparcs-split.csv")
	if err := exportSplit(ctx, s, hs, rs, data); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, qualityFlags.python, script, "sparcs", data)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("the Python reference (%s; Debian's python3-xgboost and python3-sklearn): %w", qualityFlags.python, err)
	}
	var ref map[string]float64
	if err := json.Unmarshal(out, &ref); err != nil {
		return fmt.Errorf("the Python reference printed %q: %w", out, err)
	}
	fmt.Printf("quality: SPARCS 2020 musculoskeletal development set, %d hospitals, ward's random quarter of each validated; case-weighted validation MAE\n\n", len(rs))
	fmt.Printf("%-14s %10s %8s %12s %s\n", "family", "ward", "shipped", "reference", "")
	refOf := map[string]string{models.FamilyRidge: "ridge", models.FamilyGBDT: "xgb", models.FamilyGBDTPooled: "xgb_pooled"}
	names := map[string]string{"ridge": "sklearn Ridge", "xgb": "xgboost hist", "xgb_pooled": "xgboost hist"}
	for _, f := range models.Families {
		r := ""
		if k, ok := refOf[f]; ok {
			r = fmt.Sprintf("%12.0f %s (%+.1f%%)", ref[k], names[k], 100*(sum[f]/n[f]/ref[k]-1))
		}
		fmt.Printf("%-14s %10.0f %8d %s\n", f, sum[f]/n[f], shipped[f], r)
	}
	chosen := sum["chosen"] / n["chosen"]
	fmt.Printf("%-14s %10.0f %8d %12.0f sklearn HistGradientBoosting, pooled (%+.1f%%)\n", "chosen", chosen, len(rs), ref["hgb_pooled"], 100*(chosen/ref["hgb_pooled"]-1))
	fmt.Printf("\nchosen vs ward's per-hospital ridge: %+.1f%% (target: at most -5%%)\n", 100*(chosen/(sum["ridge"]/n["ridge"])-1))
	fmt.Printf("chosen vs sklearn's pooled HistGradientBoosting figure 15,595 of the issue: %+.1f%% (target: at most +2%%)\n", 100*(chosen/15595-1))
	fmt.Printf("gbdt-pooled vs xgboost pooled, tuned the same way: %+.1f%% (target: at most +2%%)\n", 100*(sum["gbdt-pooled"]/n["gbdt-pooled"]/ref["xgb_pooled"]-1))
	fmt.Printf("ward train of the 60 hospitals, four families: %.1fs\n\n", wardTime.Seconds())
	return nil
}

// exportSplit writes each hospital's cases as the contract reads them,
// with the side of ward's split, re-drawn as train's random split draws
// it (checked against the result's counts and bills).
func exportSplit(ctx context.Context, s *store.Store, hs []*contract.Hospital, rs []*train.Result, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	cols := []string{"los", "age", "gender", "drg", "procedure", "payment", "severity", "medical_surgical"}
	fmt.Fprintf(f, "hospital,valid,total_charges,%s\n", strings.Join(cols, ","))
	for i, h := range hs {
		ds := s.Training(h)
		at := map[string]int{}
		for j, c := range ds.Columns {
			at[c.Name] = j
		}
		sp := h.Training.Split
		rng := rand.New(rand.NewPCG(uint64(sp.Seed), 0))
		valid, validSum := 0, 0.0
		for row, err := range ds.Rows(ctx) {
			if err != nil {
				return err
			}
			v := rng.Float64() < sp.Fraction
			y := row[at["total_charges"]].Num
			if v {
				valid++
				validSum += y
			}
			fields := []string{h.ID, map[bool]string{true: "1", false: "0"}[v], fmt.Sprint(y)}
			for _, c := range cols {
				x := row[at[c]]
				switch {
				case x.Null:
					fields = append(fields, "")
				case c == "los":
					fields = append(fields, fmt.Sprint(x.Num))
				default:
					fields = append(fields, "c"+x.Str)
				}
			}
			fmt.Fprintln(f, strings.Join(fields, ","))
		}
		want := 0.0
		for _, p := range rs[i].Points {
			if p.Validation {
				want += p.Actual
			}
		}
		if valid != rs[i].Split.ValidationCases || math.Abs(validSum-want) > 1e-6*want {
			return fmt.Errorf("%s: the exported split has %d validation cases (bills %.2f), ward's %d (%.2f): not the same split", h.ID, valid, validSum, rs[i].Split.ValidationCases, want)
		}
	}
	return f.Close()
}

// speedQuality times ward's gbdt and xgboost's hist on the same synthetic
// cases (those of bench fit), by the same protocol.
func speedQuality(ctx context.Context, dir, script string) error {
	n := qualityFlags.n
	spec := fitSpec()
	spec.Family = models.FamilyGBDT
	spec.GBDT = models.GBDT{LearningRates: []float64{0.1}, MaxTrees: 200, EarlyStop: 20}
	nv := n / 10
	// The same cases for xgboost: category codes and numbers, float64.
	bin := filepath.Join(dir, "synthetic.f64")
	if err := exportSynthetic(bin, n, nv); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, qualityFlags.python, script, "speed", bin, fmt.Sprint(n), fmt.Sprint(nv), fmt.Sprint(len(fitLevels)+fitNumeric))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("the Python reference: %w", err)
	}
	var ref map[string]float64
	if err := json.Unmarshal(out, &ref); err != nil {
		return fmt.Errorf("the Python reference printed %q: %w", out, err)
	}
	start := time.Now()
	a, err := models.Fit(spec, fitCases(n, 1), fitCases(nv, 2))
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	mae := a.Metrics["validation"].MAE
	fmt.Printf("quality: gbdt training on %d synthetic cases (bench fit's), learning rate 0.1, up to 200 trees of 31 leaves, early stopping on an inner fifth, refit; validated on %d\n\n", n, nv)
	fmt.Printf("%-34s %9s %7s %10s\n", "", "wall", "trees", "MAE")
	fmt.Printf("%-34s %8.1fs %7d %10.1f\n", "ward gbdt (pure Go)", secs, len(a.Forest.Trees), mae)
	fmt.Printf("%-34s %8.1fs %7.0f %10.1f\n", "xgboost hist (2 threads)", ref["seconds"], ref["trees"], ref["mae"])
	fmt.Printf("%-34s %8.2fx %7s %+9.1f%%\n", "ward / xgboost (target: < 3x, MAE +2%)", secs/ref["seconds"], "", 100*(mae/ref["mae"]-1))
	if secs > 3*ref["seconds"] {
		return fmt.Errorf("ward's gbdt took %.1fx xgboost's time, want under 3x", secs/ref["seconds"])
	}
	return nil
}

// exportSynthetic writes the training then validation cases of fitCases,
// row-major float64: the features (category codes, numbers), then the
// log bill.
func exportSynthetic(path string, n, nv int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	codes := make([]map[string]int, len(fitLevels))
	for i := range codes {
		codes[i] = map[string]int{}
	}
	buf := make([]float64, len(fitLevels)+fitNumeric+1)
	raw := make([]byte, 8*len(buf))
	for _, part := range []struct {
		n    int
		seed uint64
	}{{n, 1}, {nv, 2}} {
		for c := range fitCases(part.n, part.seed) {
			for i := range fitLevels {
				k, ok := codes[i][c.Row[i].Str]
				if !ok {
					k = len(codes[i])
					codes[i][c.Row[i].Str] = k
				}
				buf[i] = float64(k)
			}
			for j := range fitNumeric {
				buf[len(fitLevels)+j] = c.Row[len(fitLevels)+j].Num
			}
			buf[len(buf)-1] = math.Log(c.Target.Num)
			for i, x := range buf {
				binary.LittleEndian.PutUint64(raw[8*i:], math.Float64bits(x))
			}
			if _, err := f.Write(raw); err != nil {
				return err
			}
		}
	}
	return f.Close()
}

// qualityPython is the reference: xgboost's hist method and sklearn, tuned
// as ward tunes (an inner quarter of the training part, early stopping,
// learning rates 0.05 and 0.1, a refit with the trees scaled by the cases).
const qualityPython = `
import csv, json, sys, time
import numpy as np
import xgboost as xgb

def tuned(X, y, ft, seed, lrs, max_trees, early, nthread=2, frac=0.25):
    rng = np.random.default_rng(seed)
    held = rng.random(len(y)) < frac
    best = None
    for lr in lrs:
        params = {'tree_method': 'hist', 'eta': lr, 'max_depth': 0, 'max_leaves': 31, 'grow_policy': 'lossguide',
                  'min_child_weight': 20, 'lambda': 1, 'max_bin': 255, 'max_cat_to_onehot': 1, 'nthread': nthread}
        dt = xgb.DMatrix(X[~held], y[~held], feature_types=ft, enable_categorical=True)
        dv = xgb.DMatrix(X[held], y[held], feature_types=ft, enable_categorical=True)
        b = xgb.train(params, dt, max_trees, evals=[(dv, 'v')], early_stopping_rounds=early, verbose_eval=False)
        score = b.best_score
        if best is None or score < best[0]:
            best = (score, lr, b.best_iteration + 1, params)
    _, lr, trees, params = best
    trees = max(1, int(round(trees * len(y) / (~held).sum())))
    return xgb.train(params, xgb.DMatrix(X, y, feature_types=ft, enable_categorical=True), trees), trees

def sparcs(path):
    rows = list(csv.DictReader(open(path)))
    cats = ['age', 'gender', 'drg', 'procedure', 'payment', 'severity', 'medical_surgical', 'hospital']
    codes = {c: {v: i for i, v in enumerate(sorted(set(r[c] for r in rows)))} for c in cats}
    X = np.zeros((len(rows), 1 + len(cats)))
    X[:, 0] = [np.log1p(float(r['los'])) if r['los'] else np.nan for r in rows]
    for j, c in enumerate(cats):
        X[:, j + 1] = [codes[c][r[c]] for r in rows]
    charges = np.array([float(r['total_charges']) for r in rows])
    y = np.log(charges)
    valid = np.array([r['valid'] == '1' for r in rows])
    hosp = np.array([r['hospital'] for r in rows])
    ft = ['q'] + ['c'] * len(cats)
    out = {}
    tr = ~valid
    m, _ = tuned(X[tr], y[tr], ft, 1, [0.05, 0.1], 1000, 30)
    p = m.predict(xgb.DMatrix(X[valid], feature_types=ft, enable_categorical=True))
    out['xgb_pooled'] = float(np.mean(np.abs(np.exp(p) - charges[valid])))
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import RidgeCV
    h = HistGradientBoostingRegressor(categorical_features=[False] + [True] * len(cats), random_state=0)
    h.fit(X[tr], y[tr])
    out['hgb_pooled'] = float(np.mean(np.abs(np.exp(h.predict(X[valid])) - charges[valid])))
    err_x, err_r, cnt = 0.0, 0.0, 0
    for hid in sorted(set(hosp)):
        t = tr & (hosp == hid)
        v = valid & (hosp == hid)
        m, _ = tuned(X[t, :-1], y[t], ft[:-1], 1, [0.05, 0.1], 1000, 30, nthread=1)
        p = m.predict(xgb.DMatrix(X[v, :-1], feature_types=ft[:-1], enable_categorical=True))
        err_x += np.abs(np.exp(p) - charges[v]).sum()
        # one-hot ridge, penalty by cross-validation, as sklearn's RidgeCV
        oh = lambda M: np.column_stack([M[:, :1]] + [(M[:, j:j+1] == np.unique(X[t, j])).astype(float) for j in range(1, len(cats))])
        r = RidgeCV(alphas=[0.01, 0.1, 1, 10, 100, 1000]).fit(oh(X[t]), y[t])
        err_r += np.abs(np.exp(r.predict(oh(X[v]))) - charges[v]).sum()
        cnt += v.sum()
    out['xgb'] = err_x / cnt
    out['ridge'] = err_r / cnt
    print(json.dumps(out))

def speed(path, n, nv, f):
    a = np.fromfile(path, dtype='<f8').reshape(n + nv, f + 1)
    ft = ['c'] * 8 + ['q'] * (f - 8)
    X, y = a[:n, :f], a[:n, f]
    start = time.time()
    m, trees = tuned(X, y, ft, 1, [0.1], 200, 20, frac=0.2)
    secs = time.time() - start
    p = m.predict(xgb.DMatrix(a[n:, :f], feature_types=ft, enable_categorical=True))
    mae = float(np.mean(np.abs(np.exp(p) - np.exp(a[n:, f]))))
    print(json.dumps({'seconds': secs, 'trees': trees, 'mae': mae}))

if sys.argv[1] == 'sparcs':
    sparcs(sys.argv[2])
else:
    speed(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
`
