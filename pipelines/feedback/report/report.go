// Package report renders what `ward feedback` found (pipelines/feedback):
// per hospital a report, in Markdown and as a self-contained HTML page
// with its PNG plots (live error by month against the validation error;
// PSI by feature), and the whole run as JSON for machines; and the summary
// table the command prints. It renders the same bytes for the same report
// (no clock, no randomness).
//
// The files, in the output folder (it may be the models folder of ward
// train: the names do not collide):
//
//	DIR/feedback.json             every hospital of the run
//	DIR/<id>/feedback.md          the report
//	DIR/<id>/feedback.html        the same, with the plots inlined
//	DIR/<id>/feedback-error.png   live MAE by month against the validation MAE
//	DIR/<id>/feedback-psi.png     PSI by feature of the current model
package report

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/wardml/ward/internal/page"
	"github.com/wardml/ward/pipelines/feedback"
)

// The files of a run.
const (
	JSONFile     = "feedback.json"
	MarkdownFile = "feedback.md"
	HTMLFile     = "feedback.html"
	ErrorPlot    = "feedback-error.png"
	PSIPlot      = "feedback-psi.png"
)

// Write writes the run into dir: each assessed hospital's report into
// dir/<id>/ (a plot this run does not draw is removed, so that none is
// left from an earlier run), then dir/feedback.json. A hospital that could
// not be assessed keeps what an earlier run wrote. The error joins what
// could not be written.
func Write(dir string, r *feedback.Report) error {
	var errs []error
	for i := range r.Hospitals {
		h := &r.Hospitals[i]
		if h.Error != "" {
			continue
		}
		if err := writeHospital(filepath.Join(dir, h.Hospital), r, h); err != nil {
			errs = append(errs, fmt.Errorf("feedback report %s: %w", h.Hospital, err))
		}
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err == nil {
		err = page.WriteFile(filepath.Join(dir, JSONFile), append(data, '\n'))
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("feedback report %s: %w", dir, err))
	}
	return errors.Join(errs...)
}

func writeHospital(dir string, r *feedback.Report, h *feedback.Hospital) error {
	files, err := Render(r, h)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, data := range files {
		if err := page.WriteFile(filepath.Join(dir, name), data); err != nil {
			return err
		}
	}
	for _, name := range []string{ErrorPlot, PSIPlot} {
		if _, drawn := files[name]; !drawn {
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// Render makes the files of a hospital's report, by name: the Markdown,
// the HTML page, and the plots.
func Render(r *feedback.Report, h *feedback.Hospital) (map[string][]byte, error) {
	md, html, pngs, err := document(r, h).Render()
	if err != nil {
		return nil, fmt.Errorf("feedback report %s: %w", h.Hospital, err)
	}
	files := map[string][]byte{MarkdownFile: md, HTMLFile: html}
	for name, png := range pngs {
		files[name] = png
	}
	return files, nil
}

// document writes the report of one hospital.
func document(r *feedback.Report, h *feedback.Hospital) *page.Doc {
	d := page.New(fmt.Sprintf("%s (%s): live performance", cmp.Or(h.Name, h.Hospital), h.Hospital))
	d.P("%s: %s.", strings.ToUpper(h.Verdict), h.Reason)
	d.P("%s %s predictions, joined by case id with the outcomes that later extracts brought. A model is degraded when its live MAE is above its validation MAE by more than %s (the contract's feedback.degradation) over at least %s cases with an outcome (min_cases); it has drifted when an input feature's population stability index (PSI), live against the training distribution its artifact keeps, is over 0.25 (0.1 to 0.25: watch). The hospital's verdict is that of its current model, the version that served its latest prediction; exit code 4 follows it.",
		windowText(r), page.Count(h.Predictions), page.Percent(h.Degradation), page.Count(h.MinCases))
	if len(h.Models) == 0 {
		return d
	}

	d.H(2, "Models")
	var rows [][]string
	for _, m := range h.Models {
		val, valUnder := "-", "-"
		if m.Validation != nil {
			val, valUnder = page.Num(m.Validation.MAE), page.Percent(m.Validation.UnderRate)
		}
		liveMAE, liveUnder := "-", "-"
		if m.Live.Count > 0 {
			liveMAE, liveUnder = page.Num(m.Live.MAE), page.Percent(m.Live.UnderRate)
		}
		name := m.Version
		if m.Version == h.Current {
			name += " (current)"
		}
		rows = append(rows, []string{name, day(m.First) + " to " + day(m.Last), page.Count(m.Predictions), page.Count(m.Live.Count),
			liveMAE, val, ratioText(m.MAERatio), liveUnder, valUnder, worstText(&m), m.Verdict})
	}
	d.Table([]string{"version", "served", "predictions", "cases with an outcome", "live MAE", "validation MAE", "ratio",
		"live under-estimate rate", "validation under-estimate rate", "highest PSI", "verdict"}, rows)
	for _, m := range h.Models {
		d.P("%s: %s.", m.Version, m.Reason)
	}
	d.P("The live metrics count each case once, by its latest prediction of that version; they are the metrics training reports (models.Evaluate) of the raw predictions (ward.prediction), in the unit of the target. The validation metrics are those the artifact carries, of its validation window; the under-estimate rate is the share of cases predicted below their actual value.")

	d.H(2, "Live error by month")
	d.P("A month is the month of the case (the contract's training time_column), as in the validation window, else of the prediction.")
	for _, m := range h.Models {
		if len(m.Months) == 0 {
			continue
		}
		d.H(3, m.Version)
		var rows [][]string
		for _, mo := range m.Months {
			rows = append(rows, []string{mo.Month, page.Count(mo.Count), page.Num(mo.MAE), page.Num(mo.RMSE), page.Percent(mo.UnderRate)})
		}
		if m.Validation != nil {
			w := m.ValidationWindow
			rows = append(rows, []string{"validation " + w.From + " to " + w.To, page.Count(m.Validation.Count), page.Num(m.Validation.MAE),
				page.Num(m.Validation.RMSE), page.Percent(m.Validation.UnderRate)})
		}
		d.Table([]string{"month", "cases", "MAE", "RMSE", "under-estimate rate"}, rows)
	}
	if slices.ContainsFunc(h.Models, func(m feedback.Model) bool { return len(m.Months) > 0 }) {
		d.Figure(ErrorPlot, "Live MAE by month of each model version, against its validation MAE (dashed) and the current model's limit (red)",
			func() (*plot.Plot, error) { return errorByMonth(h) })
	}

	d.H(2, "Drift")
	cur := h.Model(h.Current)
	switch {
	case cur == nil || !cur.Artifact:
		d.P("The current model has no artifact among the models given: its training distribution is unknown, and drift is not computed.")
	case len(cur.Drift) == 0:
		d.P("%s.", capitalise(cur.DriftNote))
	default:
		d.P("PSI of each input feature of the current model (%s) over %s rows of logged inputs, against the training distribution its artifact keeps: about the deciles of a numeric feature's training values, and the levels of a categorical one (then other: the levels it never learned). Date features have none: time moving on is not drift. A feature is judged over at least %d rows a bin and min_cases.",
			cur.Version, page.Count(cur.DriftRows), feedback.RowsPerBin)
		var rows [][]string
		for _, f := range cur.Drift {
			judged := "yes"
			if !f.Judged {
				judged = "no: too few rows"
			}
			rows = append(rows, []string{f.Feature, strconv.Itoa(f.Bins), strconv.FormatFloat(f.PSI, 'f', 3, 64), f.Band, judged})
		}
		d.Table([]string{"feature", "bins", "PSI", "band", "judged"}, rows)
		d.Figure(PSIPlot, "PSI by feature of the current model, with the watch (0.1) and act (0.25) bands", func() (*plot.Plot, error) { return psiByFeature(cur) })
	}

	d.H(2, "What the live metrics leave out")
	var left [][]string
	for _, m := range h.Models {
		c := m.Counts
		left = append(left, []string{m.Version, page.Count(c.WithoutCaseID), page.Count(c.AwaitingOutcome), page.Count(c.Repeated),
			page.Count(c.InputsHashed), page.Count(c.UnreadableInputs)})
	}
	d.Table([]string{"version", "without case id", "awaiting an outcome", "repeated (earlier predictions of a case)", "inputs hashed", "inputs unreadable"}, left)
	items := []string{fmt.Sprintf("%s predictions of versions with no artifact among the models given: their live metrics are shown, nothing is judged", page.Count(h.WithoutArtifact))}
	if h.Unpredicted != nil {
		items = append(items, fmt.Sprintf("%s outcomes that no prediction names: cases with a %s within the span of the predicted cases' times that no prediction (of any version, with a case id) names", page.Count(*h.Unpredicted), "target"))
	} else {
		items = append(items, "outcomes that no prediction names: not counted (the contract has no training time_column to bound them by)")
	}
	d.List(items...)
	d.P("Ingest counts what never reached the database: malformed log lines (rejected, with their line numbers, in the file's validation report), predictions a log repeats or that were recorded before (duplicates), and predictions of model versions never deployed (ward ingest's summary and ledger).")
	return d
}

func windowText(r *feedback.Report) string {
	switch {
	case r.From.IsZero() && r.To.IsZero():
		return "All"
	case r.To.IsZero():
		return "From " + day(r.From) + ":"
	case r.From.IsZero():
		return "Up to " + day(r.To) + " (excluded):"
	}
	return "From " + day(r.From) + " up to " + day(r.To) + " (excluded):"
}

func day(t time.Time) string { return t.UTC().Format(time.DateOnly) }

func ratioText(r *float64) string {
	if r == nil {
		return "-"
	}
	return strconv.FormatFloat(*r, 'f', 2, 64) + "x"
}

func worstText(m *feedback.Model) string {
	w := m.Worst()
	if w == nil {
		return "-"
	}
	return fmt.Sprintf("%s %.3f (%s)", w.Feature, w.PSI, w.Band)
}

func capitalise(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// seriesColours tell the model versions apart in a plot.
var seriesColours = []color.Color{page.Blue, page.Orange, page.Green, page.Faint}

// errorByMonth plots each version's live MAE by month, its validation MAE
// as a dashed line of its colour, and the current model's limit in red.
func errorByMonth(h *feedback.Hospital) (*plot.Plot, error) {
	var months []string
	for _, m := range h.Models {
		for _, mo := range m.Months {
			if !slices.Contains(months, mo.Month) {
				months = append(months, mo.Month)
			}
		}
	}
	slices.Sort(months)
	p := plot.New()
	p.Title.Text = h.Hospital + ": live MAE by month"
	p.Y.Label.Text = "MAE"
	p.X.Min, p.X.Max = -0.5, float64(len(months))-0.5
	top := 0.0
	for i, m := range h.Models {
		if len(m.Months) == 0 {
			continue
		}
		colour := seriesColours[i%len(seriesColours)]
		var xy plotter.XYs
		for _, mo := range m.Months {
			xy = append(xy, plotter.XY{X: float64(slices.Index(months, mo.Month)), Y: mo.MAE})
			top = max(top, mo.MAE)
		}
		line, points, err := plotter.NewLinePoints(xy)
		if err != nil {
			return nil, err
		}
		line.Color, points.Color, points.Shape = colour, colour, draw.CircleGlyph{}
		p.Add(line, points)
		p.Legend.Add(m.Version+" live", line, points)
		if m.Validation != nil {
			v := m.Validation.MAE
			top = max(top, v)
			ref := plotter.NewFunction(func(float64) float64 { return v })
			ref.Color, ref.Dashes = colour, page.Dashes
			p.Add(ref)
			p.Legend.Add(m.Version+" validation", ref)
			if m.Version == h.Current {
				limit := v * (1 + h.Degradation)
				top = max(top, limit)
				lim := plotter.NewFunction(func(float64) float64 { return limit })
				lim.Color, lim.Width = page.Red, vg.Points(1)
				p.Add(lim)
				p.Legend.Add(fmt.Sprintf("limit (+%s)", page.Percent(h.Degradation)), lim)
			}
		}
	}
	p.Y.Min, p.Y.Max = 0, 1.3*top
	p.Y.Tick.Marker = page.Ticks(page.Num)
	p.Legend.Top = true
	p.NominalX(months...)
	return p, nil
}

// psiByFeature is a bar chart of the current model's PSI by feature.
func psiByFeature(m *feedback.Model) (*plot.Plot, error) {
	names := make([]string, len(m.Drift))
	values := make(plotter.Values, len(m.Drift))
	for i, f := range m.Drift {
		names[i], values[i] = f.Feature, f.PSI
	}
	return page.Bars(m.Version+": PSI by feature, live against training", "PSI", names,
		[]page.Series{{Values: values, Color: page.Blue}},
		[]page.Line{{Name: "watch 0.1", Value: 0.1, Color: page.Orange}, {Name: "act 0.25", Value: 0.25}},
		func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) })
}

// WriteTable prints the run as a table for people: per hospital its
// current model.
func WriteTable(w io.Writer, r *feedback.Report) {
	const format = "%-12s %-24s %8s %12s %12s %7s %7s  %-24s %s\n"
	fmt.Fprintf(w, format, "HOSPITAL", "MODEL", "CASES", "LIVE MAE", "VAL MAE", "RATIO", "UNDER", "HIGHEST PSI", "VERDICT")
	for _, h := range r.Hospitals {
		if h.Error != "" {
			fmt.Fprintf(w, format, h.Hospital, "-", "-", "-", "-", "-", "-", "-", "error: "+strings.SplitN(h.Error, "\n", 2)[0])
			continue
		}
		m := h.Model(h.Current)
		if m == nil {
			fmt.Fprintf(w, format, h.Hospital, "-", "0", "-", "-", "-", "-", "-", h.Verdict)
			continue
		}
		live, val, under := "-", "-", "-"
		if m.Live.Count > 0 {
			live, under = page.Num(m.Live.MAE), page.Percent(m.Live.UnderRate)
		}
		if m.Validation != nil {
			val = page.Num(m.Validation.MAE)
		}
		worst := "-"
		if wf := m.Worst(); wf != nil {
			worst = fmt.Sprintf("%s %.3f", wf.Feature, wf.PSI)
		}
		fmt.Fprintf(w, format, h.Hospital, m.Version, page.Count(m.Live.Count), live, val, ratioText(m.MAERatio), under, worst, h.Verdict)
	}
}
