package models

import (
	"math"
	"slices"
	"testing"
)

func TestPSIByHand(t *testing.T) {
	// (0.25 - 0.5) ln(0.25/0.5) + (0.75 - 0.5) ln(0.75/0.5)
	want := 0.25*math.Ln2 + 0.25*math.Log(1.5)
	if got := PSI([]float64{0.5, 0.5}, []float64{0.25, 0.75}); math.Abs(got-want) > 1e-15 {
		t.Errorf("PSI %v, want %v", got, want)
	}
	if got := PSI([]float64{0.1, 0.2, 0.7}, []float64{0.1, 0.2, 0.7}); got != 0 {
		t.Errorf("PSI of identical shares %v, want 0", got)
	}
	// An empty bin counts as 1e-4, not as an infinite log.
	want = (0.5-1e-4)*math.Log(0.5/1e-4) + (0.5-1)*math.Log(0.5)
	if got := PSI([]float64{0, 1}, []float64{0.5, 0.5}); math.Abs(got-want) > 1e-12 {
		t.Errorf("PSI with an empty bin %v, want %v", got, want)
	}
	for _, c := range []struct {
		psi  float64
		band string
	}{{0, Stable}, {0.0999, Stable}, {0.1, Watch}, {0.25, Watch}, {0.2501, Act}, {3, Act}} {
		if got := Band(c.psi); got != c.band {
			t.Errorf("Band(%v) = %s, want %s", c.psi, got, c.band)
		}
	}
}

func TestSampleDeciles(t *testing.T) {
	// 1..1000: exact deciles 100, 200, ..., 900, a tenth in each bin.
	var s sample
	for i := 1; i <= 1000; i++ {
		s.add(float64(i))
	}
	edges, shares := s.deciles()
	if !slices.Equal(edges, []float64{100, 200, 300, 400, 500, 600, 700, 800, 900}) {
		t.Errorf("edges %v", edges)
	}
	for _, sh := range shares {
		if math.Abs(sh-0.1) > 1e-12 {
			t.Errorf("shares %v, want a tenth each", shares)
			break
		}
	}
	// Past the cap the sample thins to every 2^k-th value, and stays fair.
	var big sample
	n := 5*sampleCap + 123
	for i := range n {
		big.add(float64(i))
	}
	if len(big.values) > 2*sampleCap || big.stride != 4 {
		t.Errorf("sample of %d values: %d kept, stride %d; want at most %d and stride 4", n, len(big.values), big.stride, 2*sampleCap)
	}
	edges, _ = big.deciles()
	for q, e := range edges {
		if want := float64(q+1) / 10 * float64(n); math.Abs(e-want) > 8 {
			t.Errorf("decile %d of 0..%d: %v, want about %v", q+1, n-1, e, want)
		}
	}
	// Ties collapse edges: a feature that is mostly 0.
	var ties sample
	for i := range 100 {
		ties.add(float64(max(0, i-90)))
	}
	edges, shares = ties.deciles()
	if !slices.Equal(edges, []float64{0}) || shares[0] != 0.91 {
		t.Errorf("edges %v shares %v, want [0] with 0.91 at or below it", edges, shares)
	}
}
