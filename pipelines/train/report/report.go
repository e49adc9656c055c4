// Package report renders what `ward train` found for each hospital, and
// writes it where the next stage of the loop takes it: per hospital the
// model artifact, and a report (Markdown, a self-contained HTML page, the
// PNG plots, and metrics.json for machines) that `ward package` attaches
// to the hospital's image. It reads train.Result and nothing else, and
// renders the same bytes for the same result (no clock, no randomness).
//
// The layout of the output folder:
//
//	DIR/summary.json                 every hospital of the run, one line each
//	DIR/<id>/model.json              the model artifact
//	DIR/<id>/report/report.md        the report
//	DIR/<id>/report/report.html      the same, with the plots inlined
//	DIR/<id>/report/metrics.json     the metrics, the split, the gate
//	DIR/<id>/report/*.png            the plots
package report

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"

	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/train"
)

// The files of a hospital's folder.
const (
	ModelFile   = "model.json"
	ReportDir   = "report"
	MetricsFile = "metrics.json"
)

// Render makes the files of a trained hospital's folder: the artifact,
// and the report with its plots, by their paths inside the folder.
func Render(r *train.Result) (map[string][]byte, error) {
	if r.Artifact == nil {
		return nil, fmt.Errorf("report %s: no model to report on", r.Hospital)
	}
	model, err := r.Artifact.Encode()
	if err != nil {
		return nil, err
	}
	metrics, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("report %s: %w", r.Hospital, err)
	}
	d, plots := document(r)
	files := map[string][]byte{ModelFile: model, ReportDir + "/" + MetricsFile: append(metrics, '\n')}
	pngs := map[string][]byte{}
	for _, pl := range plots {
		p, err := pl.make()
		if err == nil {
			pngs[pl.file], err = png(p)
		}
		if err != nil {
			return nil, fmt.Errorf("report %s: plot %s: %w", r.Hospital, pl.file, err)
		}
		files[ReportDir+"/"+pl.file] = pngs[pl.file]
	}
	files[ReportDir+"/report.md"] = d.markdown()
	files[ReportDir+"/report.html"] = d.html(pngs)
	return files, nil
}

// plotFile is a plot of the report: its file and how to draw it.
type plotFile struct {
	file string
	make func() (*plot.Plot, error)
}

// document writes the report of one hospital, and lists the plots it shows.
func document(r *train.Result) (*doc, []plotFile) {
	a := r.Artifact
	var plots []plotFile
	d := &doc{title: fmt.Sprintf("%s (%s): model %s", r.Name, r.Hospital, r.Version)}
	addFig := func(file, caption string, make func() (*plot.Plot, error)) {
		plots = append(plots, plotFile{file, make})
		d.figure(file, caption)
	}
	d.p("Ridge regression of %s (target transform %s), one model for this hospital, trained by ward %s under the contract with SHA-256 %s.",
		a.Target.Column, a.Target.Transform, a.Lineage.Ward, a.Lineage.Contract)

	d.h(2, "Gate")
	if r.Gate.Passed {
		d.p("PASSED: %s.", r.Gate.Reason)
	} else {
		d.p("FAILED: %s. The model is written so that a person can look at it, and marked failed in metrics.json and summary.json.", r.Gate.Reason)
	}
	if r.Gate.Production != nil {
		d.table([]string{"model", r.Gate.Metric, "cases"}, [][]string{
			{"new " + r.Version, metricText(r.Gate.New, r.Gate.Metric), count(r.Gate.Cases)},
			{"production " + r.Gate.ProductionVersion, metricText(*r.Gate.Production, r.Gate.Metric), count(r.Gate.Cases)},
		})
	}

	d.h(2, "Data")
	d.p("%s cases read from the database, from %s files; %s left after cleaning.", count(r.Rows), count(len(a.Lineage.Files)), count(r.Cleaned))
	if len(r.Cleaning) > 0 {
		var rows [][]string
		for _, c := range r.Cleaning {
			capped := ""
			if c.Cap != nil {
				capped = fmt.Sprintf("%s values of the training cases lowered to %s", count(c.Capped), num(*c.Cap))
			}
			rows = append(rows, []string{c.Rule, count(c.Removed), capped})
		}
		d.table([]string{"cleaning rule", "cases removed", "values capped"}, rows)
	}

	d.h(2, "Split")
	d.p("%s", describeSplit(r.Split))
	d.p("The ridge penalty (lambda) was chosen on the validation window from the contract's grid: %s. Validation RMSE of each, in the transformed target's unit:", num(r.Lambda))
	var grid [][]string
	for _, g := range r.Grid {
		rmse := g.Error
		if g.RMSE != nil {
			rmse = strconv.FormatFloat(*g.RMSE, 'f', 5, 64)
		}
		grid = append(grid, []string{num(g.Lambda), rmse})
	}
	d.table([]string{"lambda", "validation RMSE"}, grid)

	d.h(2, "Validation metrics")
	v := r.Validation
	head := []string{"metric", "predictions"}
	if v.Calibrated != nil {
		head = append(head, fmt.Sprintf("calibrated (target under-estimate rate %s)", percent(r.Calibration.UnderRate)))
	}
	d.table(head, metricRows(v.Metrics, v.Calibrated))
	d.p("MAE and RMSE are in the unit of %s; MAPE and median APE are absolute percentage errors, shown only when every actual value is above zero; the under-estimate rate is the share of cases predicted below their actual value (the group prefers over-estimates).", a.Target.Column)
	if c := r.Calibration; c != nil {
		d.p("Calibration moves every prediction by %s: the quantile of the validation residuals that leaves %s of the cases predicted below their actual value.",
			shiftText(c.Shift, a.Target.Transform), percent(c.UnderRate))
	}

	d.h(2, "Time split vs random split")
	if c := r.Comparison; c == nil {
		d.p("The contract has no time column: only a random split is possible, and its error is likely optimistic where patients come back or prices drift.")
	} else if c.Metrics == nil {
		d.p("The %s split could not be fitted: %s.", c.Split.Kind, c.Error)
	} else {
		rows := [][]string{
			append([]string{r.Split.Kind + " split (the model shipped)", count(v.Count)}, shortMetrics(v.Metrics)...),
			append([]string{c.Split.Kind + " split", count(c.Metrics.Count)}, shortMetrics(*c.Metrics)...),
		}
		d.table([]string{"split", "cases validated", "MAE", "RMSE", "median APE", "under-estimate rate"}, rows)
		timeMAE, randomMAE := v.MAE, c.Metrics.MAE
		if r.Split.Kind == train.RandomSplit {
			timeMAE, randomMAE = randomMAE, timeMAE
		}
		d.p("%s. %s", relative("The random split's MAE", randomMAE, "the time split's", timeMAE), describeSplit(c.Split))
		addFig("time-vs-random.png", "Validation MAE under the time split and under a random split", func() (*plot.Plot, error) { return timeVsRandom(r) })
	}

	d.h(2, "Per-hospital vs pooled")
	if p := r.Pooled; p.Metrics == nil {
		d.p("%s.", capitalise(p.Reason))
	} else {
		d.p("The pooled model is one ridge regression over the cases of %s, with the hospital as a feature, on the same split; scored here on this hospital's validation window (lambda %s).",
			strings.Join(p.Hospitals, ", "), num(p.Lambda))
		d.table([]string{"model", "cases", "MAE", "RMSE", "median APE", "under-estimate rate"}, [][]string{
			append([]string{"per-hospital (this model)", count(v.Count)}, shortMetrics(v.Metrics)...),
			append([]string{"pooled", count(p.Metrics.Count)}, shortMetrics(*p.Metrics)...),
		})
		d.p("%s.", relative("This hospital's model's MAE", v.MAE, "the pooled model's", p.Metrics.MAE))
		addFig("hospital-vs-pooled.png", "MAE on this hospital's validation window: its own model and the pooled one", func() (*plot.Plot, error) { return hospitalVsPooled(r) })
	}

	if len(r.Folds) > 0 {
		d.h(2, "Backtest")
		d.p("A rolling-origin backtest: each fold validates on a window one validation period earlier than the one before, trained on the cases before it. The first fold is the model shipped.")
		var rows [][]string
		for i, f := range r.Folds {
			row := []string{strconv.Itoa(i + 1), windowText(f.Split.Training), windowText(f.Split.Validation), count(f.Split.TrainingCases), count(f.Split.ValidationCases)}
			if f.Metrics == nil {
				row = append(row, "", "", "", "", f.Error)
			} else {
				row = append(row, num(f.Lambda), num(f.Metrics.MAE), num(f.Metrics.RMSE), percent(f.Metrics.UnderRate), "")
			}
			rows = append(rows, row)
		}
		d.table([]string{"fold", "training", "validation", "training cases", "validation cases", "lambda", "MAE", "RMSE", "under-estimate rate", "error"}, rows)
	}

	cols := slices.Sorted(maps.Keys(v.Segments))
	if len(cols) > 0 {
		d.h(2, "By segment")
		for _, col := range cols {
			d.h(3, col)
			head := []string{"value", "cases", "MAE", "median APE", "under-estimate rate"}
			if v.Calibrated != nil {
				head = append(head, "calibrated under-estimate rate")
			}
			var rows [][]string
			for _, s := range v.Segments[col] {
				row := []string{s.Value, count(s.Count), num(s.MAE), optPercent(s.MedianAPE), percent(s.UnderRate)}
				if s.Calibrated != nil {
					row = append(row, percent(s.Calibrated.UnderRate))
				}
				rows = append(rows, row)
			}
			d.table(head, rows)
		}
		addFig("under-rate-by-segment.png", "Under-estimate rate by segment, of the predictions and of the calibrated answers", func() (*plot.Plot, error) { return underBySegment(r, cols) })
	}

	d.h(2, "Predictions")
	addFig("predicted-vs-actual.png", "Predicted vs actual on the validation window", func() (*plot.Plot, error) { return predictedVsActual(r) })
	if a.Lineage.Validation != (models.Window{}) || (r.Comparison != nil && r.Comparison.Split.Kind == train.TimeSplit) {
		addFig("residuals-over-time.png", "Relative error of every case over time: training and validation", func() (*plot.Plot, error) { return residualsOverTime(r) })
	}

	d.h(2, "Lineage")
	l := a.Lineage
	items := []string{
		"contract SHA-256: " + l.Contract,
		"ward: " + l.Ward,
		fmt.Sprintf("model: %d training cases, %d validation cases, %d encoded columns", a.Training.Rows, a.Training.ValidationRows, len(a.Coefficients)),
	}
	if l.Train != (models.Window{}) {
		items = append(items, "training window: "+windowText(l.Train), "validation window: "+windowText(l.Validation))
	}
	d.list(items...)
	var files [][]string
	for _, f := range l.Files {
		files = append(files, []string{f.Name, f.SHA256})
	}
	d.table([]string{"file", "SHA-256"}, files)
	return d, plots
}

func describeSplit(s train.Split) string {
	var b strings.Builder
	switch s.Kind {
	case train.TimeSplit:
		fmt.Fprintf(&b, "Time split: trained on the %s cases from %s to %s, validated on the %s cases from %s to %s (the window from %s up to %s",
			count(s.TrainingCases), s.Training.From, s.Training.To, count(s.ValidationCases), s.Validation.From, s.Validation.To, s.Cutoff, s.End)
		if s.Gap != "0" {
			fmt.Fprintf(&b, ", after a gap of %s that left out %s cases", s.Gap, count(s.GapCases))
		}
		b.WriteString(").")
		if s.Grouped {
			fmt.Fprintf(&b, " Grouped by patient: %s earlier cases of patients with a case in the validation window moved to validation with them.", count(s.Moved))
		}
	default:
		fmt.Fprintf(&b, "Random split: %s of the cases validated on, drawn with seed %d: %s training cases, %s validation cases.",
			percent(s.Fraction), s.Seed, count(s.TrainingCases), count(s.ValidationCases))
		if s.Grouped {
			b.WriteString(" Grouped by patient: each patient's cases are all on one side.")
		}
	}
	return b.String()
}

func metricRows(m models.Metrics, cal *models.Metrics) [][]string {
	rows := [][]string{
		{"cases", count(m.Count)},
		{"MAE", num(m.MAE)},
		{"RMSE", num(m.RMSE)},
		{"MAPE", optPercent(m.MAPE)},
		{"median APE", optPercent(m.MedianAPE)},
		{"under-estimate rate", percent(m.UnderRate)},
	}
	if cal != nil {
		for i, v := range []string{count(cal.Count), num(cal.MAE), num(cal.RMSE), optPercent(cal.MAPE), optPercent(cal.MedianAPE), percent(cal.UnderRate)} {
			rows[i] = append(rows[i], v)
		}
	}
	return rows
}

func shortMetrics(m models.Metrics) []string {
	return []string{num(m.MAE), num(m.RMSE), optPercent(m.MedianAPE), percent(m.UnderRate)}
}

// relative says how much a is below (or above) b.
func relative(aName string, a float64, bName string, b float64) string {
	if b == 0 {
		return fmt.Sprintf("%s is %s, %s %s", aName, num(a), bName, num(b))
	}
	d := a/b - 1
	dir := "below"
	if d > 0 {
		dir = "above"
	}
	return fmt.Sprintf("%s (%s) is %.1f%% %s %s (%s)", aName, num(a), 100*math.Abs(d), dir, bName, num(b))
}

func shiftText(shift float64, transform string) string {
	switch transform {
	case models.Log:
		return fmt.Sprintf("a factor of %.4f (exp of the shift %.4f on the log scale)", math.Exp(shift), shift)
	case models.Log1p:
		return fmt.Sprintf("a factor of %.4f on 1 + the prediction (exp of the shift %.4f on the log1p scale)", math.Exp(shift), shift)
	}
	return fmt.Sprintf("%+.2f", shift)
}

func windowText(w models.Window) string {
	if w == (models.Window{}) {
		return ""
	}
	return w.From + " to " + w.To
}

func metricText(v float64, metric string) string {
	if metric == "under_rate" {
		return percent(v)
	}
	return num(v)
}

// num writes a number for people: whole and with thousands separators
// from 100 up, else with 2 to 4 significant decimals.
func num(v float64) string {
	if math.Abs(v) < 100 {
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
	return group(strconv.FormatFloat(math.Round(v), 'f', 0, 64))
}

func count(n int) string { return group(strconv.Itoa(n)) }

func group(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func percent(v float64) string { return strconv.FormatFloat(100*v, 'f', 1, 64) + "%" }

func optPercent(v *float64) string {
	if v == nil {
		return "n/a"
	}
	return percent(*v)
}

func capitalise(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
