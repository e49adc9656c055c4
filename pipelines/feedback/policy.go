package feedback

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/page"
)

// Release is what the manifest repo says a hospital runs, as the policy
// needs to know it (tools/heal reads it from the repo's history).
type Release struct {
	Version string `json:"version"`
	Digest  string `json:"digest"`
	// Commit made it live: a deploy, a reapply or a rollback.
	Commit string `json:"commit,omitempty"`
	// ByRollback says it is live because a rollback undid the release
	// after it.
	ByRollback bool `json:"by_rollback,omitempty"`
	// Previous is what a rollback would restore: nil when this is the
	// only deploy in effect.
	Previous *Release `json:"previous,omitempty"`
}

// Plan is what the contracts' feedback policies make of a report: one
// Decision per hospital, and the incident when more hospitals ask for a
// rollback than one run may do.
type Plan struct {
	MaxRollbacks int        `json:"max_rollbacks"`
	Decisions    []Decision `json:"decisions"`
	// Incident says why rollbacks were held back (a fleet-wide fault),
	// empty when none were.
	Incident string `json:"incident,omitempty"`
}

// Decision is what the policy does, or declines to do, for one hospital.
type Decision struct {
	Hospital string `json:"hospital"`
	Verdict  string `json:"verdict"`
	// Version is the current model's (the one the verdict is about).
	Version string `json:"version,omitempty"`
	// OnDegraded and OnDrift are the contract's policies.
	OnDegraded string `json:"on_degraded"`
	OnDrift    string `json:"on_drift"`
	// Rollback is set when the model is degraded and the policy is
	// rollback: done, or declined with its reason.
	Rollback *RollbackStep `json:"rollback,omitempty"`
	// Retrain is set when the model drifted and the policy is retrain.
	Retrain *RetrainStep `json:"retrain,omitempty"`
	// Alert says a person should look (ward feedback exits 4), and
	// Alerts why.
	Alert  bool     `json:"alert"`
	Alerts []string `json:"alerts,omitempty"`
	// Summary is one line of everything above, for the log.
	Summary string `json:"summary"`
}

// The statuses of a step.
const (
	// StatusPlanned: the step is to be done (without --apply, the end).
	StatusPlanned = "planned"
	// StatusDone: it was done.
	StatusDone = "done"
	// StatusDeclined: the policy asked for it and it was not done; the
	// reason says why.
	StatusDeclined = "declined"
	// StatusFailed: it was tried and failed.
	StatusFailed = "failed"
)

// RollbackStep is the revert of a degraded model's deploy.
type RollbackStep struct {
	Status string `json:"status"`
	Reason string `json:"reason"`
	// From is the degraded release, To the one the revert restores.
	From     *Release `json:"from,omitempty"`
	To       *Release `json:"to,omitempty"`
	Evidence Evidence `json:"evidence"`
	// Commit is the revert, once done.
	Commit string `json:"commit,omitempty"`
}

// Evidence is what the verdict on a degraded model rests on; the revert's
// message carries it.
type Evidence struct {
	LiveMAE       float64 `json:"live_mae"`
	ValidationMAE float64 `json:"validation_mae"`
	// Ratio is live over validation MAE; Limit is 1 + degradation.
	Ratio float64 `json:"mae_ratio"`
	Limit float64 `json:"limit"`
	// Cases are the cases with an outcome the live MAE is over, and
	// MinCases the contract's fewest.
	Cases    int `json:"cases"`
	MinCases int `json:"min_cases"`
	// From and To are the first and last prediction of the model that
	// the cases come from.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// Trailers are the evidence as Git trailer lines (key, value).
func (e Evidence) Trailers() [][2]string {
	return [][2]string{
		{"Ward-Live-MAE", page.Num(e.LiveMAE)},
		{"Ward-Validation-MAE", page.Num(e.ValidationMAE)},
		{"Ward-MAE-Ratio", fmt.Sprintf("%.3f", e.Ratio)},
		{"Ward-Cases", fmt.Sprint(e.Cases)},
		{"Ward-Window", e.From.UTC().Format(time.RFC3339) + "/" + e.To.UTC().Format(time.RFC3339)},
	}
}

// Text is the evidence in a sentence.
func (e Evidence) Text() string {
	return fmt.Sprintf("live MAE %s over %d cases with an outcome (min_cases %d), served %s to %s, is %.2fx the validation MAE %s, above the limit of %.2fx",
		page.Num(e.LiveMAE), e.Cases, e.MinCases, e.From.UTC().Format(time.DateOnly), e.To.UTC().Format(time.DateOnly), e.Ratio, page.Num(e.ValidationMAE), e.Limit)
}

// RetrainStep is the mark that makes the next ward train take the
// hospital first.
type RetrainStep struct {
	Status string `json:"status"`
	Reason string `json:"reason"`
}

// Decide applies each hospital's feedback policy (its contract's
// on_degraded and on_drift) to what the report found, given what the
// manifest repo says each hospital runs (live, by hospital). It plans,
// and does nothing: tools/heal carries the plan out.
//
// A degraded current model is rolled back (on_degraded: rollback) only
// when the verdict rests on at least min_cases cases, the model is the one
// the manifest repo has live, that release is not itself a rollback's
// (ward never rolls back a rollback: a person decides then), there is an
// earlier release in effect to go back to, and that release was not found
// degraded by its own live cases. At most maxRollbacks hospitals are
// rolled back, the worst (highest live/validation MAE) first: more than
// that in one run is a fleet-wide fault, an incident for a person, not a
// revert each. Everything declined says why, and alerts.
func Decide(r *Report, hs []*contract.Hospital, live map[string]*Release, maxRollbacks int) *Plan {
	p := &Plan{MaxRollbacks: maxRollbacks, Decisions: []Decision{}}
	byID := map[string]*contract.Hospital{}
	for _, h := range hs {
		byID[h.ID] = h
	}
	var candidates []*Decision
	for i := range r.Hospitals {
		h := &r.Hospitals[i]
		c := byID[h.Hospital]
		if c == nil {
			continue
		}
		d := Decision{Hospital: h.Hospital, Verdict: h.Verdict, Version: h.Current, OnDegraded: c.Feedback.OnDegraded, OnDrift: c.Feedback.OnDrift}
		if h.Error != "" {
			d.Verdict = "not assessed"
			d.alert(h.Error)
			p.Decisions = append(p.Decisions, d)
			continue
		}
		m := h.Model(h.Current)
		if h.Degraded && m != nil {
			switch c.Feedback.OnDegraded {
			case contract.PolicyNone:
			case contract.PolicyAlert:
				d.alert("degraded: " + h.Reason)
			case contract.PolicyRollback:
				d.Rollback = rollbackStep(h, m, live[h.Hospital])
				if d.Rollback.Status == StatusPlanned {
					candidates = append(candidates, &d)
				} else if d.Rollback.From == nil || d.Rollback.From.Version == h.Current {
					// Declined while the degraded model still runs.
					d.alert(declinedAlert + d.Rollback.Reason)
				}
			}
		}
		if h.Drifted && m != nil {
			switch c.Feedback.OnDrift {
			case contract.PolicyNone:
			case contract.PolicyAlert:
				d.alert("drifted: " + h.Reason)
			case contract.PolicyRetrain:
				reason := "drifted: the next ward train takes it first"
				if w := m.Worst(); w != nil {
					reason = fmt.Sprintf("drifted (%s PSI %.3f over %s rows): the next ward train takes it first", w.Feature, w.PSI, page.Count(m.DriftRows))
				}
				d.Retrain = &RetrainStep{Status: StatusPlanned, Reason: reason}
			}
		}
		p.Decisions = append(p.Decisions, d)
	}
	// Decisions holds values: find the candidates again by hospital.
	slices.SortStableFunc(candidates, func(a, b *Decision) int { return cmp.Compare(b.Rollback.Evidence.Ratio, a.Rollback.Evidence.Ratio) })
	var held []string
	for i, c := range candidates {
		d := p.decision(c.Hospital)
		d.Rollback = c.Rollback
		if i < maxRollbacks {
			continue
		}
		d.Rollback.Status = StatusDeclined
		d.Rollback.Reason = fmt.Sprintf("%d hospitals ask for a rollback in this run, more than the limit of %d (--max-rollbacks): a fleet-wide fault is an incident for a person, not a revert each", len(candidates), maxRollbacks)
		d.alert(declinedAlert + d.Rollback.Reason)
		held = append(held, d.Hospital)
	}
	if len(held) > 0 {
		var done []string
		for _, c := range candidates[:maxRollbacks] {
			done = append(done, c.Hospital)
		}
		p.Incident = fmt.Sprintf("%d hospitals have a degraded model at once (%s): a fleet-wide fault (data, serving or the outcomes' source) is likelier than %d bad models; ", len(candidates), strings.Join(hospitalsOf(candidates), ", "), len(candidates))
		if len(done) > 0 {
			p.Incident += fmt.Sprintf("rolled back %s (the limit of %d a run), held back %s: look before rolling back more", strings.Join(done, ", "), maxRollbacks, strings.Join(held, ", "))
		} else {
			p.Incident += fmt.Sprintf("none rolled back (the limit is %d a run): look first", maxRollbacks)
		}
	}
	for i := range p.Decisions {
		p.Decisions[i].Summarise()
	}
	return p
}

func hospitalsOf(ds []*Decision) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Hospital
	}
	return out
}

func (p *Plan) decision(id string) *Decision {
	for i := range p.Decisions {
		if p.Decisions[i].Hospital == id {
			return &p.Decisions[i]
		}
	}
	return nil
}

// Alerted returns the decisions that ask a person to look.
func (p *Plan) Alerted() []*Decision {
	var out []*Decision
	for i := range p.Decisions {
		if p.Decisions[i].Alert {
			out = append(out, &p.Decisions[i])
		}
	}
	return out
}

const declinedAlert = "degraded, not rolled back: "

func (d *Decision) alert(why string) {
	d.Alert = true
	d.Alerts = append(d.Alerts, why)
}

// Summarise sets Summary from the steps, after they change.
func (d *Decision) Summarise() {
	var parts []string
	if s := d.Rollback; s != nil {
		switch s.Status {
		case StatusDone:
			parts = append(parts, fmt.Sprintf("rolled back %s to %s by %s: %s; %s", s.From.Version, s.To.Version, shortSHA(s.Commit), s.Evidence.Text(), s.Reason))
		case StatusPlanned:
			parts = append(parts, fmt.Sprintf("to roll back %s to %s: %s; %s", s.From.Version, s.To.Version, s.Evidence.Text(), s.Reason))
		default:
			parts = append(parts, "rollback "+s.Status+": "+s.Reason)
		}
	}
	if s := d.Retrain; s != nil {
		parts = append(parts, "retrain "+s.Status+": "+s.Reason)
	}
	for _, a := range d.Alerts {
		// A declined rollback's alert is its reason, said above.
		if !strings.HasPrefix(a, declinedAlert) {
			parts = append(parts, "alert: "+a)
		}
	}
	if len(parts) == 0 {
		switch {
		case d.Verdict == Degraded || d.Verdict == Drifted || d.Verdict == DegradedAndDrifted:
			parts = append(parts, d.Verdict+": the policy is none (on_degraded "+d.OnDegraded+", on_drift "+d.OnDrift+"): nothing done")
		default:
			parts = append(parts, d.Verdict+": nothing to do")
		}
	}
	d.Summary = strings.Join(parts, "; ")
}

// rollbackStep checks whether a degraded model may be rolled back.
func rollbackStep(h *Hospital, m *Model, live *Release) *RollbackStep {
	s := &RollbackStep{Status: StatusDeclined}
	if m.Validation != nil {
		s.Evidence = Evidence{LiveMAE: m.Live.MAE, ValidationMAE: m.Validation.MAE, Limit: 1 + h.Degradation,
			Cases: m.Live.Count, MinCases: h.MinCases, From: m.First, To: m.Last}
		if m.MAERatio != nil {
			s.Evidence.Ratio = *m.MAERatio
		}
	}
	switch {
	case m.Validation == nil || m.Live.Count < h.MinCases:
		// The verdict needs both; say so rather than trust it blindly.
		s.Reason = fmt.Sprintf("%d cases with an outcome, fewer than min_cases %d: never acted on", m.Live.Count, h.MinCases)
	case live == nil:
		s.Reason = "the manifest repo has no release of it: nothing to roll back"
	case live.Version != m.Version:
		s.From = live
		s.Reason = fmt.Sprintf("the manifest repo runs %s (%s), not the degraded %s: replaced already", live.Version, shortSHA(live.Digest), m.Version)
	case live.ByRollback:
		s.From = live
		s.Reason = fmt.Sprintf("%s is live by a rollback (%s): ward never rolls back a rollback; a person decides what runs next", live.Version, shortSHA(live.Commit))
	case live.Previous == nil:
		s.From = live
		s.Reason = fmt.Sprintf("%s is the only deploy in effect: there is no earlier release to go back to", live.Version)
	default:
		s.From, s.To = live, live.Previous
		prev := h.Model(live.Previous.Version)
		switch {
		case prev != nil && prev.Degraded:
			s.Reason = fmt.Sprintf("the release before it, %s, was degraded too (%s): going back would not help", prev.Version, prev.Reason)
		case prev != nil && prev.Verdict == Healthy:
			s.Status = StatusPlanned
			s.Reason = fmt.Sprintf("%s is degraded and %s, the release before it, was healthy (%s)", m.Version, prev.Version, prev.Reason)
		default:
			s.Status = StatusPlanned
			verdict := NoPredictions
			if prev != nil {
				verdict = prev.Verdict
			}
			s.Reason = fmt.Sprintf("%s is degraded; %s, the release before it, has no live verdict (%s): its validation, which passed its gate, stands", m.Version, live.Previous.Version, verdict)
		}
	}
	return s
}

func shortSHA(s string) string {
	s = strings.TrimPrefix(s, "sha256:")
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
