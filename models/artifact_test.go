package models_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/wardml/ward/models"
)

func stOlafArtifact(t *testing.T) (*models.Artifact, []byte) {
	t.Helper()
	spec, h := stOlaf(t)
	train, valid := h.split(cutoff)
	a, err := models.Fit(spec, train, valid)
	if err != nil {
		t.Fatal(err)
	}
	data, err := a.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return a, data
}

// edit changes a decoded copy of the artifact's JSON and encodes it again.
func edit(t *testing.T, data []byte, change func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	change(m)
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func obj(v any, path ...any) map[string]any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			v = v.(map[string]any)[k]
		case int:
			v = v.([]any)[k]
		}
	}
	return v.(map[string]any)
}

func TestDecodeRejectsBadArtifacts(t *testing.T) {
	a, good := stOlafArtifact(t)
	width := a.Encoder.Width()
	if _, err := models.Decode(good); err != nil {
		t.Fatalf("the good artifact: %v", err)
	}
	firstValue := func(repl string) []byte {
		i := bytes.Index(good, []byte(`"coefficients"`))
		j := i + bytes.Index(good[i:], []byte(`"value": `)) + len(`"value": `)
		k := j + bytes.IndexByte(good[j:], '\n')
		return slices.Concat(good[:j], []byte(repl), good[k:])
	}
	for _, c := range []struct {
		name string
		data []byte
		msg  string
	}{
		{"empty", nil, "empty: no JSON at all"},
		{"truncated", good[:len(good)/2], "truncated"},
		{"not JSON", []byte("model: ridge\n"), "not valid JSON at line 1, column 1"},
		{"NaN coefficient", firstValue("NaN"), "not valid JSON at line"},
		{"null coefficient", firstValue("null"), "coefficients[0].value: null"},
		{"string for a number", firstValue(`"0.5"`), "coefficients.value at line"},
		{"no format version", edit(t, good, func(m map[string]any) { delete(m, "format_version") }), "no format_version: not a ward model artifact"},
		{"newer format", edit(t, good, func(m map[string]any) { m["format_version"] = 2 }), "format version 2 is newer than this ward reads (format 1): use a ward that reads format 2"},
		{"older format", edit(t, good, func(m map[string]any) { m["format_version"] = 0 }), "format version 0: this ward reads format 1 only"},
		{"missing intercept", edit(t, good, func(m map[string]any) { delete(m, "intercept") }), "intercept: missing"},
		{"missing mean", edit(t, good, func(m map[string]any) {
			delete(obj(m, "encoder", "features", 0, "numeric"), "mean")
		}), "encoder.features[0].numeric.mean: missing"},
		{"unknown field", edit(t, good, func(m map[string]any) { m["colour"] = "red" }), `unknown field "colour": not part of format 1`},
		{"coefficient dropped", edit(t, good, func(m map[string]any) {
			cs := m["coefficients"].([]any)
			m["coefficients"] = cs[:len(cs)-1]
		}), fmt.Sprintf("coefficients: %d, want %d (one per encoded column)", width-1, width)},
		{"coefficient renamed", edit(t, good, func(m map[string]any) {
			obj(m, "coefficients", 0)["name"] = "height"
		}), `coefficients[0]: name "height", want "age"`},
		{"zero std", edit(t, good, func(m map[string]any) {
			obj(m, "encoder", "features", 1, "numeric")["std"] = 0
		}), "feature planned_los: numeric parameters mean"},
		{"unsorted levels", edit(t, good, func(m map[string]any) {
			obj(m, "encoder", "features", 4, "categorical")["levels"] = []any{"C", "A", "B1", "B2"}
		}), "feature ward_class: categorical levels are not sorted"},
		{"feature on no input", edit(t, good, func(m map[string]any) {
			obj(m, "encoder", "features", 0)["column"] = "height"
		}), `feature age: column "height" is not an input`},
		{"wrong family", edit(t, good, func(m map[string]any) { m["family"] = "forest" }), `family "forest": want one of ridge, ridge-pooled, gbdt, gbdt-pooled`},
		{"bad contract hash", edit(t, good, func(m map[string]any) { obj(m, "lineage")["contract"] = "abc" }), "lineage: contract \"abc\""},
		{"no files", edit(t, good, func(m map[string]any) { obj(m, "lineage")["files"] = []any{} }), "lineage: files: none"},
		{"shares", edit(t, good, func(m map[string]any) {
			obj(m, "summary", "features", 0)["shares"] = []any{1}
		}), "summary: feature age: 1 shares"},
		{"negative MAE", edit(t, good, func(m map[string]any) {
			obj(m, "metrics", "validation")["mae"] = -3
		}), "metrics validation: -3: want a finite number >= 0"},
		{"no validation metrics", edit(t, good, func(m map[string]any) { m["metrics"] = map[string]any{} }), `metrics: no "validation" set`},
		{"trailing data", append(slices.Clone(good), []byte("{}")...), "invalid character '{' after top-level value"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, err := models.Decode(c.data)
			if err == nil || a != nil {
				t.Fatalf("decoded: %v", err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q\nlacks %q", err, c.msg)
			}
		})
	}
}

func TestParseInputNamesEveryBadField(t *testing.T) {
	a, _ := stOlafArtifact(t)
	var fields map[string]any
	dec := json.NewDecoder(strings.NewReader(`{"age": "forty", "ward_class": "Z", "planned_los": 400,
		"admission_type": "elective", "admitted_at": "2026-13-01", "colour": "red", "comorbidities": 2.5}`))
	dec.UseNumber()
	if err := dec.Decode(&fields); err != nil {
		t.Fatal(err)
	}
	_, errs := a.ParseInput(fields, nil)
	got := map[string]string{}
	for _, e := range errs {
		got[e.Column] = e.Reason
	}
	for col, reason := range map[string]string{
		"age":           "wrong type: want a number",
		"ward_class":    "not an allowed value",
		"planned_los":   "above the maximum 365",
		"admitted_at":   "not a date",
		"comorbidities": "want a whole number",
		"doctor_id":     "required value is missing",
		"specialty":     "required value is missing",
		"colour":        "unknown field: the model's inputs are doctor_id, admitted_at",
	} {
		if !strings.Contains(got[col], reason) {
			t.Errorf("%s: reason %q, want %q", col, got[col], reason)
		}
	}
	if len(errs) != 8 {
		t.Errorf("%d errors, want 8: %v", len(errs), got)
	}

	good := map[string]any{"doctor_id": "D999", "specialty": "oncology", "admitted_at": "2026-05-04", "admission_type": "emergency", "ward_class": "A"}
	row, errs := a.ParseInput(good, nil)
	if len(errs) != 0 {
		t.Fatalf("a good request: %v", errs)
	}
	var s models.Sparse
	p, err := a.Predict(&s, row)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Unseen) != 1 || a.Encoder.Features[p.Unseen[0]].Name != "doctor_id" {
		t.Errorf("unseen %v, want doctor_id (D999 was never seen)", p.Unseen)
	}
	if !(p.Value > 0) || !(p.Calibrated > p.Value) {
		t.Errorf("prediction %+v", p)
	}
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := a.Predict(&s, row); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Predict allocates %v times, want 0 with a reused Sparse", allocs)
	}
}

func TestSchemaListsInputsAndLevels(t *testing.T) {
	a, _ := stOlafArtifact(t)
	schema := a.Schema()
	byName := map[string]models.InputField{}
	for _, f := range schema {
		byName[f.Name] = f
	}
	if len(schema) != len(a.Inputs) {
		t.Fatalf("%d fields, want %d", len(schema), len(a.Inputs))
	}
	if w := byName["ward_class"]; !w.Required || !slices.Equal(w.Allowed, []string{"A", "B1", "B2", "C"}) || !slices.Equal(w.Levels, []string{"A", "B1", "B2", "C"}) {
		t.Errorf("ward_class: %+v", w)
	}
	if d := byName["doctor_id"]; !slices.Contains(d.Levels, "D000") || slices.Contains(d.Levels, "D077") {
		t.Errorf("doctor_id levels %v: want the frequent doctors only", d.Levels)
	}
	if age := byName["age"]; age.Type != models.Int || *age.Max != 110 || age.Levels != nil {
		t.Errorf("age: %+v", age)
	}
	out, err := json.Marshal(schema[0])
	if err != nil || !strings.Contains(string(out), `"levels":["D000"`) || !strings.Contains(string(out), `"required":true`) {
		t.Errorf("JSON of a field: %s %v", out, err)
	}
}

func TestDriftAgainstTheTrainingSummary(t *testing.T) {
	a, _ := stOlafArtifact(t)
	spec, _ := stOlaf(t)
	live := genHospital(spec, 2000, 99)
	col := func(name string) int {
		return slices.IndexFunc(a.Inputs, func(c models.Column) bool { return c.Name == name })
	}
	same, shifted := a.Drift(), a.Drift()
	for _, c := range live.cases {
		if err := same.Add(c.Row); err != nil {
			t.Fatal(err)
		}
		row := slices.Clone(c.Row)
		if !row[col("age")].Null {
			row[col("age")] = models.Number(min(110, row[col("age")].Num+30))
		}
		if row[col("ward_class")].Str == "C" {
			row[col("ward_class")] = models.Text("A")
		}
		if err := shifted.Add(row); err != nil {
			t.Fatal(err)
		}
	}
	bands := func(d *models.Drift) map[string]string {
		out := map[string]string{}
		for _, r := range d.Result() {
			out[r.Feature] = r.Band
		}
		return out
	}
	for f, b := range bands(same) {
		if b != models.Stable {
			t.Errorf("same population: %s is %s", f, b)
		}
	}
	got := bands(shifted)
	if got["age"] != models.Act || got["ward_class"] != models.Act || got["specialty"] != models.Stable || got["planned_los"] != models.Stable {
		t.Errorf("shifted age and ward class: bands %v", got)
	}
	if _, ok := got["admitted"]; ok {
		t.Error("a date feature has no drift")
	}
}

func TestPredictConcurrently(t *testing.T) {
	a, _ := stOlafArtifact(t)
	_, h := stOlaf(t)
	cases := h.cases[:500]
	want := make([]float64, len(cases))
	for i, c := range cases {
		p, err := a.Predict(nil, c.Row)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = p.Calibrated
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			var s models.Sparse
			for i, c := range cases {
				p, err := a.Predict(&s, c.Row)
				if err != nil || p.Calibrated != want[i] {
					errs <- fmt.Errorf("case %d: %v, %v; want %v", i, p.Calibrated, err, want[i])
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
