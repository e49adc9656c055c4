package models_test

import (
	"testing"

	"github.com/wardml/ward/models"
)

// BenchmarkPredict: one row through the ridge and through a gbdt of about
// 500 trees (go test -bench Predict ./models).
func BenchmarkPredict(b *testing.B) {
	spec, h := stOlaf(&testing.T{})
	for _, family := range []string{models.FamilyRidge, models.FamilyGBDT} {
		s := spec
		s.Family = family
		s.GBDT = models.GBDT{LearningRates: []float64{0.01}, MaxTrees: 400, EarlyStop: 400}
		train, valid := h.split(cutoff)
		a, err := models.Fit(s, train, valid)
		if err != nil {
			b.Fatal(err)
		}
		row := h.cases[0].Row
		name := family
		if a.Forest != nil {
			b.Logf("gbdt: %d trees", len(a.Forest.Trees))
		}
		b.Run(name, func(b *testing.B) {
			var sp models.Sparse
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Predict(&sp, row); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
