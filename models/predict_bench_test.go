package models_test

import (
	"testing"
	"time"

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

// BenchmarkTrees: the trees' part of a prediction (the row's tree
// features, ranked, and the trees), the same row again and again (…1) or
// 64 rows in turn (…64), walked by add, one compiled tree at a time
// (single), or the straightforward way (walk). They take turns, 100 rows
// at a time, and each reports its best time per row: on a shared machine
// the least disturbed.
func BenchmarkTrees(b *testing.B) {
	spec, h := stOlaf(&testing.T{})
	spec.Family = models.FamilyGBDT
	spec.GBDT = models.GBDT{LearningRates: []float64{0.01}, MaxTrees: 400, EarlyStop: 400}
	train, valid := h.split(cutoff)
	a, err := models.Fit(spec, train, valid)
	if err != nil {
		b.Fatal(err)
	}
	rows := make([][]models.Value, 64)
	for i := range rows {
		rows[i] = h.cases[i*7].Row
	}
	var sp models.Sparse
	modes := []string{"add", "single", "walk"}
	for _, row := range rows {
		want, err := models.TreeSum(a, &sp, row, "walk")
		if err != nil {
			b.Fatal(err)
		}
		for _, mode := range modes {
			if got, _ := models.TreeSum(a, &sp, row, mode); got != want {
				b.Fatalf("%s: %v, want %v", mode, got, want)
			}
		}
	}
	best := make([]time.Duration, 2*len(modes))
	for i := range best {
		best[i] = time.Hour
	}
	for b.Loop() {
		for j := range best {
			mode, many := modes[j/2], j%2 == 1
			start := time.Now()
			for k := range 100 {
				row := rows[0]
				if many {
					row = rows[k&63]
				}
				models.TreeSum(a, &sp, row, mode)
			}
			best[j] = min(best[j], time.Since(start)/100)
		}
	}
	for j := range best {
		rows := "1"
		if j%2 == 1 {
			rows = "64"
		}
		b.ReportMetric(float64(best[j].Nanoseconds()), modes[j/2]+rows+"-ns/row")
	}
}
