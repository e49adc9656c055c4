package synth

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/wardml/ward/models"
)

// contractSpec is what a hospital's contract depends on: never the seed,
// the months or the dirt, so that the contracts in the repo's hospitals/
// hold for any data synth writes with the same format and encryption.
type contractSpec struct {
	id, name   string
	encryption string
	format     string // csv or parquet
	delimiter  rune
	signedBy   string // file beside the contract, or ""
	// families: the model families the contract lists (the nonlinear
	// shape lists all, so that training picks among them); nil: ridge.
	families []string
}

// delimiters: the hospitals whose CSV extracts use another delimiter than
// a comma (real hospitals differ; their contracts say so).
var delimiters = map[string]rune{"lakeshore": ';'}

// contractYAML writes a hospital's contract. The text is written by hand,
// not marshalled, so that it reads like the contracts people write: one
// line per column, comments where they help.
func contractYAML(s contractSpec) []byte {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# The data contract of %s, a synthetic hospital written by `ward synth`", s.name)
	w("# (pipelines/synth). The schema is documented in hospitals/README.md.")
	w("id: %s", s.id)
	w("name: %s", s.name)
	w("inbound:")
	w("  folder: %s/inbound", s.id)
	w("  encryption: %s", s.encryption)
	if s.signedBy != "" {
		w("  signed_by: %s", s.signedBy)
	}
	w("  ready: either")
	w(`  predictions: "predictions_*.jsonl*"`)
	w("tables:")
	for _, t := range tables {
		w("  - name: %s", t.name)
		w(`    pattern: "%s_*.%s*"`, t.name, s.format)
		w("    format: %s", s.format)
		if s.format == "csv" && s.delimiter != ',' {
			w("    delimiter: %q", string(s.delimiter))
		}
		w("    key: [%s]", t.key)
		if t.timeColumn != "" {
			w("    time_column: %s", t.timeColumn)
		}
		if len(t.joins) > 0 {
			w("    joins:")
			for _, j := range t.joins {
				w("      - {table: %s, on: {%s: %s}}", j.name, j.key, j.key)
			}
		}
		w("    columns:")
		for _, c := range t.columns {
			w("      - %s", columnYAML(c))
		}
	}
	model := "{family: ridge, lambdas: [0.1, 1, 10, 100]}"
	if len(s.families) > 0 {
		model = "{families: [" + strings.Join(s.families, ", ") + "], lambdas: [0.1, 1, 10, 100]}"
	}
	b.WriteString(strings.Replace(contractRest, "  model: %s\n", "  model: "+model+"\n", 1))
	w("image:")
	w("  repository: ward/%s", s.id)
	return []byte(b.String())
}

// The part of every synthetic contract that does not vary.
const contractRest = `thresholds:
  max_rejected_rows: 0.05
  row_count_ratio: 10
training:
  table: cases
  target: total_bill
  time_column: admitted_at
  group_column: patient_id
  target_transform: log
  cleaning:
    - drop_if: {column: status, in: [cancelled]}
    - drop_missing: total_bill
    - cap_percentile: {column: total_bill, p: 99.5}
  features:
    - {name: age, kind: numeric}
    - {name: planned_los, kind: numeric, transform: log1p}
    - {name: comorbidities, kind: numeric}
    - {name: admission_type, kind: categorical}
    - {name: ward_class, kind: categorical}
    - {name: specialty, kind: categorical, min_count: 20}
    - {name: doctor_id, kind: categorical, min_count: 30}
    - {name: grade, kind: categorical}
    - {name: sex, kind: categorical}
    - {name: insurance, kind: categorical}
    - {name: admitted, column: admitted_at, kind: date, parts: [month]}
  segments: [ward_class, admission_type, specialty]
  model: %s
  split: {kind: time, validation: 3mo, gap: 0}
  calibration: {under_rate: 0.2}
  gate: {metric: mae, max_regression: 0.02}
feedback:
  degradation: 0.25
  min_cases: 50
`

// columnYAML writes a column as one flow mapping.
func columnYAML(c models.Column) string {
	parts := []string{"name: " + c.Name, "type: " + string(c.Type)}
	if c.Required {
		parts = append(parts, "required: true")
	}
	if c.Min != nil {
		parts = append(parts, "min: "+strconv.FormatFloat(*c.Min, 'g', -1, 64))
	}
	if c.Max != nil {
		parts = append(parts, "max: "+strconv.FormatFloat(*c.Max, 'g', -1, 64))
	}
	if len(c.Allowed) > 0 {
		vals := make([]string, len(c.Allowed))
		for i, a := range c.Allowed {
			vals[i] = yamlScalar(a)
		}
		parts = append(parts, "allowed: ["+strings.Join(vals, ", ")+"]")
	}
	if c.Pattern != "" {
		parts = append(parts, "pattern: "+strconv.Quote(c.Pattern))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

var plainScalar = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// yamlScalar quotes a value unless it is a plain word that YAML reads as a
// string (not a boolean or null).
func yamlScalar(s string) string {
	switch strings.ToLower(s) {
	case "y", "n", "yes", "no", "on", "off", "true", "false", "null":
		return strconv.Quote(s)
	}
	if plainScalar.MatchString(s) {
		return s
	}
	return strconv.Quote(s)
}
