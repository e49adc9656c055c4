package models_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/wardml/ward/models"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-12*math.Max(1, math.Abs(b)) }

func TestMetricsByHand(t *testing.T) {
	actual := []float64{100, 200, 300, 400}
	predicted := []float64{110, 180, 300, 500}
	m := models.Evaluate(actual, predicted)
	// Errors +10, -20, 0, +100; APEs 0.1, 0.1, 0, 0.25.
	if m.Count != 4 || !near(m.MAE, 32.5) || !near(m.RMSE, math.Sqrt(2625)) || !near(m.UnderRate, 0.25) {
		t.Errorf("got %+v, want count 4, MAE 32.5, RMSE %v, under rate 0.25", m, math.Sqrt(2625))
	}
	if m.MAPE == nil || m.MedianAPE == nil || !near(*m.MAPE, 0.1125) || !near(*m.MedianAPE, 0.1) {
		t.Errorf("MAPE %v median APE %v, want 0.1125 and 0.1", m.MAPE, m.MedianAPE)
	}
	odd := models.Evaluate([]float64{10, 20, 40}, []float64{11, 30, 40})
	if odd.MedianAPE == nil || !near(*odd.MedianAPE, 0.1) {
		t.Errorf("median APE of 0.1, 0.5, 0: got %v, want 0.1", odd.MedianAPE)
	}
	// An actual of 0 has no percentage error: MAPE and its median are absent.
	zero := models.Evaluate([]float64{0, 200}, []float64{10, 180})
	if zero.MAPE != nil || zero.MedianAPE != nil || !near(zero.MAE, 15) {
		t.Errorf("with an actual of 0: got %+v, want no MAPE and MAE 15", zero)
	}
	if e := models.Evaluate(nil, nil); e.Count != 0 || e.MAE != 0 {
		t.Errorf("no cases: got %+v", e)
	}
}

func TestMetricsBySegment(t *testing.T) {
	segs := models.BySegment([]string{"b", "a", "b", "a"},
		[]float64{100, 200, 300, 400}, []float64{110, 180, 300, 500}, []float64{120, 220, 330, 520})
	if len(segs) != 2 || segs[0].Value != "a" || segs[1].Value != "b" {
		t.Fatalf("segments %+v, want a then b", segs)
	}
	a, b := segs[0], segs[1]
	// a: actual 200, 400 predicted 180, 500; b: 100, 300 predicted 110, 300.
	if a.Count != 2 || !near(a.MAE, 60) || !near(a.UnderRate, 0.5) || !near(b.MAE, 5) || b.UnderRate != 0 {
		t.Errorf("a %+v, b %+v", a.Metrics, b.Metrics)
	}
	if a.Calibrated == nil || !near(a.Calibrated.MAE, 70) || a.Calibrated.UnderRate != 0 {
		t.Errorf("a calibrated %+v, want MAE 70 and no under-estimate", a.Calibrated)
	}
}

func TestCalibrateReachesTheTargetRate(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, n := range []int{7, 100, 1001} {
		residuals := make([]float64, n)
		for i := range residuals {
			residuals[i] = 0.3*rng.NormFloat64() + 0.05
		}
		for _, target := range []float64{0.05, 0.2, 0.5} {
			c, err := models.Calibrate(target, residuals)
			if err != nil {
				t.Fatal(err)
			}
			under := 0
			for _, r := range residuals {
				if r > c.Shift { // actual > predicted + shift
					under++
				}
			}
			if want := int(math.Floor(target * float64(n))); under != want {
				t.Errorf("n %d target %v: %d under after the shift %v, want %d", n, target, under, c.Shift, want)
			}
		}
	}
	if _, err := models.Calibrate(0.2, nil); err == nil {
		t.Error("calibrating on no cases must fail")
	}
	if _, err := models.Calibrate(1, []float64{1, 2}); err == nil {
		t.Error("an under rate of 1 must be refused")
	}
}
