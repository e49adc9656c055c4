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

	"github.com/wardml/ward/internal/page"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/models/trained"
	"github.com/wardml/ward/pipelines/train"
)

// The files of a hospital's folder.
const (
	ModelFile   = trained.ModelFile
	ReportDir   = trained.ReportDir
	MetricsFile = trained.MetricsFile
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
	md, html, pngs, err := document(r).Render()
	if err != nil {
		return nil, fmt.Errorf("report %s: %w", r.Hospital, err)
	}
	files := map[string][]byte{ModelFile: model, ReportDir + "/" + MetricsFile: append(metrics, '\n'),
		ReportDir + "/report.md": md, ReportDir + "/report.html": html}
	for name, png := range pngs {
		files[ReportDir+"/"+name] = png
	}
	return files, nil
}

// document writes the report of one hospital.
func document(r *train.Result) *page.Doc {
	a := r.Artifact
	d := page.New(fmt.Sprintf("%s (%s): model %s", r.Name, r.Hospital, r.Version))
	d.P("A %s model of %s (target transform %s) for this hospital, trained by ward %s under the contract with SHA-256 %s.",
		familyText(a.Family), a.Target.Column, a.Target.Transform, a.Lineage.Ward, a.Lineage.Contract)
	d.P("Where each figure comes from: every choice (the ridge penalty, the learning rate and number of trees, the calibration shift, the family) was made on the inner validation, %s cases held out of the training part by the same kind of split as the outer one, by a model fitted on the rest; the model was then refitted on all %s training cases. The validation window (%s cases) was read once, for the figures marked validation and for the gate.",
		page.Count(a.Training.InnerRows), page.Count(a.Training.Rows), page.Count(a.Training.ValidationRows))

	if len(r.Candidates) > 0 {
		d.H(2, "Model choice")
		d.P("%s.", capitalise(r.Choice))
		var rows [][]string
		for _, c := range r.Candidates {
			shipped := ""
			if c.Shipped {
				shipped = "shipped"
			}
			if c.Inner == nil {
				rows = append(rows, []string{c.Family, "", "", "", "", "", c.Error})
				continue
			}
			rows = append(rows, []string{c.Family, metricText(metricOf(*c.Inner, r.Gate.Metric), r.Gate.Metric), page.Num(c.Validation.MAE), page.Num(c.Validation.RMSE), page.Percent(c.Validation.UnderRate), settingsText(c), shipped})
		}
		d.Table([]string{"family", "inner " + r.Gate.Metric + " (chosen on)", "validation MAE", "validation RMSE", "validation under-estimate rate", "settings (inner validation)", ""}, rows)
		d.Figure("candidates.png", "MAE of each candidate family: on the inner validation (chosen on) and on the validation window (shown only)", func() (*plot.Plot, error) { return candidates(r) })
	}

	d.H(2, "Gate")
	if r.Gate.Passed {
		d.P("PASSED: %s.", r.Gate.Reason)
	} else {
		d.P("FAILED: %s. The model is written so that a person can look at it, and marked failed in metrics.json and summary.json.", r.Gate.Reason)
	}
	if r.Gate.Production != nil {
		d.Table([]string{"model", r.Gate.Metric, "cases"}, [][]string{
			{"new " + r.Version, metricText(r.Gate.New, r.Gate.Metric), page.Count(r.Gate.Cases)},
			{"production " + r.Gate.ProductionVersion, metricText(*r.Gate.Production, r.Gate.Metric), page.Count(r.Gate.Cases)},
		})
	}

	d.H(2, "Data")
	d.P("%s cases read from the database, from %s files; %s left after cleaning.", page.Count(r.Rows), page.Count(len(a.Lineage.Files)), page.Count(r.Cleaned))
	if len(r.Cleaning) > 0 {
		var rows [][]string
		for _, c := range r.Cleaning {
			capped := ""
			if c.Cap != nil {
				capped = fmt.Sprintf("%s values of the training cases lowered to %s", page.Count(c.Capped), page.Num(*c.Cap))
			}
			rows = append(rows, []string{c.Rule, page.Count(c.Removed), capped})
		}
		d.Table([]string{"cleaning rule", "cases removed", "values capped"}, rows)
	}

	d.H(2, "Split")
	d.P("%s", describeSplit(r.Split))
	if a.Forest != nil {
		d.P("Gradient boosting: %d trees at learning rate %s (leaf penalty %s), the learning rate and number of trees chosen by early stopping on the inner validation. Inner validation RMSE of each learning rate, in the transformed target's unit:", len(a.Forest.Trees), page.Num(a.Forest.LearningRate), page.Num(a.Lambda))
		var grid [][]string
		for _, g := range r.Grid {
			rmse := g.Error
			if g.RMSE != nil {
				rmse = strconv.FormatFloat(*g.RMSE, 'f', 5, 64)
			}
			grid = append(grid, []string{page.Num(g.LearningRate), strconv.Itoa(g.Trees), rmse})
		}
		d.Table([]string{"learning rate", "trees", "inner validation RMSE"}, grid)
	} else {
		d.P("The ridge penalty (lambda) was chosen on the inner validation from the contract's grid: %s. Inner validation RMSE of each, in the transformed target's unit:", page.Num(r.Lambda))
		var grid [][]string
		for _, g := range r.Grid {
			rmse := g.Error
			if g.RMSE != nil {
				rmse = strconv.FormatFloat(*g.RMSE, 'f', 5, 64)
			}
			grid = append(grid, []string{page.Num(g.Lambda), rmse})
		}
		d.Table([]string{"lambda", "inner validation RMSE"}, grid)
	}

	d.H(2, "Validation metrics")
	v := r.Validation
	head := []string{"metric", "predictions"}
	if v.Calibrated != nil {
		head = append(head, fmt.Sprintf("calibrated (target under-estimate rate %s)", page.Percent(r.Calibration.UnderRate)))
	}
	d.Table(head, metricRows(v.Metrics, v.Calibrated))
	if in := r.Inner; in != nil {
		d.P("The same figures on the inner validation (%s cases of the training part, predicted by the model fitted without them), where the calibration was fitted:", page.Count(in.Count))
		d.Table(head, metricRows(in.Metrics, in.Calibrated))
	}
	d.P("MAE and RMSE are in the unit of %s; MAPE and median APE are absolute percentage errors, shown only when every actual value is above zero; the under-estimate rate is the share of cases predicted below their actual value (the group prefers over-estimates).", a.Target.Column)
	if c := r.Calibration; c != nil {
		d.P("Calibration moves every prediction by %s: the quantile of the inner validation's residuals that leaves %s of those cases predicted below their actual value; on the validation window, which it never saw, the rate is what the table shows.",
			shiftText(c.Shift, a.Target.Transform), page.Percent(c.UnderRate))
	}

	d.H(2, "Time split vs random split")
	if c := r.Comparison; c == nil {
		d.P("The contract has no time column: only a random split is possible, and its error is likely optimistic where patients come back or prices drift.")
	} else if c.Metrics == nil {
		d.P("The %s split could not be fitted: %s.", c.Split.Kind, c.Error)
	} else {
		rows := [][]string{
			append([]string{r.Split.Kind + " split (the model shipped)", page.Count(v.Count)}, shortMetrics(v.Metrics)...),
			append([]string{c.Split.Kind + " split", page.Count(c.Metrics.Count)}, shortMetrics(*c.Metrics)...),
		}
		d.Table([]string{"split", "cases validated", "MAE", "RMSE", "median APE", "under-estimate rate"}, rows)
		timeMAE, randomMAE := v.MAE, c.Metrics.MAE
		if r.Split.Kind == train.RandomSplit {
			timeMAE, randomMAE = randomMAE, timeMAE
		}
		d.P("%s. %s", relative("The random split's MAE", randomMAE, "the time split's", timeMAE), describeSplit(c.Split))
		d.Figure("time-vs-random.png", "Validation MAE under the time split and under a random split", func() (*plot.Plot, error) { return timeVsRandom(r) })
	}

	d.H(2, "Per-hospital vs pooled")
	if p := r.Pooled; p.Metrics == nil {
		d.P("%s.", capitalise(p.Reason))
	} else {
		d.P("The pooled model is one ridge regression over the cases of %s, with the hospital as a feature, on the same split; scored here on this hospital's validation window (lambda %s).",
			strings.Join(p.Hospitals, ", "), page.Num(p.Lambda))
		d.Table([]string{"model", "cases", "MAE", "RMSE", "median APE", "under-estimate rate"}, [][]string{
			append([]string{"per-hospital (this model)", page.Count(v.Count)}, shortMetrics(v.Metrics)...),
			append([]string{"pooled", page.Count(p.Metrics.Count)}, shortMetrics(*p.Metrics)...),
		})
		d.P("%s.", relative("This hospital's model's MAE", v.MAE, "the pooled model's", p.Metrics.MAE))
		d.Figure("hospital-vs-pooled.png", "MAE on this hospital's validation window: its own model and the pooled one", func() (*plot.Plot, error) { return hospitalVsPooled(r) })
	}

	if len(r.Folds) > 0 {
		d.H(2, "Backtest")
		d.P("A rolling-origin backtest: each fold validates on a window one validation period earlier than the one before, trained on the cases before it. The first fold is the model shipped.")
		var rows [][]string
		for i, f := range r.Folds {
			row := []string{strconv.Itoa(i + 1), windowText(f.Split.Training), windowText(f.Split.Validation), page.Count(f.Split.TrainingCases), page.Count(f.Split.ValidationCases)}
			if f.Metrics == nil {
				row = append(row, "", "", "", "", f.Error)
			} else {
				row = append(row, page.Num(f.Lambda), page.Num(f.Metrics.MAE), page.Num(f.Metrics.RMSE), page.Percent(f.Metrics.UnderRate), "")
			}
			rows = append(rows, row)
		}
		d.Table([]string{"fold", "training", "validation", "training cases", "validation cases", "lambda", "MAE", "RMSE", "under-estimate rate", "error"}, rows)
	}

	cols := slices.Sorted(maps.Keys(v.Segments))
	if len(cols) > 0 {
		d.H(2, "By segment")
		for _, col := range cols {
			d.H(3, col)
			head := []string{"value", "cases", "MAE", "median APE", "under-estimate rate"}
			if v.Calibrated != nil {
				head = append(head, "calibrated under-estimate rate")
			}
			var rows [][]string
			for _, s := range v.Segments[col] {
				row := []string{s.Value, page.Count(s.Count), page.Num(s.MAE), page.OptPercent(s.MedianAPE), page.Percent(s.UnderRate)}
				if s.Calibrated != nil {
					row = append(row, page.Percent(s.Calibrated.UnderRate))
				}
				rows = append(rows, row)
			}
			d.Table(head, rows)
		}
		d.Figure("under-rate-by-segment.png", "Under-estimate rate by segment, of the predictions and of the calibrated answers", func() (*plot.Plot, error) { return underBySegment(r, cols) })
	}

	d.H(2, "Predictions")
	d.Figure("predicted-vs-actual.png", "Predicted vs actual on the validation window", func() (*plot.Plot, error) { return predictedVsActual(r) })
	if a.Lineage.Validation != (models.Window{}) || (r.Comparison != nil && r.Comparison.Split.Kind == train.TimeSplit) {
		d.Figure("residuals-over-time.png", "Relative error of every case over time: training and validation", func() (*plot.Plot, error) { return residualsOverTime(r) })
	}

	d.H(2, "Lineage")
	l := a.Lineage
	items := []string{
		"contract SHA-256: " + l.Contract,
		"ward: " + l.Ward,
		fmt.Sprintf("model: %s, %d training cases (%d of them the inner validation), %d validation cases, %d encoded columns, %d trees", a.Family, a.Training.Rows, a.Training.InnerRows, a.Training.ValidationRows, len(a.Encoder.Names()), treeCount(a)),
	}
	if l.Train != (models.Window{}) {
		items = append(items, "training window: "+windowText(l.Train), "validation window: "+windowText(l.Validation))
	}
	d.List(items...)
	var files [][]string
	for _, f := range l.Files {
		files = append(files, []string{f.Name, f.SHA256})
	}
	d.Table([]string{"file", "SHA-256"}, files)
	return d
}

func describeSplit(s train.Split) string {
	var b strings.Builder
	switch s.Kind {
	case train.TimeSplit:
		fmt.Fprintf(&b, "Time split: trained on the %s cases from %s to %s, validated on the %s cases from %s to %s (the window from %s up to %s",
			page.Count(s.TrainingCases), s.Training.From, s.Training.To, page.Count(s.ValidationCases), s.Validation.From, s.Validation.To, s.Cutoff, s.End)
		if s.Gap != "0" {
			fmt.Fprintf(&b, ", after a gap of %s that left out %s cases", s.Gap, page.Count(s.GapCases))
		}
		b.WriteString(").")
		if s.Grouped {
			fmt.Fprintf(&b, " Grouped by patient: %s earlier cases of patients with a case in the validation window moved to validation with them.", page.Count(s.Moved))
		}
	default:
		fmt.Fprintf(&b, "Random split: %s of the cases validated on, drawn with seed %d: %s training cases, %s validation cases.",
			page.Percent(s.Fraction), s.Seed, page.Count(s.TrainingCases), page.Count(s.ValidationCases))
		if s.Grouped {
			b.WriteString(" Grouped by patient: each patient's cases are all on one side.")
		}
	}
	return b.String()
}

func metricRows(m models.Metrics, cal *models.Metrics) [][]string {
	rows := [][]string{
		{"cases", page.Count(m.Count)},
		{"MAE", page.Num(m.MAE)},
		{"RMSE", page.Num(m.RMSE)},
		{"MAPE", page.OptPercent(m.MAPE)},
		{"median APE", page.OptPercent(m.MedianAPE)},
		{"under-estimate rate", page.Percent(m.UnderRate)},
	}
	if cal != nil {
		for i, v := range []string{page.Count(cal.Count), page.Num(cal.MAE), page.Num(cal.RMSE), page.OptPercent(cal.MAPE), page.OptPercent(cal.MedianAPE), page.Percent(cal.UnderRate)} {
			rows[i] = append(rows[i], v)
		}
	}
	return rows
}

func shortMetrics(m models.Metrics) []string {
	return []string{page.Num(m.MAE), page.Num(m.RMSE), page.OptPercent(m.MedianAPE), page.Percent(m.UnderRate)}
}

// relative says how much a is below (or above) b.
func relative(aName string, a float64, bName string, b float64) string {
	if b == 0 {
		return fmt.Sprintf("%s is %s, %s %s", aName, page.Num(a), bName, page.Num(b))
	}
	d := a/b - 1
	dir := "below"
	if d > 0 {
		dir = "above"
	}
	return fmt.Sprintf("%s (%s) is %.1f%% %s %s (%s)", aName, page.Num(a), 100*math.Abs(d), dir, bName, page.Num(b))
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
		return page.Percent(v)
	}
	return page.Num(v)
}

func capitalise(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func familyText(family string) string {
	switch family {
	case models.FamilyRidge:
		return "ridge regression"
	case models.FamilyRidgePooled:
		return "partially pooled ridge (this hospital's ridge on the residuals of the pooled one)"
	case models.FamilyGBDT:
		return "gradient-boosted trees"
	case models.FamilyGBDTPooled:
		return "pooled gradient-boosted trees (one model over the compatible hospitals, the hospital a feature; this hospital's share of it)"
	}
	return family
}

func settingsText(c train.Candidate) string {
	if c.Trees > 0 || c.LearningRate > 0 {
		return fmt.Sprintf("%d trees, learning rate %s", c.Trees, page.Num(c.LearningRate))
	}
	return "lambda " + page.Num(c.Lambda)
}

func treeCount(a *models.Artifact) int {
	if a.Forest == nil {
		return 0
	}
	return len(a.Forest.Trees)
}

// metricOf picks the gate's metric out of a set.
func metricOf(m models.Metrics, name string) float64 {
	switch name {
	case "rmse":
		return m.RMSE
	case "under_rate":
		return m.UnderRate
	}
	return m.MAE
}
