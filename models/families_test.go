package models_test

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"testing"

	"github.com/wardml/ward/models"
)

// pooledOf is the spec and cases of a pooled model over hospitals in the
// st-olaf shape: the hospital is one more input and feature, last.
func pooledOf(spec models.Spec, hs map[string]hospital) (models.Spec, models.Cases, models.Cases) {
	ps := spec
	ps.Hospital = "pooled"
	ps.Inputs = append(slices.Clone(spec.Inputs), models.Column{Name: models.HospitalColumn, Type: models.String})
	ps.Features = append(slices.Clone(spec.Features), models.Feature{Name: models.HospitalColumn, Kind: models.Categorical})
	ps.UnderRate, ps.Segments = nil, nil
	ids := slices.Sorted(func(yield func(string) bool) {
		for id := range hs {
			if !yield(id) {
				return
			}
		}
	})
	pick := func(before bool) models.Cases {
		return func(yield func(models.Case, error) bool) {
			for _, id := range ids {
				h := hs[id]
				for i, c := range h.cases {
					if h.admitted[i].Before(cutoff) != before {
						continue
					}
					row := append(slices.Clone(c.Row), models.Text(id))
					if !yield(models.Case{Row: row, Target: c.Target}, nil) {
						return
					}
				}
			}
		}
	}
	return ps, pick(true), pick(false)
}

// family fits one family for hospital "a" of a pool of two.
func fitFamily(t *testing.T, family string, lambdas []float64) (*models.Artifact, *models.Artifact, hospital) {
	return fitPoisoned(t, family, lambdas, 1)
}

// fitPoisoned fits as fitFamily, with every bill of the validation window
// (the outer one: the cases from cutoff) multiplied by poison.
func fitPoisoned(t *testing.T, family string, lambdas []float64, poison float64) (*models.Artifact, *models.Artifact, hospital) {
	t.Helper()
	spec, a := stOlaf(t)
	b := genHospital(spec, 3000, 2)
	for _, h := range []hospital{a, b} {
		for i := range h.cases {
			if !h.admitted[i].Before(cutoff) {
				h.cases[i].Target.Num *= poison
			}
		}
	}
	ps, ptrain, pvalid := pooledOf(spec, map[string]hospital{"a": a, "b": b})
	spec.Family = family
	if lambdas != nil {
		spec.Lambdas = lambdas
	}
	var prior *models.Artifact
	switch family {
	case models.FamilyRidgePooled, models.FamilyGBDTPooled:
		ps.Family = map[string]string{models.FamilyRidgePooled: models.FamilyRidge, models.FamilyGBDTPooled: models.FamilyGBDT}[family]
		var err error
		if prior, err = models.Fit(ps, ptrain, pvalid); err != nil {
			t.Fatal(err)
		}
		spec.Prior, spec.PriorLevel = prior, "a"
	}
	train, valid := a.split(cutoff)
	m, err := models.Fit(spec, train, valid)
	if err != nil {
		t.Fatalf("%s: %v", family, err)
	}
	return m, prior, a
}

func TestEveryFamilyIsDeterministicAndServesAsTrained(t *testing.T) {
	for _, family := range models.Families {
		t.Run(family, func(t *testing.T) {
			m, _, h := fitFamily(t, family, nil)
			again, _, _ := fitFamily(t, family, nil)
			data, err := m.Encode()
			if err != nil {
				t.Fatal(err)
			}
			data2, err := again.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(data, data2) {
				t.Fatal("two fits of the same data give different bytes")
			}
			if m.Family != family {
				t.Errorf("family %q, want %q", m.Family, family)
			}
			served, err := models.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			reenc, err := served.Encode()
			if err != nil || !bytes.Equal(reenc, data) {
				t.Fatalf("decoded and encoded again: not the same bytes (%v)", err)
			}
			_, valid := h.split(cutoff)
			var actual, predicted []float64
			for c := range valid {
				p1, err := m.Predict(nil, c.Row)
				if err != nil {
					t.Fatal(err)
				}
				p2, err := served.Predict(nil, c.Row)
				if err != nil {
					t.Fatal(err)
				}
				if math.Abs(p1.Value-p2.Value) > 1e-9*math.Abs(p1.Value) || math.Abs(p1.Calibrated-p2.Calibrated) > 1e-9*math.Abs(p1.Calibrated) {
					t.Fatalf("served %v, trained %v", p2, p1)
				}
				actual, predicted = append(actual, c.Target.Num), append(predicted, p2.Value)
			}
			got, want := models.Evaluate(actual, predicted).MAE, m.Metrics["validation"].MAE
			if math.Abs(got-want) > 1e-9*want {
				t.Errorf("served MAE %v, training reported %v", got, want)
			}
			if m.Metrics["inner"].Count == 0 || m.Training.InnerRows != m.Metrics["inner"].Count {
				t.Errorf("inner metrics %+v, inner rows %d", m.Metrics["inner"], m.Training.InnerRows)
			}
			if bytes.Contains(data, []byte(models.HospitalColumn)) || bytes.Contains(data, []byte(`"b"`)) {
				t.Error("the artifact names the pooled hospital feature or the other hospital")
			}
		})
	}
}

// The pooled gbdt reduced to a hospital predicts what the pooled model
// predicts for it, tree for tree, on rows whose levels the hospital knows.
func TestPooledForestReducesExactly(t *testing.T) {
	m, prior, h := fitFamily(t, models.FamilyGBDTPooled, nil)
	if len(m.Forest.Trees) == 0 || len(m.Forest.Trees) != len(prior.Forest.Trees) {
		t.Fatalf("%d trees, pooled %d", len(m.Forest.Trees), len(prior.Forest.Trees))
	}
	n := 0
	var s models.Sparse
	for _, c := range h.cases {
		p, err := m.Predict(&s, c.Row)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Unseen) > 0 {
			continue
		}
		q, err := prior.Predict(nil, append(slices.Clone(c.Row), models.Text("a")))
		if err != nil {
			t.Fatal(err)
		}
		if p.Transformed != q.Transformed {
			t.Fatalf("reduced %v, pooled %v", p.Transformed, q.Transformed)
		}
		n++
	}
	if n < len(h.cases)/2 {
		t.Fatalf("only %d of %d rows compared", n, len(h.cases))
	}
}

// With a huge penalty the residual ridge keeps only its intercept (never
// penalised): ridge-pooled is the pooled ridge restated on the hospital's
// encoder, moved by a constant.
func TestRidgePooledShrinksTowardThePooledModel(t *testing.T) {
	m, prior, h := fitFamily(t, models.FamilyRidgePooled, []float64{1e15})
	var s models.Sparse
	shift := math.NaN()
	for _, c := range h.cases[:500] {
		p, err := m.Predict(&s, c.Row)
		if err != nil {
			t.Fatal(err)
		}
		// A missing number is its feature's mean, which differs between
		// the pooled cases and the hospital's: restated, it moves.
		if len(p.Unseen) > 0 || slices.ContainsFunc(c.Row, func(v models.Value) bool { return v.Null }) {
			continue
		}
		q, err := prior.Predict(nil, append(slices.Clone(c.Row), models.Text("a")))
		if err != nil {
			t.Fatal(err)
		}
		d := p.Transformed - q.Transformed
		if math.IsNaN(shift) {
			shift = d
		}
		if math.Abs(d-shift) > 1e-6 {
			t.Fatalf("ridge-pooled at lambda 1e15: %v, pooled %v: apart by %v, and by %v on an earlier case", p.Transformed, q.Transformed, d, shift)
		}
	}
}

// Trees find a step and an interaction that a linear model cannot.
func TestGBDTLearnsWhatRidgeCannot(t *testing.T) {
	spec, h := stOlaf(t)
	col := map[string]int{}
	for i, c := range spec.Inputs {
		col[c.Name] = i
	}
	for i := range h.cases {
		r := h.cases[i].Row
		y := 8.0
		if los := r[col["planned_los"]]; los.Num > 6 {
			y += 1 // a tariff step
		}
		if r[col["ward_class"]].Str == "A" && r[col["specialty"]].Str == "oncology" {
			y += 1.5 // an interaction
		}
		if age := r[col["age"]]; !age.Null && age.Num > 75 {
			y += 0.7 // a cliff
		}
		y += 0.05 * math.Sin(float64(i))
		h.cases[i].Target = models.Number(math.Exp(y))
	}
	mae := func(family string) float64 {
		s := spec
		s.Family = family
		train, valid := h.split(cutoff)
		a, err := models.Fit(s, train, valid)
		if err != nil {
			t.Fatal(err)
		}
		return a.Metrics["validation"].MAE
	}
	ridge, gbdt := mae(models.FamilyRidge), mae(models.FamilyGBDT)
	if gbdt > 0.3*ridge {
		t.Errorf("gbdt MAE %v, ridge %v: want gbdt below 30%% of ridge", gbdt, ridge)
	}
}

// The outer window is read once, after every choice: poisoning its bills
// changes its figures and nothing else (penalty, trees, calibration, the
// inner figures a family is chosen by, every parameter).
func TestPoisonedValidationChangesNoChoice(t *testing.T) {
	for _, family := range models.Families {
		t.Run(family, func(t *testing.T) {
			clean, _, _ := fitPoisoned(t, family, nil, 1)
			poisoned, _, _ := fitPoisoned(t, family, nil, 1000)
			if clean.Metrics["validation"].MAE == poisoned.Metrics["validation"].MAE {
				t.Fatal("the poison did not reach the validation figures: the test cannot fail")
			}
			for _, a := range []*models.Artifact{clean, poisoned} {
				delete(a.Metrics, "validation")
				a.Version = ""
			}
			c, err := json.Marshal(clean)
			if err != nil {
				t.Fatal(err)
			}
			p, err := json.Marshal(poisoned)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(c, p) {
				t.Errorf("poisoning the validation window changed the model or its inner figures")
			}
		})
	}
}
