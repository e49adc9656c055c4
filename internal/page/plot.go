package page

import (
	"bytes"
	"cmp"
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The plots' size: small enough to inline in a page, readable on a screen.
const (
	plotWidth  = 6 * vg.Inch
	plotHeight = 4 * vg.Inch
	plotDPI    = 96
)

// The reports' colours.
var (
	Grey   = color.NRGBA{R: 150, G: 150, B: 150, A: 90}
	Blue   = color.NRGBA{R: 31, G: 119, B: 180, A: 255}
	Green  = color.NRGBA{R: 44, G: 160, B: 44, A: 255}
	Orange = color.NRGBA{R: 255, G: 127, B: 14, A: 255}
	Red    = color.NRGBA{R: 214, G: 39, B: 40, A: 255}
	Faint  = color.NRGBA{R: 31, G: 119, B: 180, A: 110}
)

// Dashes is the dash pattern of reference lines (a target, a threshold).
var Dashes = []vg.Length{vg.Points(4), vg.Points(3)}

// PNG draws a plot as PNG bytes.
func PNG(p *plot.Plot) ([]byte, error) {
	c := vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(plotWidth, plotHeight), vgimg.UseDPI(plotDPI))}
	p.Draw(draw.New(c))
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Series is one set of bars of a bar chart.
type Series struct {
	Name   string
	Values plotter.Values
	Color  color.Color
}

// Line is a horizontal reference line across a bar chart, dashed, red
// unless Color says otherwise.
type Line struct {
	Name  string
	Value float64
	Color color.Color
}

// Bars is a bar chart of named values, one colour per series, each bar
// labelled with its value when there are few, with dashed reference lines.
func Bars(title, ylabel string, names []string, series []Series, lines []Line, label func(float64) string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.X.Min, p.X.Max = -0.5, float64(len(names))-0.5
	top := 0.0
	w := vg.Points(math.Min(60, 0.8*5*72/float64(len(names)*len(series))))
	for i, s := range series {
		b, err := plotter.NewBarChart(s.Values, w)
		if err != nil {
			return nil, err
		}
		b.Color = s.Color
		b.LineStyle.Width = 0
		b.Offset = w * vg.Length(float64(i)-float64(len(series)-1)/2)
		p.Add(b)
		if len(series) > 1 {
			p.Legend.Add(s.Name, b)
		}
		for _, v := range s.Values {
			top = max(top, v)
		}
		if len(names) <= 6 {
			xy := plotter.XYLabels{}
			for j, v := range s.Values {
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
	for _, ln := range lines {
		v := ln.Value
		top = max(top, v)
		f := plotter.NewFunction(func(float64) float64 { return v })
		f.Color, f.Dashes = cmp.Or[color.Color](ln.Color, Red), Dashes
		p.Add(f)
		p.Legend.Add(ln.Name, f)
	}
	// Room above the bars for the labels and the legend.
	p.Y.Min, p.Y.Max = 0, 1.25*top
	p.Legend.Top = true
	p.Y.Tick.Marker = Ticks(label)
	p.NominalX(names...)
	if len(names) > 6 {
		p.X.Tick.Label.Rotation = math.Pi / 2.5
		p.X.Tick.Label.XAlign, p.X.Tick.Label.YAlign = draw.XRight, draw.YCenter
	}
	return p, nil
}

// Ticks are the default ticks, labelled by label (Num, Percent).
func Ticks(label func(float64) string) plot.Ticker { return labelled{label} }

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

// Target names a target line of a bar chart, e.g. "target 20%".
func Target(v float64) Line { return Line{Name: fmt.Sprintf("target %.0f%%", 100*v), Value: v} }
