package report

import (
	"fmt"
	"image/color"
	"maps"
	"math"
	"slices"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/wardml/ward/internal/page"
	"github.com/wardml/ward/pipelines/train"
)

// predictedVsActual plots each validation case's prediction against its
// actual value, with the line of a perfect model; on log axes when every
// value is above zero (bills spread over orders of magnitude).
func predictedVsActual(r *train.Result) (*plot.Plot, error) {
	var xy plotter.XYs
	positive := true
	for _, pt := range r.Points {
		if pt.Validation {
			xy = append(xy, plotter.XY{X: pt.Actual, Y: pt.Predicted})
			positive = positive && pt.Actual > 0 && pt.Predicted > 0
		}
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: predicted vs actual (%d validation cases)", r.Hospital, len(xy))
	p.X.Label.Text = "actual " + r.Artifact.Target.Column
	p.Y.Label.Text = "predicted"
	if positive {
		p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
		p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
	}
	s, err := plotter.NewScatter(xy)
	if err != nil {
		return nil, err
	}
	s.GlyphStyle.Color, s.GlyphStyle.Radius, s.GlyphStyle.Shape = page.Faint, vg.Points(1.2), draw.CircleGlyph{}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range xy {
		lo, hi = min(lo, v.X, v.Y), max(hi, v.X, v.Y)
	}
	diag, err := plotter.NewLine(plotter.XYs{{X: lo, Y: lo}, {X: hi, Y: hi}})
	if err != nil {
		return nil, err
	}
	diag.Color, diag.Dashes = page.Red, page.Dashes
	p.Add(s, diag)
	p.Legend.Add("case", s)
	p.Legend.Add("predicted = actual", diag)
	p.Legend.Top, p.Legend.Left = true, true
	return p, nil
}

// residualsOverTime plots each case's relative error against its time:
// training cases in grey, validation cases in colour, so that drift shows
// as a trend and the validation window as where the model had to guess.
func residualsOverTime(r *train.Result) (*plot.Plot, error) {
	var tr, va plotter.XYs
	var errs []float64
	for _, pt := range r.Points {
		if pt.Actual <= 0 {
			continue
		}
		e := 100 * (pt.Predicted - pt.Actual) / pt.Actual
		xy := plotter.XY{X: float64(pt.At), Y: e}
		if pt.Validation {
			va = append(va, xy)
		} else {
			tr = append(tr, xy)
		}
		errs = append(errs, e)
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("no case with an actual value above 0")
	}
	p := plot.New()
	p.Title.Text = r.Hospital + ": relative error over time"
	p.X.Label.Text = r.Split.Kind + " split: training (grey), validation (blue)"
	p.Y.Label.Text = "(predicted - actual) / actual, %"
	p.X.Tick.Marker = plot.TimeTicks{Format: "2006-01"}
	// The errors of a log model are skewed: show the middle 96%.
	slices.Sort(errs)
	p.Y.Min, p.Y.Max = errs[len(errs)/50], errs[len(errs)-1-len(errs)/50]
	for _, set := range []struct {
		xy plotter.XYs
		c  color.Color
	}{{tr, page.Grey}, {va, page.Faint}} {
		if len(set.xy) == 0 {
			continue
		}
		s, err := plotter.NewScatter(set.xy)
		if err != nil {
			return nil, err
		}
		s.GlyphStyle.Color, s.GlyphStyle.Radius, s.GlyphStyle.Shape = set.c, vg.Points(0.8), draw.CircleGlyph{}
		p.Add(s)
	}
	zero := plotter.NewFunction(func(float64) float64 { return 0 })
	zero.Color = page.Red
	med, err := plotter.NewLine(monthlyMedian(append(tr, va...)))
	if err != nil {
		return nil, err
	}
	med.Color, med.Width = color.Black, vg.Points(1.5)
	p.Add(zero, med)
	p.Legend.Add("monthly median", med)
	p.Legend.Top = true
	return p, nil
}

// timeVsRandom compares the validation MAE of the two kinds of split.
func timeVsRandom(r *train.Result) (*plot.Plot, error) {
	names := []string{r.Split.Kind + " split (shipped)", r.Comparison.Split.Kind + " split"}
	vals := plotter.Values{r.Validation.MAE, r.Comparison.Metrics.MAE}
	return page.Bars(r.Hospital+": validation MAE by split", "MAE", names, []page.Series{{Values: vals, Color: page.Blue}}, nil, page.Num)
}

// hospitalVsPooled compares the hospital's model with the pooled one on
// the hospital's validation window.
func hospitalVsPooled(r *train.Result) (*plot.Plot, error) {
	names := []string{"per-hospital", "pooled"}
	mae := plotter.Values{r.Validation.MAE, r.Pooled.Metrics.MAE}
	s := []page.Series{{Values: mae, Color: page.Blue}}
	if r.Gate.Production != nil && r.Gate.Metric == "mae" {
		names = append(names, "production")
		s[0].Values = append(s[0].Values, *r.Gate.Production)
	}
	return page.Bars(r.Hospital+": MAE on its validation window", "MAE", names, s, nil, page.Num)
}

// underBySegment plots the under-estimate rate of each segment value,
// raw and calibrated, against the contract's target.
func underBySegment(r *train.Result, columns []string) (*plot.Plot, error) {
	var names []string
	raw := page.Series{Name: "predictions", Color: page.Blue}
	cal := page.Series{Name: "calibrated", Color: page.Green}
	for _, col := range columns {
		for _, s := range r.Validation.Segments[col] {
			names = append(names, col+"="+s.Value)
			raw.Values = append(raw.Values, s.UnderRate)
			if s.Calibrated != nil {
				cal.Values = append(cal.Values, s.Calibrated.UnderRate)
			}
		}
	}
	series := []page.Series{raw}
	var target []page.Line
	if r.Calibration != nil {
		series = append(series, cal)
		target = append(target, page.Target(r.Calibration.UnderRate))
	}
	return page.Bars(r.Hospital+": under-estimate rate by segment", "share of cases predicted below actual", names, series, target, page.Percent)
}

// monthlyMedian is the median of each calendar month's errors, placed at
// the middle of the month.
func monthlyMedian(xy plotter.XYs) plotter.XYs {
	months := map[time.Time][]float64{}
	for _, v := range xy {
		t := time.Unix(int64(v.X), 0).UTC()
		m := time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
		months[m] = append(months[m], v.Y)
	}
	var out plotter.XYs
	for _, m := range slices.SortedFunc(maps.Keys(months), time.Time.Compare) {
		ys := months[m]
		slices.Sort(ys)
		mid := m.Add(m.AddDate(0, 1, 0).Sub(m) / 2)
		out = append(out, plotter.XY{X: float64(mid.Unix()), Y: (ys[(len(ys)-1)/2] + ys[len(ys)/2]) / 2})
	}
	return out
}

// candidates plots every candidate family's MAE: on the inner validation,
// which the choice was made on, and on the validation window.
func candidates(r *train.Result) (*plot.Plot, error) {
	var names []string
	in := page.Series{Name: "inner validation (chosen on)", Color: page.Faint}
	out := page.Series{Name: "validation window", Color: page.Blue}
	for _, c := range r.Candidates {
		if c.Inner == nil {
			continue
		}
		name := c.Family
		if c.Shipped {
			name += " (shipped)"
		}
		names = append(names, name)
		in.Values = append(in.Values, c.Inner.MAE)
		out.Values = append(out.Values, c.Validation.MAE)
	}
	return page.Bars(r.Hospital+": MAE of each candidate family", "MAE", names, []page.Series{in, out}, nil, page.Num)
}
