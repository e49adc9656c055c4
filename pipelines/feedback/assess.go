package feedback

import (
	"bytes"
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/page"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/store"
)

// assess ranges over a hospital's outcomes (in order of prediction time,
// as the store gives them) and judges each model version that served
// them against its artifact in arts.
func assess(h *contract.Hospital, arts map[string]*models.Artifact, outcomes iter.Seq2[store.Outcome, error]) (Hospital, error) {
	res := Hospital{Hospital: h.ID, Name: h.Name, Models: []Model{}, Degradation: *h.Feedback.Degradation, MinCases: h.Feedback.MinCases}
	var order []*version
	byVersion := map[string]*version{}
	for o, err := range outcomes {
		if err != nil {
			return res, err
		}
		v := byVersion[o.ModelVersion]
		if v == nil {
			v = newVersion(o.ModelVersion, arts[o.ModelVersion])
			byVersion[o.ModelVersion] = v
			order = append(order, v)
		}
		v.add(o)
		res.Predictions++
		res.Current = o.ModelVersion
	}
	for _, v := range order {
		m := v.result(h.Feedback)
		if !m.Artifact {
			res.WithoutArtifact += m.Predictions
		}
		res.Models = append(res.Models, m)
	}
	if res.Predictions == 0 {
		res.Verdict, res.Reason = NoPredictions, "no predictions served in the window"
		return res, nil
	}
	cur := res.Model(res.Current)
	res.Verdict, res.Degraded, res.Drifted = cur.Verdict, cur.Degraded, cur.Drifted
	res.Reason = "model " + cur.Version + ": " + cur.Reason
	return res, nil
}

// Model returns the model of the given version, or nil.
func (h *Hospital) Model(version string) *Model {
	for i := range h.Models {
		if h.Models[i].Version == version {
			return &h.Models[i]
		}
	}
	return nil
}

// Worst returns the judged feature with the highest PSI, or nil.
func (m *Model) Worst() *FeatureDrift {
	var w *FeatureDrift
	for i := range m.Drift {
		if m.Drift[i].Judged && (w == nil || m.Drift[i].PSI > w.PSI) {
			w = &m.Drift[i]
		}
	}
	return w
}

// version gathers the predictions of one model version.
type version struct {
	m     Model
	a     *models.Artifact
	drift *models.Drift
	// The cases named, once each: case id -> index into actual,
	// predicted and month, or -1 for a case without an outcome.
	cases             map[string]int
	actual, predicted []float64
	month             []string
	// Scratch for reading logged inputs.
	fields map[string]any
	row    []models.Value
}

func newVersion(name string, a *models.Artifact) *version {
	v := &version{m: Model{Version: name, Digests: []string{}, Months: []Month{}}, a: a, cases: map[string]int{}, fields: map[string]any{}}
	if a != nil {
		v.drift = a.Drift()
	}
	return v
}

func (v *version) add(o store.Outcome) {
	m := &v.m
	if m.Predictions == 0 {
		m.First = o.Time
	}
	m.Last = o.Time
	m.Predictions++
	if !slices.Contains(m.Digests, o.ModelDigest) {
		m.Digests = append(m.Digests, o.ModelDigest)
	}
	if o.CaseID == "" {
		m.Counts.WithoutCaseID++
	} else if i, seen := v.cases[o.CaseID]; seen {
		// Outcomes come in order of time: this one is the latest.
		m.Counts.Repeated++
		if i >= 0 {
			v.predicted[i] = o.Predicted
		}
	} else if o.Actual.Null {
		m.Counts.AwaitingOutcome++
		v.cases[o.CaseID] = -1
	} else {
		at := o.CaseTime
		if at.IsZero() {
			at = o.Time
		}
		v.cases[o.CaseID] = len(v.actual)
		v.actual = append(v.actual, o.Actual.Num)
		v.predicted = append(v.predicted, o.Predicted)
		v.month = append(v.month, at.UTC().Format("2006-01"))
	}
	if v.a == nil {
		return
	}
	switch {
	case o.Inputs != nil:
		clear(v.fields)
		d := json.NewDecoder(bytes.NewReader(o.Inputs))
		d.UseNumber()
		if err := d.Decode(&v.fields); err != nil {
			m.Counts.UnreadableInputs++
			return
		}
		var errs []*models.FieldError
		v.row, errs = v.a.ParseInput(v.fields, v.row)
		if len(errs) > 0 || v.drift.Add(v.row) != nil {
			m.Counts.UnreadableInputs++
		}
	case o.InputsHash != "":
		m.Counts.InputsHashed++
	}
}

// result computes the version's metrics and judges it by the contract's
// feedback settings.
func (v *version) result(fb contract.Feedback) Model {
	m := v.m
	m.Live = models.Evaluate(v.actual, v.predicted)
	byMonth := map[string][]int{}
	for i, mo := range v.month {
		byMonth[mo] = append(byMonth[mo], i)
	}
	for _, mo := range slices.Sorted(maps.Keys(byMonth)) {
		idx := byMonth[mo]
		actual, predicted := make([]float64, len(idx)), make([]float64, len(idx))
		for k, i := range idx {
			actual[k], predicted[k] = v.actual[i], v.predicted[i]
		}
		m.Months = append(m.Months, Month{Month: mo, Metrics: models.Evaluate(actual, predicted)})
	}
	if v.a == nil {
		m.Verdict, m.Reason = NoArtifact, "no artifact of this version among the models given: live metrics shown, not judged"
		return m
	}
	m.Artifact = true
	val := v.a.Metrics["validation"].Metrics
	m.Validation, m.ValidationWindow = &val, v.a.Lineage.Validation
	if m.Live.Count > 0 {
		change := m.Live.UnderRate - val.UnderRate
		m.UnderRateChange = &change
		if val.MAE > 0 {
			ratio := m.Live.MAE / val.MAE
			m.MAERatio = &ratio
		}
	}

	var reasons []string
	judged := m.Live.Count >= fb.MinCases
	if judged {
		limit := 1 + *fb.Degradation
		m.Degraded = m.Live.MAE > val.MAE*limit
		rel := "within"
		if m.Degraded {
			rel = "above"
		}
		ratio := "against"
		if m.MAERatio != nil {
			ratio = fmt.Sprintf("is %.2fx", *m.MAERatio)
		}
		reasons = append(reasons, fmt.Sprintf("live MAE %s over %s cases %s the validation MAE %s, %s the limit of %.2fx (degradation %g)",
			page.Num(m.Live.MAE), page.Count(m.Live.Count), ratio, page.Num(val.MAE), rel, limit, *fb.Degradation))
	} else {
		reasons = append(reasons, fmt.Sprintf("%s cases with an outcome, fewer than min_cases %d: error not judged", page.Count(m.Live.Count), fb.MinCases))
	}

	m.DriftRows = v.drift.Rows()
	switch {
	case m.DriftRows == 0 && m.Counts.InputsHashed > 0:
		m.DriftNote = "inputs hashed: drift not computed"
	case m.DriftRows == 0:
		m.DriftNote = "no readable logged inputs: drift not computed"
	default:
		bins := map[string]int{}
		for _, fs := range v.a.Summary.Features {
			bins[fs.Feature] = len(fs.Shares) + 1 // and the missing values
		}
		var act, unjudged []string
		for _, f := range v.drift.Result() {
			d := FeatureDrift{FeatureDrift: f, Bins: bins[f.Feature]}
			d.Judged = m.DriftRows >= max(fb.MinCases, RowsPerBin*d.Bins)
			m.Drift = append(m.Drift, d)
			switch {
			case !d.Judged:
				unjudged = append(unjudged, f.Feature)
			case f.Band == models.Act:
				act = append(act, fmt.Sprintf("%s %.3f", f.Feature, f.PSI))
			}
		}
		m.Drifted = len(act) > 0
		if m.Drifted {
			reasons = append(reasons, fmt.Sprintf("drift to act on (PSI over 0.25) in %s over %s rows", strings.Join(act, ", "), page.Count(m.DriftRows)))
		} else if w := m.Worst(); w != nil {
			reasons = append(reasons, fmt.Sprintf("no feature drifted to act on (highest PSI: %s %.3f, %s)", w.Feature, w.PSI, w.Band))
		}
		if len(unjudged) > 0 {
			reasons = append(reasons, fmt.Sprintf("%s rows of inputs are too few to judge the drift of %s (at least min_cases %d, and %d a bin)",
				page.Count(m.DriftRows), strings.Join(unjudged, ", "), fb.MinCases, RowsPerBin))
		}
	}
	if m.DriftNote != "" {
		reasons = append(reasons, m.DriftNote)
	}
	m.Reason = strings.Join(reasons, "; ")
	switch {
	case m.Degraded && m.Drifted:
		m.Verdict = DegradedAndDrifted
	case m.Degraded:
		m.Verdict = Degraded
	case m.Drifted:
		m.Verdict = Drifted
	case !judged:
		m.Verdict = TooFewCases
	default:
		m.Verdict = Healthy
	}
	return m
}
