package report

import (
	"bytes"
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
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/wardml/ward/pipelines/train"
)

// The plots' size: small enough to inline in a page, readable on a screen.
const (
	plotWidth  = 6 * vg.Inch
	plotHeight = 4 * vg.Inch
	plotDPI    = 96
)

var (
	grey  = color.NRGBA{R: 150, G: 150, B: 150, A: 90}
	blue  = color.NRGBA{R: 31, G: 119, B: 180, A: 255}
	green = color.NRGBA{R: 44, G: 160, B: 44, A: 255}
	red   = color.NRGBA{R: 214, G: 39, B: 40, A: 255}
	faint = color.NRGBA{R: 31, G: 119, B: 180, A: 110}
)

// png draws a plot as PNG bytes.
func png(p *plot.Plot) ([]byte, error) {
	c := vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(plotWidth, plotHeight), vgimg.UseDPI(plotDPI))}
	p.Draw(draw.New(c))
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

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
	s.GlyphStyle.Color, s.GlyphStyle.Radius, s.GlyphStyle.Shape = faint, vg.Points(1.2), draw.CircleGlyph{}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range xy {
		lo, hi = min(lo, v.X, v.Y), max(hi, v.X, v.Y)
	}
	diag, err := plotter.NewLine(plotter.XYs{{X: lo, Y: lo}, {X: hi, Y: hi}})
	if err != nil {
		return nil, err
	}
	diag.Color, diag.Dashes = red, []vg.Length{vg.Points(4), vg.Points(3)}
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
	}{{tr, grey}, {va, faint}} {
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
	zero.Color = red
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

// bars is a bar chart of named values, one colour per series, each bar
// labelled with its value when there are few.
func bars(title, ylabel string, names []string, series []barSeries, target *float64, label func(float64) string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.X.Min, p.X.Max = -0.5, float64(len(names))-0.5
	top := 0.0
	w := vg.Points(math.Min(60, 0.8*5*72/float64(len(names)*len(series))))
	for i, s := range series {
		b, err := plotter.NewBarChart(s.values, w)
		if err != nil {
			return nil, err
		}
		b.Color = s.color
		b.LineStyle.Width = 0
		b.Offset = w * vg.Length(float64(i)-float64(len(series)-1)/2)
		p.Add(b)
		if len(series) > 1 {
			p.Legend.Add(s.name, b)
		}
		for _, v := range s.values {
			top = max(top, v)
		}
		if len(names) <= 6 {
			xy := plotter.XYLabels{}
			for j, v := range s.values {
				xy.XYs = append(xy.XYs, plotter.XY{X: float64(j), Y: v})
				xy.Labels = append(xy.Labels, label(v))
			}
			l, err := plotter.NewLabels(xy)
			if err != nil {
				return nil, err
			}
			for j := range l.TextStyle {
				l.TextStyle[j].XAlign = draw.XCenter
			}
			l.Offset = vg.Point{X: b.Offset, Y: vg.Points(3)}
			p.Add(l)
		}
	}
	if target != nil {
		t := *target
		top = max(top, t)
		line := plotter.NewFunction(func(float64) float64 { return t })
		line.Color, line.Dashes = red, []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(line)
		p.Legend.Add(fmt.Sprintf("target %.0f%%", 100*t), line)
	}
	// Room above the bars for the labels and the legend.
	p.Y.Min, p.Y.Max = 0, 1.25*top
	p.Legend.Top = true
	p.Y.Tick.Marker = labelled{label}
	p.NominalX(names...)
	if len(names) > 6 {
		p.X.Tick.Label.Rotation = math.Pi / 2.5
		p.X.Tick.Label.XAlign, p.X.Tick.Label.YAlign = draw.XRight, draw.YCenter
	}
	return p, nil
}

type barSeries struct {
	name   string
	values plotter.Values
	color  color.Color
}

// timeVsRandom compares the validation MAE of the two kinds of split.
func timeVsRandom(r *train.Result) (*plot.Plot, error) {
	names := []string{r.Split.Kind + " split (shipped)", r.Comparison.Split.Kind + " split"}
	vals := plotter.Values{r.Validation.MAE, r.Comparison.Metrics.MAE}
	return bars(r.Hospital+": validation MAE by split", "MAE", names, []barSeries{{values: vals, color: blue}}, nil, num)
}

// hospitalVsPooled compares the hospital's model with the pooled one on
// the hospital's validation window.
func hospitalVsPooled(r *train.Result) (*plot.Plot, error) {
	names := []string{"per-hospital", "pooled"}
	mae := plotter.Values{r.Validation.MAE, r.Pooled.Metrics.MAE}
	s := []barSeries{{values: mae, color: blue}}
	if r.Gate.Production != nil && r.Gate.Metric == "mae" {
		names = append(names, "production")
		s[0].values = append(s[0].values, *r.Gate.Production)
	}
	return bars(r.Hospital+": MAE on its validation window", "MAE", names, s, nil, num)
}

// underBySegment plots the under-estimate rate of each segment value,
// raw and calibrated, against the contract's target.
func underBySegment(r *train.Result, columns []string) (*plot.Plot, error) {
	var names []string
	raw := barSeries{name: "predictions", color: blue}
	cal := barSeries{name: "calibrated", color: green}
	for _, col := range columns {
		for _, s := range r.Validation.Segments[col] {
			names = append(names, col+"="+s.Value)
			raw.values = append(raw.values, s.UnderRate)
			if s.Calibrated != nil {
				cal.values = append(cal.values, s.Calibrated.UnderRate)
			}
		}
	}
	series := []barSeries{raw}
	var target *float64
	if r.Calibration != nil {
		series = append(series, cal)
		target = &r.Calibration.UnderRate
	}
	return bars(r.Hospital+": under-estimate rate by segment", "share of cases predicted below actual", names, series, target, percent)
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

// labelled is the default ticks, labelled as the report writes numbers.
type labelled struct{ label func(float64) string }

func (l labelled) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = l.label(ticks[i].Value)
		}
	}
	return ticks
}
