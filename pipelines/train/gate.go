package train

import (
	"fmt"

	"github.com/wardml/ward/models"
	"github.com/wardml/ward/models/trained"
)

// Gate is the new model against the model in production, both scored on
// the new model's validation window with the contract's gate metric. The
// gate compares the models' predictions (not the calibrated answers): the
// numbers of the validation metrics and of feedback's live error.
type Gate = trained.Gate

// gate scores the new model (its predictions of the validation cases,
// points) and the one in production (nil: none) on the same cases. A
// production model that cannot be scored on them (it reads a column the
// contract no longer has, or of another type) fails the gate: nothing
// shows the new model is no worse, so a person decides.
func (p *dataset) gate(points []Point, production *models.Artifact) Gate {
	tr := p.h.Training
	g := Gate{Metric: tr.Gate.Metric, MaxRegression: *tr.Gate.MaxRegression}
	var actual, mine []float64
	for _, pt := range points {
		if pt.Validation {
			actual, mine = append(actual, pt.Actual), append(mine, pt.Predicted)
		}
	}
	g.Cases = len(actual)
	g.New = metricOf(models.Evaluate(actual, mine), g.Metric)
	if production == nil {
		g.Passed = true
		g.Reason = "no model in production: nothing to compare with"
		return g
	}
	g.ProductionVersion = production.Version
	var cols []int
	for _, in := range production.Inputs {
		j := p.column(in.Name)
		switch {
		case j < 0:
			g.Reason = fmt.Sprintf("the production model %s reads column %s, which the contract no longer has: the two cannot be compared on the same cases; a person decides", production.Version, in.Name)
			return g
		case p.cols[j].Type != in.Type:
			g.Reason = fmt.Sprintf("the production model %s reads column %s as %s, and the contract now has it as %s: the two cannot be compared on the same cases; a person decides", production.Version, in.Name, in.Type, p.cols[j].Type)
			return g
		}
		cols = append(cols, j)
	}
	var s models.Sparse
	row := make([]models.Value, len(cols))
	var theirs []float64
	for _, i := range p.main.valid {
		if p.rows[i][p.target].Null {
			continue
		}
		pr, err := production.Predict(&s, project(row, p.rows[i], cols))
		if err != nil {
			g.Reason = fmt.Sprintf("the production model %s cannot predict validation case %d: %v; a person decides", production.Version, i+1, err)
			return g
		}
		theirs = append(theirs, pr.Value)
	}
	prod := metricOf(models.Evaluate(actual, theirs), g.Metric)
	g.Production = &prod
	g.Passed = g.New <= prod*(1+g.MaxRegression)
	verdict := "passed"
	if !g.Passed {
		verdict = "failed"
	}
	if prod > 0 {
		reg := g.New/prod - 1
		g.Regression = &reg
		g.Reason = fmt.Sprintf("%s %s on %d validation cases: new %s, production %s (%s): %+.1f%% against the %+.1f%% allowed", verdict, g.Metric, g.Cases,
			formatMetric(g.New, g.Metric), formatMetric(prod, g.Metric), production.Version, 100*reg, 100*g.MaxRegression)
	} else {
		g.Reason = fmt.Sprintf("%s %s on %d validation cases: new %s, production %s (%s), which no model can beat", verdict, g.Metric, g.Cases,
			formatMetric(g.New, g.Metric), formatMetric(prod, g.Metric), production.Version)
	}
	return g
}

// metricOf picks a gate metric out of a set.
func metricOf(m models.Metrics, name string) float64 {
	switch name {
	case "rmse":
		return m.RMSE
	case "under_rate":
		return m.UnderRate
	}
	return m.MAE
}

func formatMetric(v float64, name string) string {
	if name == "under_rate" {
		return fmt.Sprintf("%.1f%%", 100*v)
	}
	return fmt.Sprintf("%.2f", v)
}
