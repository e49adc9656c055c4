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
// features, ranked, and the trees), the same row again and again (…1), 64
// rows in turn (…64), or 64 rows in turn with the caches flushed before
// each (…cold, as a server meets a row: between requests, the network
// stack and the client have used the caches), by the scorer (quick),
// walked by add, one compiled tree at a time (single), or the
// straightforward way (walk). They take turns, 100 rows at a time, and
// each reports its best time per row: on a shared machine the least
// disturbed.
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
	modes := []string{"quick", "add", "single", "walk"}
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
	variants := []string{"1", "64", "cold"}
	junk := make([]byte, 16<<20) // beyond the caches
	best := make([]time.Duration, len(variants)*len(modes))
	for i := range best {
		best[i] = time.Hour
	}
	for b.Loop() {
		for j := range best {
			mode, variant := modes[j/len(variants)], variants[j%len(variants)]
			var took time.Duration
			for k := range 100 {
				row := rows[0]
				if variant != "1" {
					row = rows[k&63]
				}
				if variant == "cold" {
					for i := 0; i < len(junk); i += 64 {
						junk[i]++
					}
				}
				start := time.Now()
				models.TreeSum(a, &sp, row, mode)
				took += time.Since(start)
			}
			best[j] = min(best[j], took/100)
		}
	}
	for j := range best {
		b.ReportMetric(float64(best[j].Nanoseconds()), modes[j/len(variants)]+variants[j%len(variants)]+"-ns/row")
	}
}
