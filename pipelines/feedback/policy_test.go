package feedback

import (
	"strings"
	"testing"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
)

// judged is a model version with cases enough, live MAE at ratio times its
// validation MAE of 1000, degraded above 1.25.
func judged(version string, ratio float64, cases int) Model {
	m := Model{Version: version, Artifact: true, Live: models.Metrics{Count: cases, MAE: 1000 * ratio}, Validation: &models.Metrics{MAE: 1000},
		First: time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC), Last: time.Date(2025, 2, 28, 0, 0, 0, 0, time.UTC)}
	m.MAERatio = &ratio
	m.Degraded = ratio > 1.25
	m.Verdict, m.Reason = Healthy, "fine"
	if m.Degraded {
		m.Verdict, m.Reason = Degraded, "worse"
	}
	return m
}

// hospital is a report's hospital whose current model is the last one.
func hospital(id string, ms ...Model) Hospital {
	cur := ms[len(ms)-1]
	return Hospital{Hospital: id, Current: cur.Version, Verdict: cur.Verdict, Reason: cur.Reason, Degraded: cur.Degraded, Drifted: cur.Drifted,
		Models: ms, Degradation: 0.25, MinCases: 50}
}

func policyOf(id, onDegraded, onDrift string) *contract.Hospital {
	d := 0.25
	return &contract.Hospital{ID: id, Feedback: contract.Feedback{Degradation: &d, MinCases: 50, OnDegraded: onDegraded, OnDrift: onDrift}}
}

func liveAt(version, previous string) *Release {
	r := &Release{Version: version, Digest: "sha256:" + strings.Repeat("a", 64), Commit: strings.Repeat("c", 40)}
	if previous != "" {
		r.Previous = &Release{Version: previous, Digest: "sha256:" + strings.Repeat("b", 64)}
	}
	return r
}

func TestDecide(t *testing.T) {
	drifted := judged("v2", 1.0, 400)
	drifted.Drifted, drifted.Verdict = true, Drifted
	drifted.Drift = []FeatureDrift{{FeatureDrift: models.FeatureDrift{Feature: "age", PSI: 0.4, Band: models.Act}, Judged: true}}
	drifted.DriftRows = 400
	few := judged("v2", 2.0, 10) // a verdict that claims degraded on 10 cases
	byRollback := liveAt("v1", "v0")
	byRollback.ByRollback = true

	r := &Report{Hospitals: []Hospital{
		hospital("healthy", judged("v1", 0.9, 300), judged("v2", 1.1, 300)),
		hospital("bad", judged("v1", 1.0, 300), judged("v2", 1.8, 300)),
		hospital("untested-previous", judged("v2", 1.5, 300)),
		hospital("replaced", judged("v1", 1.0, 300), judged("v2", 1.9, 300)),
		hospital("rolled-back", judged("v1", 1.6, 300)),
		hospital("bad-before", judged("v1", 1.7, 300), judged("v2", 1.6, 300)),
		hospital("only", judged("v1", 1.6, 300)),
		hospital("few", few),
		hospital("drift", drifted),
		hospital("alerting", judged("v1", 1.0, 300), judged("v2", 1.4, 300)),
		hospital("quiet", judged("v1", 1.0, 300), judged("v2", 1.4, 300)),
	}}
	hs := []*contract.Hospital{
		policyOf("healthy", "rollback", "retrain"), policyOf("bad", "rollback", "alert"), policyOf("untested-previous", "rollback", "alert"),
		policyOf("replaced", "rollback", "alert"), policyOf("rolled-back", "rollback", "alert"), policyOf("bad-before", "rollback", "alert"),
		policyOf("only", "rollback", "alert"), policyOf("few", "rollback", "alert"), policyOf("drift", "rollback", "retrain"),
		policyOf("alerting", "alert", "alert"), policyOf("quiet", "none", "none"),
	}
	live := map[string]*Release{
		"healthy": liveAt("v2", "v1"), "bad": liveAt("v2", "v1"), "untested-previous": liveAt("v2", "v1"),
		"replaced": liveAt("v1", "v0"), "rolled-back": byRollback, "bad-before": liveAt("v2", "v1"),
		"only": liveAt("v1", ""), "few": liveAt("v2", "v1"), "drift": liveAt("v2", "v1"), "alerting": liveAt("v2", "v1"), "quiet": liveAt("v2", "v1"),
	}
	p := Decide(r, hs, live, 5)
	want := map[string]struct {
		rollback string // status, "" for no step
		retrain  string
		alert    bool
		reason   string
	}{
		"healthy":           {"", "", false, "nothing to do"},
		"bad":               {StatusPlanned, "", false, "was healthy"},
		"untested-previous": {StatusPlanned, "", false, "has no live verdict"},
		"replaced":          {StatusDeclined, "", false, "replaced already"},
		"rolled-back":       {StatusDeclined, "", true, "never rolls back a rollback"},
		"bad-before":        {StatusDeclined, "", true, "was degraded too"},
		"only":              {StatusDeclined, "", true, "only deploy in effect"},
		"few":               {StatusDeclined, "", true, "fewer than min_cases 50: never acted on"},
		"drift":             {"", StatusPlanned, false, "age PSI 0.400"},
		"alerting":          {"", "", true, "alert: degraded"},
		"quiet":             {"", "", false, "the policy is none"},
	}
	if len(p.Decisions) != len(want) || p.Incident != "" {
		t.Fatalf("%d decisions, incident %q; want %d, none", len(p.Decisions), p.Incident, len(want))
	}
	for _, d := range p.Decisions {
		w := want[d.Hospital]
		rb, rt := "", ""
		if d.Rollback != nil {
			rb = d.Rollback.Status
		}
		if d.Retrain != nil {
			rt = d.Retrain.Status
		}
		if rb != w.rollback || rt != w.retrain || d.Alert != w.alert || !strings.Contains(d.Summary, w.reason) {
			t.Errorf("%s: rollback %q retrain %q alert %v, %q; want %q %q %v, with %q", d.Hospital, rb, rt, d.Alert, d.Summary, w.rollback, w.retrain, w.alert, w.reason)
		}
	}
	bad := p.decision("bad").Rollback
	if bad.From.Version != "v2" || bad.To.Version != "v1" || bad.Evidence.Cases != 300 || bad.Evidence.Ratio != 1.8 || bad.Evidence.LiveMAE != 1800 {
		t.Fatalf("bad's rollback %+v", bad)
	}
}

// A fleet-wide shock: every hospital degraded at once. The limit of
// rollbacks a run stops it, the worst first, with an incident.
func TestDecideStopsAtTheLimit(t *testing.T) {
	r := &Report{}
	var hs []*contract.Hospital
	live := map[string]*Release{}
	for i, id := range []string{"a", "b", "c", "d"} {
		r.Hospitals = append(r.Hospitals, hospital(id, judged("v1", 1.0, 300), judged("v2", 1.5+float64(i)/10, 300)))
		hs = append(hs, policyOf(id, "rollback", "retrain"))
		live[id] = liveAt("v2", "v1")
	}
	for _, max := range []int{0, 2} {
		p := Decide(r, hs, live, max)
		var planned, declined []string
		for _, d := range p.Decisions {
			switch d.Rollback.Status {
			case StatusPlanned:
				planned = append(planned, d.Hospital)
			case StatusDeclined:
				declined = append(declined, d.Hospital)
				if !d.Alert || !strings.Contains(d.Summary, "fleet-wide fault") {
					t.Errorf("max %d: %s declined without the incident's alert: %q", max, d.Hospital, d.Summary)
				}
			}
		}
		wantPlanned := map[int]string{0: "", 2: "c d"}[max]
		if strings.Join(planned, " ") != wantPlanned || len(declined) != 4-max || !strings.Contains(p.Incident, "4 hospitals have a degraded model at once") {
			t.Fatalf("max %d: planned %v, declined %v, incident %q; want the worst %q planned", max, planned, declined, p.Incident, wantPlanned)
		}
	}
}
