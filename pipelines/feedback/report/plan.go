package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/wardml/ward/internal/page"
	"github.com/wardml/ward/pipelines/feedback"
)

// PlanFile is the policy's plan of a run, beside JSONFile.
const PlanFile = "plan.json"

// WritePlan writes the plan into dir/plan.json.
func WritePlan(dir string, p *feedback.Plan) error {
	data, err := json.MarshalIndent(p, "", "  ")
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err == nil {
		err = page.WriteFile(filepath.Join(dir, PlanFile), append(data, '\n'))
	}
	if err != nil {
		return fmt.Errorf("feedback plan %s: %w", dir, err)
	}
	return nil
}

// WritePlanTable prints what the policy did (applied) or would do, per
// hospital, and the incident.
func WritePlanTable(w io.Writer, p *feedback.Plan, applied bool) {
	what := "POLICY (planned: run with --apply to carry it out)"
	if applied {
		what = "POLICY (applied)"
	}
	fmt.Fprintf(w, "\n%s\n", what)
	const format = "%-12s %-10s %-10s %-6s %s\n"
	fmt.Fprintf(w, format, "HOSPITAL", "ROLLBACK", "RETRAIN", "ALERT", "WHAT AND WHY")
	for _, d := range p.Decisions {
		rb, rt, alert := "-", "-", "-"
		if d.Rollback != nil {
			rb = d.Rollback.Status
		}
		if d.Retrain != nil {
			rt = d.Retrain.Status
		}
		if d.Alert {
			alert = "yes"
		}
		fmt.Fprintf(w, format, d.Hospital, rb, rt, alert, d.Summary)
	}
	if p.Incident != "" {
		fmt.Fprintf(w, "INCIDENT: %s\n", p.Incident)
	}
}
