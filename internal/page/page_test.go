package page

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
)

// One document renders as Markdown and as HTML that say the same: text
// escaped where each needs it, the figure a file beside the Markdown and
// inlined in the page.
func TestRender(t *testing.T) {
	d := New("St Olaf <General>")
	d.H(2, "Gate")
	d.P("passed: %s", "mae 1 < 2")
	d.Table([]string{"a|b", "c"}, [][]string{{"1", "<2>"}})
	d.List("one", "two & three")
	d.Figure("bars.png", "Some bars", func() (*plot.Plot, error) {
		return Bars("t", "y", []string{"x", "y"}, []Series{{Values: plotter.Values{1, 2}, Color: Blue}}, []Line{Target(0.5)}, Num)
	})
	md, html, pngs, err := d.Render()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# St Olaf <General>\n", "## Gate\n", "passed: mae 1 < 2\n", `| a\|b | c |`, "| --- | --- |", "| 1 | <2> |", "- two & three\n", "![Some bars](bars.png)\n"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	for _, want := range []string{"<title>St Olaf &lt;General&gt;</title>", "<h2>Gate</h2>", "<p>passed: mae 1 &lt; 2</p>", "<th>a|b</th>", "<td>&lt;2&gt;</td>",
		"<li>two &amp; three</li>", "data:image/png;base64," + base64.StdEncoding.EncodeToString(pngs["bars.png"])} {
		if !strings.Contains(string(html), want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	if len(pngs) != 1 || !strings.HasPrefix(string(pngs["bars.png"]), "\x89PNG") {
		t.Errorf("pngs: %d", len(pngs))
	}

	broken := errors.New("no data")
	d.Figure("broken.png", "", func() (*plot.Plot, error) { return nil, broken })
	if _, _, _, err := d.Render(); !errors.Is(err, broken) || !strings.Contains(err.Error(), "plot broken.png") {
		t.Errorf("a plot that fails: %v", err)
	}
}

func TestNumbers(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{Num(1234567.4), "1,234,567"}, {Num(-1234.5), "-1,235"}, {Num(99.994), "99.99"}, {Num(0.012345), "0.01235"},
		{Count(1000), "1,000"}, {Count(int64(-12)), "-12"}, {Percent(0.1234), "12.3%"}, {OptPercent(nil), "n/a"},
	} {
		if c.got != c.want {
			t.Errorf("%s, want %s", c.got, c.want)
		}
	}
}
