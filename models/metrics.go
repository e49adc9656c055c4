package models

import (
	"fmt"
	"math"
	"slices"
	"sort"
)

// Metrics measure predictions against actual values, in the target's own
// unit (the bill, not its log).
type Metrics struct {
	Count int     `json:"count"`
	MAE   float64 `json:"mae"`
	RMSE  float64 `json:"rmse"`
	// MAPE and MedianAPE (absolute percentage errors, as fractions) are
	// set only when every actual value is above 0.
	MAPE      *float64 `json:"mape,omitempty"`
	MedianAPE *float64 `json:"median_ape,omitempty"`
	// UnderRate is the share of cases predicted below their actual value:
	// the group prefers over-estimates.
	UnderRate float64 `json:"under_rate"`
}

// Evaluate computes the metrics of predicted against actual (same length).
// No cases give the zero Metrics, Count 0.
func Evaluate(actual, predicted []float64) Metrics {
	n := len(actual)
	if n == 0 || len(predicted) != n {
		return Metrics{}
	}
	var abs, sq, under float64
	positive := true
	apes := make([]float64, n)
	for i, a := range actual {
		e := predicted[i] - a
		abs += math.Abs(e)
		sq += e * e
		if e < 0 {
			under++
		}
		if a > 0 {
			apes[i] = math.Abs(e) / a
		} else {
			positive = false
		}
	}
	m := Metrics{Count: n, MAE: abs / float64(n), RMSE: math.Sqrt(sq / float64(n)), UnderRate: under / float64(n)}
	if positive {
		mean := 0.0
		for _, x := range apes {
			mean += x
		}
		mean /= float64(n)
		med := median(apes)
		m.MAPE, m.MedianAPE = &mean, &med
	}
	return m
}

// check refuses metrics that no cases could give.
func (m *Metrics) check() error {
	values := []float64{m.MAE, m.RMSE, m.UnderRate}
	for _, p := range []*float64{m.MAPE, m.MedianAPE} {
		if p != nil {
			values = append(values, *p)
		}
	}
	for _, v := range values {
		if !finite(v) || v < 0 {
			return fmt.Errorf("%v: want a finite number >= 0", v)
		}
	}
	if m.Count < 0 || m.UnderRate > 1 {
		return fmt.Errorf("count %d, under_rate %v: want a count >= 0 and a rate <= 1", m.Count, m.UnderRate)
	}
	return nil
}

// median sorts xs in place and returns its median.
func median(xs []float64) float64 {
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// Segment is the metrics of the cases that share one value of a segment
// column.
type Segment struct {
	Value string `json:"value"`
	Metrics
	Calibrated *Metrics `json:"calibrated,omitempty"`
}

// BySegment computes the metrics of each value of segment (one per case),
// sorted by value. calibrated may be nil.
func BySegment(segment []string, actual, predicted, calibrated []float64) []Segment {
	cases := map[string][]int{}
	for i, s := range segment {
		cases[s] = append(cases[s], i)
	}
	values := make([]string, 0, len(cases))
	for v := range cases {
		values = append(values, v)
	}
	sort.Strings(values)
	out := make([]Segment, len(values))
	for k, v := range values {
		idx := cases[v]
		out[k] = Segment{Value: v, Metrics: Evaluate(pick(actual, idx), pick(predicted, idx))}
		if calibrated != nil {
			c := Evaluate(pick(actual, idx), pick(calibrated, idx))
			out[k].Calibrated = &c
		}
	}
	return out
}

func pick(xs []float64, idx []int) []float64 {
	out := make([]float64, len(idx))
	for i, j := range idx {
		out[i] = xs[j]
	}
	return out
}

// Calibration shifts every prediction by Shift in the transformed target's
// space, chosen so that the share of validation cases predicted below
// their actual value is UnderRate. With the log target the shift is a
// factor, exp(Shift), on the bill; a transform is monotone, so the shift
// moves the under-estimate rate the same in either space.
type Calibration struct {
	UnderRate float64 `json:"under_rate"`
	Shift     float64 `json:"shift"`
}

// Calibrate finds the shift that brings the under-estimate rate of the
// validation cases to target: residuals are actual - predicted in the
// transformed space. The shift lies midway between two residuals, so that
// no case sits on the boundary and rounding cannot move a case across it:
// exactly floor(target * n) cases stay under.
func Calibrate(target float64, residuals []float64) (Calibration, error) {
	n := len(residuals)
	if !(target > 0 && target < 1) {
		return Calibration{}, fmt.Errorf("calibration: under_rate %v: want a fraction between 0 and 1", target)
	}
	if n == 0 {
		return Calibration{}, fmt.Errorf("calibration: %w", ErrNoValidation)
	}
	r := slices.Clone(residuals)
	slices.Sort(r)
	under := int(math.Floor(target * float64(n))) // cases that stay under: the largest residuals
	k := n - under                                // cases at or above the shift
	var shift float64
	switch {
	case k == n:
		shift = r[n-1] + math.Max(1e-9, math.Abs(r[n-1])*1e-9)
	default:
		shift = (r[k-1] + r[k]) / 2
	}
	return Calibration{UnderRate: target, Shift: shift}, nil
}
