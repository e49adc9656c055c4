package serving_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/wardml/ward/models"
	"github.com/wardml/ward/models/modeltest"
)

func TestModelRouteDescribesTheModel(t *testing.T) {
	a, _ := stOlaf(t)
	path := modelFile(t, a.Data)
	s := start(t, config(t, path))
	code, info := s.get(t, "/v1/model")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/model: %d %v", code, info)
	}
	sum := sha256.Sum256(a.Data)
	if info["hospital"] != "st-olaf" || info["version"] != a.Artifact.Version || info["digest"] != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("hospital %v, version %v, digest %v", info["hospital"], info["version"], info["digest"])
	}
	if info["id_field"] != "case_id" || num(t, info["max_batch"]) != 100 {
		t.Errorf("id_field %v, max_batch %v", info["id_field"], info["max_batch"])
	}
	valid := info["metrics"].(map[string]any)["validation"].(map[string]any)
	if num(t, valid["mae"]) != a.Artifact.Metrics["validation"].MAE {
		t.Errorf("validation MAE %v, want %v", valid["mae"], a.Artifact.Metrics["validation"].MAE)
	}
	fields := map[string]map[string]any{}
	for _, f := range info["inputs"].([]any) {
		f := f.(map[string]any)
		fields[f["name"].(string)] = f
	}
	if len(fields) != len(a.Artifact.Inputs) {
		t.Fatalf("%d input fields, want %d", len(fields), len(a.Artifact.Inputs))
	}
	ward := fields["ward_class"]
	if ward["type"] != "string" || ward["required"] != true || fmt.Sprint(ward["allowed"]) != "[A B1 B2 C]" {
		t.Errorf("ward_class: %v", ward)
	}
	if age := fields["age"]; age["type"] != "int" || age["required"] != nil || num(t, age["max"]) != 110 {
		t.Errorf("age: %v", age)
	}
	if d := fields["admitted_at"]; d["type"] != "date" || d["format"] != "YYYY-MM-DD" {
		t.Errorf("admitted_at: %v", d)
	}
	if doc := fields["doctor_id"]; !slices.Contains(doc["levels"].([]any), any("D000")) {
		t.Errorf("doctor_id levels: %v", doc["levels"])
	}
}

// stOlafCase is a valid request for the st-olaf models.
func stOlafCase() map[string]any {
	return map[string]any{
		"age": 61, "planned_los": 4, "comorbidities": 2, "admission_type": "emergency", "ward_class": "B1",
		"specialty": "cardiology", "doctor_id": "D004", "sex": "F", "insurance": "private", "admitted_at": "2026-05-04",
	}
}

// predictLocally predicts a request's fields with the artifact directly.
func predictLocally(t *testing.T, a *models.Artifact, fields map[string]any) models.Prediction {
	t.Helper()
	data, _ := json.Marshal(fields)
	var decoded map[string]any
	if err := json.Unmarshal(data, &decoded); err != nil {
		t.Fatal(err)
	}
	row, errs := a.ParseInput(decoded, nil)
	if len(errs) > 0 {
		t.Fatalf("case %v: %v", fields, errs)
	}
	p, err := a.Predict(nil, row)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPredictOneCase(t *testing.T) {
	a, _ := stOlaf(t)
	s := start(t, config(t, modelFile(t, a.Data)))
	c := stOlafCase()
	c["case_id"] = "C-1042"
	code, ans := s.post(t, c, "X-Request-Id", "req-1")
	if code != http.StatusOK {
		t.Fatalf("status %d: %v", code, ans)
	}
	want := predictLocally(t, a.Artifact, stOlafCase())
	if got := num(t, ans["prediction"]); math.Float64bits(got) != math.Float64bits(want.Value) {
		t.Errorf("prediction %v, want %v", got, want.Value)
	}
	if got := num(t, ans["calibrated"]); math.Float64bits(got) != math.Float64bits(want.Calibrated) || !(got > want.Value) {
		t.Errorf("calibrated %v, want %v (above the prediction: the group prefers over-estimates)", got, want.Calibrated)
	}
	for k, v := range map[string]any{"request_id": "req-1", "hospital": "st-olaf", "model_version": a.Artifact.Version, "target": "total_bill", "case_id": "C-1042"} {
		if ans[k] != v {
			t.Errorf("%s: %v, want %v", k, ans[k], v)
		}
	}
	if ans["unseen"] != nil || ans["predictions"] != nil {
		t.Errorf("unseen %v, predictions %v: want neither", ans["unseen"], ans["predictions"])
	}

	l := s.logged(t, 1)[0]
	for k, v := range map[string]any{
		"log.level": "info", "message": "prediction", "service.name": "ward-serve", "event.action": "predict",
		"ward.request_id": "req-1", "ward.hospital": "st-olaf", "ward.model.version": a.Artifact.Version,
		"ward.model.digest": ans["model_digest"], "ward.case_id": "C-1042",
	} {
		if l[k] != v {
			t.Errorf("log %s: %v, want %v", k, l[k], v)
		}
	}
	if num(t, l["ward.item"]) != 0 || num(t, l["event.duration"]) <= 0 || !strings.HasSuffix(l["@timestamp"].(string), "Z") {
		t.Errorf("item %v, duration %v, timestamp %v", l["ward.item"], l["event.duration"], l["@timestamp"])
	}
	if math.Float64bits(num(t, l["ward.prediction"])) != math.Float64bits(want.Value) || math.Float64bits(num(t, l["ward.calibrated"])) != math.Float64bits(want.Calibrated) {
		t.Errorf("logged %v/%v, want %v/%v", l["ward.prediction"], l["ward.calibrated"], want.Value, want.Calibrated)
	}
	inputs := l["ward.inputs"].(map[string]any)
	if inputs["admitted_at"] != "2026-05-04" || num(t, inputs["age"]) != 61 || len(inputs) != len(a.Artifact.Inputs) || inputs["case_id"] != nil {
		t.Errorf("logged inputs %v", inputs)
	}

	// Without X-Request-Id the server makes one, unique per request.
	_, first := s.post(t, stOlafCase())
	_, second := s.post(t, stOlafCase())
	if first["request_id"] == "" || first["request_id"] == second["request_id"] {
		t.Errorf("generated request ids %v and %v", first["request_id"], second["request_id"])
	}
}

func TestPredictBatch(t *testing.T) {
	a, _ := stOlaf(t)
	s := start(t, config(t, modelFile(t, a.Data)))
	var insts []any
	var want []models.Prediction
	for i, c := range a.Valid[:3] {
		fields := modeltest.Request(a.Artifact.Inputs, c.Row)
		want = append(want, a.Predicted[i])
		fields["case_id"] = 1000 + i // a whole number is a case id too
		insts = append(insts, fields)
	}
	code, ans := s.post(t, map[string]any{"instances": insts}, "X-Request-Id", "batch-7")
	if code != http.StatusOK {
		t.Fatalf("status %d: %v", code, ans)
	}
	preds := ans["predictions"].([]any)
	if len(preds) != 3 || ans["prediction"] != nil {
		t.Fatalf("answer %v: want 3 predictions and no top-level one", ans)
	}
	for i, p := range preds {
		p := p.(map[string]any)
		if math.Float64bits(num(t, p["prediction"])) != math.Float64bits(want[i].Value) || p["case_id"] != fmt.Sprint(1000+i) {
			t.Errorf("instance %d: %v, want %v for case %d", i, p, want[i].Value, 1000+i)
		}
	}
	for i, l := range s.logged(t, 3) {
		if num(t, l["ward.item"]) != float64(i) || l["ward.request_id"] != "batch-7" || l["ward.case_id"] != fmt.Sprint(1000+i) {
			t.Errorf("line %d: item %v, request %v, case %v", i, l["ward.item"], l["ward.request_id"], l["ward.case_id"])
		}
	}
	if m := s.metrics(t); !strings.Contains(m, fmt.Sprintf(`ward_serve_predictions_total{hospital="st-olaf",model_version=%q} 3`, a.Artifact.Version)) {
		t.Errorf("metrics lack the 3 predictions:\n%s", grep(m, "ward_serve_predictions_total"))
	}
}

func TestUnseenCategoryGoesToOther(t *testing.T) {
	a, _ := stOlaf(t)
	s := start(t, config(t, modelFile(t, a.Data)))
	c := stOlafCase()
	c["doctor_id"] = "D999"
	code, ans := s.post(t, c)
	if code != http.StatusOK {
		t.Fatalf("status %d: %v", code, ans)
	}
	if got := fmt.Sprint(ans["unseen"]); got != "[map[field:doctor_id value:D999]]" {
		t.Errorf("unseen %s", got)
	}
	// "other" is the level of the rare doctors: the same as a doctor seen
	// fewer than min_count times.
	rare := stOlafCase()
	rare["doctor_id"] = "D077"
	if want := predictLocally(t, a.Artifact, rare); num(t, ans["prediction"]) != want.Value {
		t.Errorf("unseen doctor predicts %v, a rare one %v: both should be other", ans["prediction"], want.Value)
	}
	if l := s.logged(t, 1); fmt.Sprint(l[0]["ward.unseen"]) != "[doctor_id]" {
		t.Errorf("log ward.unseen %v", l[0]["ward.unseen"])
	}
	if m := s.metrics(t); !strings.Contains(m, `ward_serve_unseen_categories_total{field="doctor_id"} 1`) {
		t.Errorf("metrics:\n%s", grep(m, "unseen"))
	}
}

func TestBadRequests(t *testing.T) {
	a, _ := stOlaf(t)
	cfg := config(t, modelFile(t, a.Data))
	cfg.MaxBatch = 3
	cfg.MaxBody = 4096
	s := start(t, cfg)
	with := func(change func(c map[string]any)) map[string]any {
		c := stOlafCase()
		change(c)
		return c
	}
	type field struct{ name, reason string }
	for _, c := range []struct {
		name   string
		body   any
		header []string
		code   int
		msg    string
		fields []field
	}{
		{"missing required", with(func(c map[string]any) { delete(c, "ward_class") }), nil, 400, "1 invalid field; nothing was predicted",
			[]field{{"ward_class", "required value is missing"}}},
		{"wrong type", with(func(c map[string]any) { c["age"] = "sixty" }), nil, 400, "1 invalid field",
			[]field{{"age", "wrong type: want a number"}}},
		{"out of range", with(func(c map[string]any) { c["planned_los"] = 400 }), nil, 400, "1 invalid field",
			[]field{{"planned_los", "above the maximum 365"}}},
		{"not allowed", with(func(c map[string]any) { c["ward_class"] = "Z" }), nil, 400, "1 invalid field",
			[]field{{"ward_class", "not an allowed value (want one of A, B1, B2, C)"}}},
		{"bad date", with(func(c map[string]any) { c["admitted_at"] = "2026-13-01" }), nil, 400, "1 invalid field",
			[]field{{"admitted_at", "not a date (want YYYY-MM-DD)"}}},
		{"unknown field", with(func(c map[string]any) { c["colour"] = "red" }), nil, 400, "1 invalid field",
			[]field{{"colour", "unknown field: the model's inputs are doctor_id, admitted_at, admission_type"}}},
		{"bad case id", with(func(c map[string]any) { c["case_id"] = true }), nil, 400, "1 invalid field",
			[]field{{"case_id", "wrong type: want a string or a whole number"}}},
		{"every bad field at once", with(func(c map[string]any) {
			c["age"], c["comorbidities"], c["extra"] = -1, 2.5, 1
			delete(c, "specialty")
		}), nil, 400, "4 invalid fields",
			[]field{{"age", "below the minimum 0"}, {"comorbidities", "wrong type: want a whole number"}, {"specialty", "required value is missing"}, {"extra", "unknown field"}}},
		{"bad instance in a batch", map[string]any{"instances": []any{stOlafCase(), with(func(c map[string]any) { c["sex"] = 1 })}}, nil, 400, "1 invalid field",
			[]field{{"sex", "wrong type: want a string"}}},
		{"not JSON", `{"age": 61,`, nil, 400, "body is not valid JSON: it ends in the middle of a value", nil},
		{"bad JSON", `{"age": x}`, nil, 400, "body is not valid JSON at offset 9: invalid character 'x'", nil},
		{"trailing data", `{"age": 61} {}`, nil, 400, "more data after the JSON value", nil},
		{"not an object", `[1, 2]`, nil, 400, "body is a JSON array: want one case as a JSON object", nil},
		{"empty body", ``, nil, 400, "empty body", nil},
		{"too large", `{"age": "` + strings.Repeat("x", 5000) + `"}`, nil, 413, "body over 4096 bytes", nil},
		{"batch too large", map[string]any{"instances": []any{stOlafCase(), stOlafCase(), stOlafCase(), stOlafCase()}}, nil, 400, "instances holds 4 cases, at most 3 per request", nil},
		{"instances not an array", map[string]any{"instances": stOlafCase()}, nil, 400, "instances is a JSON object: want an array of cases", nil},
		{"empty batch", map[string]any{"instances": []any{}}, nil, 400, "instances is empty", nil},
		{"batch with more", map[string]any{"instances": []any{stOlafCase()}, "age": 3}, nil, 400, `a batch holds only "instances", and the body also has "age"`, nil},
		{"instance not an object", map[string]any{"instances": []any{"case"}}, nil, 400, "1 invalid field",
			[]field{{"(body)", "an instance must be a JSON object"}}},
		{"bad request id", stOlafCase(), []string{"X-Request-Id", "has space"}, 400, "X-Request-Id \"has space\": want printable ASCII", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, ans := s.post(t, c.body, c.header...)
			if code != c.code {
				t.Fatalf("status %d, want %d: %v", code, c.code, ans)
			}
			if msg, _ := ans["error"].(string); !strings.Contains(msg, c.msg) {
				t.Errorf("error %q, want %q", msg, c.msg)
			}
			got, _ := ans["fields"].([]any)
			if len(got) != len(c.fields) {
				t.Fatalf("fields %v, want %v", got, c.fields)
			}
			for _, want := range c.fields {
				found := false
				for _, g := range got {
					g := g.(map[string]any)
					found = found || g["field"] == want.name && strings.Contains(g["reason"].(string), want.reason)
				}
				if !found {
					t.Errorf("no field %s with reason %q in %v", want.name, want.reason, got)
				}
			}
		})
	}
	// A batch names the instance of each bad field.
	_, ans := s.post(t, map[string]any{"instances": []any{stOlafCase(), with(func(c map[string]any) { c["sex"] = 1 })}})
	if f := ans["fields"].([]any)[0].(map[string]any); num(t, f["instance"]) != 1 || f["value"] != "1" {
		t.Errorf("batch field problem %v: want instance 1, value 1", f)
	}
	// Refused requests log nothing: the one good request after them is
	// the only line.
	if code, _ := s.post(t, stOlafCase(), "X-Request-Id", "good"); code != 200 {
		t.Fatal(code)
	}
	if l := s.logged(t, 1); l[0]["ward.request_id"] != "good" {
		t.Errorf("the log holds %v", l)
	}
	m := s.metrics(t)
	for _, want := range []string{
		`ward_serve_validation_errors_total{field="age"} 2`,
		`ward_serve_validation_errors_total{field="(unknown)"} 2`,
		`ward_serve_validation_errors_total{field="(body)"} 11`,
		`ward_serve_validation_errors_total{field="(header)"} 1`,
		`ward_serve_requests_total{code="400",route="/v1/predict"} 21`,
		`ward_serve_requests_total{code="200",route="/v1/predict"} 1`,
		`ward_serve_requests_total{code="413",route="/v1/predict"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grep(m, "validation_errors|requests_total"))
		}
	}
}

func TestHealthReadinessAndMetrics(t *testing.T) {
	a, _ := stOlaf(t)
	s := start(t, config(t, modelFile(t, a.Data)))
	if code, body := s.get(t, "/healthz"); code != 200 || body["status"] != "ok" {
		t.Errorf("/healthz: %d %v", code, body)
	}
	if code, body := s.get(t, "/readyz"); code != 200 || body["model_version"] != a.Artifact.Version {
		t.Errorf("/readyz: %d %v", code, body)
	}
	s.post(t, stOlafCase())
	m := s.metrics(t)
	for _, want := range []string{
		`ward_serve_requests_total{code="200",route="/v1/predict"} 1`,
		`ward_serve_request_duration_seconds_bucket{route="/v1/predict",le="0.005"}`,
		fmt.Sprintf(`ward_serve_model_info{digest=%q,hospital="st-olaf",version=%q} 1`, "sha256:"+fileSHA(a.Data), a.Artifact.Version),
		`ward_serve_model_loads_total{outcome="refused"} 0`,
		"go_goroutines", "process_resident_memory_bytes",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	resp, err := http.Get(s.url + "/v1/predict")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/predict: %d, want 405", resp.StatusCode)
	}
}

func TestHashedInputs(t *testing.T) {
	a, _ := stOlaf(t)
	cfg := config(t, modelFile(t, a.Data))
	cfg.HashKey = []byte("0123456789abcdef-hospital-key")
	s := start(t, cfg)
	c := stOlafCase()
	// The same case spelled differently: another key order, 61.0 for 61.
	respelled := `{"admitted_at":"2026-05-04","insurance":"private","sex":"F","doctor_id":"D004","specialty":"cardiology",
		"ward_class":"B1","admission_type":"emergency","comorbidities":2,"planned_los":4,"age":61.0}`
	for _, body := range []any{c, respelled} {
		if code, ans := s.post(t, body); code != 200 {
			t.Fatalf("status %d: %v", code, ans)
		}
	}
	lines := s.logged(t, 2)
	canonical := `{"doctor_id":"D004","admitted_at":"2026-05-04","admission_type":"emergency","ward_class":"B1",` +
		`"age":61,"planned_los":4,"comorbidities":2,"sex":"F","insurance":"private","specialty":"cardiology"}`
	mac := hmac.New(sha256.New, cfg.HashKey)
	mac.Write([]byte(canonical))
	want := hex.EncodeToString(mac.Sum(nil))
	for i, l := range lines {
		if l["ward.inputs"] != nil || l["ward.inputs_hash"] != want {
			t.Errorf("line %d: inputs %v, hash %v; want no inputs and hash %s", i, l["ward.inputs"], l["ward.inputs_hash"], want)
		}
	}
	var names []string
	for _, in := range a.Artifact.Inputs {
		names = append(names, in.Name)
	}
	if got := strings.Join(names, ","); got != "doctor_id,admitted_at,admission_type,ward_class,age,planned_los,comorbidities,sex,insurance,specialty" {
		t.Fatalf("the model's inputs are %s: the canonical text above assumes another order", got)
	}
}

func fileSHA(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// grep returns the lines of s that contain any of the |-separated words.
func grep(s, words string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, w := range strings.Split(words, "|") {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
