package serving

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wardml/ward/models"
	"github.com/wardml/ward/models/predlog"
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, h http.Handler) {
		mux.Handle(pattern, h)
		_, route, _ := strings.Cut(pattern, " ")
		s.metrics.route(route)
	}
	handle("POST /v1/predict", http.HandlerFunc(s.predict))
	handle("GET /v1/model", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = jsonType
		w.Write(s.model.Load().info)
	}))
	handle("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	handle("GET /readyz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := s.model.Load()
		if !s.ready.Load() || m == nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "model_version": m.Version, "model_digest": m.Digest})
	}))
	handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	s.metrics.route("other")
	return s.instrument(mux)
}

// instrument counts every request and times it, by route.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		// The mux has set the pattern that matched: "POST /v1/predict".
		_, route, ok := strings.Cut(r.Pattern, " ")
		if !ok {
			route = "other"
		}
		s.metrics.observe(route, sw.code, time.Since(start))
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var jsonType = []string{"application/json"}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		code, body = http.StatusInternalServerError, []byte(`{"error":"encoding the answer failed"}`)
	}
	w.Header()["Content-Type"] = jsonType
	w.WriteHeader(code)
	w.Write(append(body, '\n'))
}

// scratch is one request's working memory, pooled so that a request
// allocates little beyond what decoding JSON needs.
type scratch struct {
	sparse models.Sparse
	row    []models.Value
	insts  []any
	obj    map[string]any // the case, when flatObject decodes it
	recs   []record
	inputs []byte
	body   bytes.Buffer // the request's bytes, as read
	spans  [][2]int
	lines  []byte
	answer []byte
}

// Answer is the prediction for one case.
type Answer struct {
	// Prediction is in the target's unit (the bill).
	Prediction float64 `json:"prediction"`
	// Calibrated is the prediction moved to the model's target
	// under-estimate rate; only for a calibrated model.
	Calibrated *float64 `json:"calibrated,omitempty"`
	CaseID     string   `json:"case_id,omitempty"`
	// Unseen lists the values the model never saw in training, which it
	// encoded as its "other" level.
	Unseen []UnseenValue `json:"unseen,omitempty"`
}

// UnseenValue is one field whose value the model did not know.
type UnseenValue struct {
	Field string `json:"field"`
	Value string `json:"value"`
}

// PredictResponse is the answer of POST /v1/predict: the Answer's fields
// at the top for one case, Predictions for a batch (in the order of the
// instances).
type PredictResponse struct {
	*Answer
	Predictions  []Answer `json:"predictions,omitempty"`
	Target       string   `json:"target"`
	Hospital     string   `json:"hospital"`
	ModelVersion string   `json:"model_version"`
	ModelDigest  string   `json:"model_digest"`
	RequestID    string   `json:"request_id"`
}

// appendJSON appends r's JSON, as encoding/json writes it (but for HTML
// characters, which it leaves unescaped), without reflection: answers are
// the server's hot path.
func (r *PredictResponse) appendJSON(b []byte) []byte {
	b = append(b, '{')
	if r.Answer != nil {
		b = r.Answer.appendFields(b)
		b = append(b, ',')
	}
	if len(r.Predictions) > 0 {
		b = append(b, `"predictions":[`...)
		for i := range r.Predictions {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			b = r.Predictions[i].appendFields(b)
			b = append(b, '}')
		}
		b = append(b, "],"...)
	}
	b = append(b, `"target":`...)
	b = predlog.AppendString(b, r.Target)
	b = append(b, `,"hospital":`...)
	b = predlog.AppendString(b, r.Hospital)
	b = append(b, `,"model_version":`...)
	b = predlog.AppendString(b, r.ModelVersion)
	b = append(b, `,"model_digest":`...)
	b = predlog.AppendString(b, r.ModelDigest)
	b = append(b, `,"request_id":`...)
	b = predlog.AppendString(b, r.RequestID)
	return append(b, "}\n"...)
}

func (a *Answer) appendFields(b []byte) []byte {
	b = append(b, `"prediction":`...)
	b = predlog.AppendFloat(b, a.Prediction)
	if a.Calibrated != nil {
		b = append(b, `,"calibrated":`...)
		b = predlog.AppendFloat(b, *a.Calibrated)
	}
	if a.CaseID != "" {
		b = append(b, `,"case_id":`...)
		b = predlog.AppendString(b, a.CaseID)
	}
	if len(a.Unseen) > 0 {
		b = append(b, `,"unseen":[`...)
		for i, u := range a.Unseen {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"field":`...)
			b = predlog.AppendString(b, u.Field)
			b = append(b, `,"value":`...)
			b = predlog.AppendString(b, u.Value)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return b
}

// Problem is the answer to a request that was refused.
type Problem struct {
	Error     string         `json:"error"`
	RequestID string         `json:"request_id,omitempty"`
	Fields    []FieldProblem `json:"fields,omitempty"`
}

// FieldProblem is one bad field: its instance in a batch, its name, the
// value sent (as JSON text) and what is wrong with it.
type FieldProblem struct {
	Instance *int   `json:"instance,omitempty"`
	Field    string `json:"field"`
	Value    string `json:"value,omitempty"`
	Reason   string `json:"reason"`
}

const maxRequestID = 128

// requestID makes the server's own id of the request, unique to this
// process, and takes the client's X-Request-Id for tracing (the server's
// id when it sent none). Predictions are keyed by the server's: a client
// that sends one id twice does not make its predictions one.
func (s *Server) requestID(r *http.Request) (server, client string, err error) {
	server = s.idPrefix + "-" + strconv.FormatUint(s.seq.Add(1), 10)
	id := r.Header.Get("X-Request-Id")
	if id == "" {
		return server, server, nil
	}
	if len(id) > maxRequestID {
		return server, "", fmt.Errorf("X-Request-Id: %d characters, at most %d", len(id), maxRequestID)
	}
	for i := range len(id) {
		if id[i] <= ' ' || id[i] > '~' {
			return server, "", fmt.Errorf("X-Request-Id %q: want printable ASCII characters without spaces", id)
		}
	}
	return server, id, nil
}

// turnRead is how long an admitted request's body may take to arrive:
// long enough for an upload that pauses while the agent switches versions
// (over 5 s on a loaded 2-core machine under the race detector), short
// beside the read timeout.
const turnRead = 8 * time.Second

// admit waits for a slot of the predictions in flight: at once when one
// is free, else for at most cfg.QueueWait. A request that is not admitted
// has read nothing of its body, so a flood of them costs connections, not
// memory.
func (s *Server) admit(r *http.Request) bool {
	select {
	case s.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(s.cfg.QueueWait)
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
		return true
	case <-t.C:
	case <-r.Context().Done():
	}
	return false
}

func (s *Server) predict(w http.ResponseWriter, r *http.Request) {
	if !s.admit(r) {
		w.Header()["Retry-After"] = []string{"1"}
		writeJSON(w, http.StatusServiceUnavailable, Problem{Error: fmt.Sprintf("the server is busy: %d predictions in flight, and this request waited %s for a turn; retry in a second", s.cfg.MaxInFlight, s.cfg.QueueWait)})
		return
	}
	defer func() { <-s.slots }()
	// A body that trickles in must not hold a turn for the whole read
	// timeout: the rest of it has turnRead to arrive, or the read timeout
	// if that is shorter (the deadline is only ever brought nearer).
	bodyWait := turnRead
	if t := s.cfg.ReadTimeout; t > 0 && t < bodyWait {
		bodyWait = t
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyWait))
	start := time.Now()
	m := s.model.Load() // the whole request runs on this model, swap or not
	sc := s.scratch.Get().(*scratch)
	defer s.scratch.Put(sc)

	serverID, reqID, err := s.requestID(r)
	if err != nil {
		s.refuse(w, m, http.StatusBadRequest, "", err.Error(), nil, headerField)
		return
	}
	w.Header()["X-Request-Id"] = []string{reqID}
	insts, batch, err := s.instances(sc, m, http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
		s.refuse(w, m, http.StatusRequestEntityTooLarge, reqID, fmt.Sprintf("body over %d bytes: send fewer instances per request", mbe.Limit), nil, bodyField)
		return
	}
	if err != nil {
		s.refuse(w, m, http.StatusBadRequest, reqID, err.Error(), nil, bodyField)
		return
	}

	var problems []FieldProblem
	sc.recs, sc.inputs, sc.spans = sc.recs[:0], sc.inputs[:0], sc.spans[:0]
	for i, inst := range insts {
		var at *int
		if batch {
			at = &i
		}
		bad := func(ferr *models.FieldError) {
			problems = append(problems, FieldProblem{Instance: at, Field: ferr.Column, Value: ferr.Value, Reason: ferr.Reason})
		}
		fields, ok := inst.(map[string]any)
		if !ok {
			bad(&models.FieldError{Column: bodyField, Value: jsonKind(inst), Reason: "an instance must be a JSON object"})
			continue
		}
		caseID, idErr := s.caseID(fields, m)
		if idErr != nil {
			bad(idErr)
		}
		row, ferrs := m.ParseInput(fields, sc.row)
		sc.row = row
		for _, ferr := range ferrs {
			bad(ferr)
		}
		if _, isInput := m.input[s.cfg.IDField]; isInput && len(ferrs) == 0 {
			caseID = row[m.input[s.cfg.IDField]].Format(m.Inputs[m.input[s.cfg.IDField]].Type)
		}
		if len(problems) > 0 {
			continue // keep checking, to name every bad field; predict nothing
		}
		p, err := m.Predict(&sc.sparse, row)
		if err != nil {
			if ferr, ok := errors.AsType[*models.FieldError](err); ok {
				bad(ferr)
				continue
			}
			msg := err.Error()
			if batch {
				msg = fmt.Sprintf("instance %d: %s", i, msg)
			}
			s.refuse(w, m, http.StatusUnprocessableEntity, reqID, msg, nil, "")
			return
		}
		from := len(sc.inputs)
		sc.inputs = predlog.AppendInputs(sc.inputs, m.Inputs, row)
		sc.spans = append(sc.spans, [2]int{from, len(sc.inputs)})
		rec := record{Record: predlog.Record{ServerRequestID: serverID, RequestID: reqID, Item: i, CaseID: caseID, Predicted: p.Value}, calibrated: p.Calibrated}
		for _, f := range p.Unseen {
			col := m.input[m.Encoder.Features[f].Column]
			u := UnseenValue{Field: m.Inputs[col].Name, Value: row[col].Format(m.Inputs[col].Type)}
			rec.unseen = append(rec.unseen, u)
			rec.Unseen = append(rec.Unseen, u.Field)
		}
		sc.recs = append(sc.recs, rec)
	}
	if len(problems) > 0 {
		s.refuse(w, m, http.StatusBadRequest, reqID, fmt.Sprintf("%d invalid %s; nothing was predicted", len(problems), plural(len(problems), "field")), problems, "")
		return
	}

	took := time.Since(start)
	now := start.Add(took)
	sc.lines = sc.lines[:0]
	resp := PredictResponse{Target: m.Target.Column, Hospital: m.Hospital, ModelVersion: m.Version, ModelDigest: m.Digest, RequestID: reqID}
	if batch {
		resp.Predictions = make([]Answer, len(sc.recs))
	}
	for i := range sc.recs {
		rec := &sc.recs[i]
		inputs := sc.inputs[sc.spans[i][0]:sc.spans[i][1]]
		rec.Time, rec.Took, rec.Hospital, rec.ModelVersion, rec.ModelDigest = now, took, m.Hospital, m.Version, m.Digest
		if s.plog.key != nil {
			rec.InputsHash = s.plog.hash(inputs)
		} else {
			rec.Inputs = inputs
		}
		if m.Calibration != nil {
			rec.Calibrated = &rec.calibrated
		}
		sc.lines = predlog.Append(sc.lines, &rec.Record)
		if s.db != nil {
			s.db.add(&rec.Record)
		}
		a := Answer{Prediction: rec.Predicted, CaseID: rec.CaseID, Calibrated: rec.Calibrated}
		for _, u := range rec.unseen {
			s.metrics.unseen.WithLabelValues(u.Field).Inc()
		}
		a.Unseen = rec.unseen
		if batch {
			resp.Predictions[i] = a
		} else {
			resp.Answer = &a
		}
	}
	s.plog.write(sc.lines)
	m.predictions.Add(float64(len(sc.recs)))
	sc.answer = resp.appendJSON(sc.answer[:0])
	w.Header()["Content-Type"] = jsonType
	w.Write(sc.answer)
}

// instances decodes the body: one case as a JSON object, or a batch as
// {"instances": [...]}. A body that may hold a batch is decoded a token
// at a time, a case at a time, and the decoding stops at the first case
// past cfg.MaxBatch: a body of a million empty cases costs what
// max_batch of them do. Any other body is one case, decoded whole.
func (s *Server) instances(sc *scratch, m *model, body io.Reader) (insts []any, batch bool, err error) {
	sc.body.Reset()
	if _, err := sc.body.ReadFrom(body); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, false, err
		}
		return nil, false, fmt.Errorf("reading the body: %w", err)
	}
	data := sc.body.Bytes()
	clear(sc.insts)
	sc.insts = sc.insts[:0]
	// The key may be spelt with escapes (\u0069nstances).
	if m.batchKey && (bytes.Contains(data, []byte("instances")) || bytes.Contains(data, []byte(`\u`))) {
		return s.stream(sc, data)
	}
	if flatObject(data, sc.caseMap(len(m.Inputs)), m.names) {
		sc.insts = append(sc.insts, sc.obj)
		return sc.insts, false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var top any
	if err := dec.Decode(&top); err != nil {
		return nil, false, sc.notJSON(err)
	}
	if err := end(dec); err != nil {
		return nil, false, err
	}
	obj, ok := top.(map[string]any)
	if !ok {
		return nil, false, fmt.Errorf(`body is a JSON %s: want one case as a JSON object, or {"instances": [...]}`, jsonKind(top))
	}
	sc.insts = append(sc.insts, obj)
	return sc.insts, false, nil
}

// caseMap is the map flatObject decodes a case into: the last one's,
// unless it held far more fields than a model of inputs inputs needs (the
// map a flood of keys grew keeps its room when cleared).
func (sc *scratch) caseMap(inputs int) map[string]any {
	if sc.obj == nil || len(sc.obj) > 4*inputs+16 {
		sc.obj = map[string]any{}
	}
	return sc.obj
}

// end checks that nothing follows the body's JSON value.
func end(dec *json.Decoder) error {
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("body is not valid JSON: more data after the JSON value at offset %d", dec.InputOffset())
	}
	return nil
}

// stream decodes a body that may hold a batch, a token at a time.
func (s *Server) stream(sc *scratch, data []byte) (insts []any, batch bool, err error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, false, sc.notJSON(err)
	}
	if tok != json.Delim('{') {
		return nil, false, fmt.Errorf(`body is a JSON %s: want one case as a JSON object, or {"instances": [...]}`, tokenKind(tok))
	}
	obj := map[string]any{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, batch, sc.notJSON(err)
		}
		key, _ := tok.(string) // the decoder checks that a key is a string
		if key != "instances" {
			var v any
			if err := dec.Decode(&v); err != nil {
				return nil, batch, sc.notJSON(err)
			}
			obj[key] = v
			continue
		}
		if batch {
			return nil, true, errors.New(`the body holds "instances" twice`)
		}
		batch = true
		if err := s.batch(sc, dec); err != nil {
			return nil, true, err
		}
	}
	if _, err := dec.Token(); err != nil { // the object's end
		return nil, batch, sc.notJSON(err)
	}
	if err := end(dec); err != nil {
		return nil, batch, err
	}
	if !batch {
		sc.insts = append(sc.insts, obj)
		return sc.insts, false, nil
	}
	for k := range obj {
		return nil, true, fmt.Errorf("a batch holds only \"instances\", and the body also has %q", k)
	}
	return sc.insts, true, nil
}

// batch decodes the instances array into sc.insts, a case at a time.
func (s *Server) batch(sc *scratch, dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return sc.notJSON(err)
	}
	if tok != json.Delim('[') {
		return fmt.Errorf("instances is a JSON %s: want an array of cases", tokenKind(tok))
	}
	for dec.More() {
		if len(sc.insts) > s.cfg.MaxBatch {
			return fmt.Errorf("instances holds more than %d cases, at most %d per request", s.cfg.MaxBatch+1, s.cfg.MaxBatch)
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			return sc.notJSON(err)
		}
		sc.insts = append(sc.insts, v)
	}
	switch n := len(sc.insts); {
	case n == 0:
		return errors.New("instances is empty: want at least one case")
	case n > s.cfg.MaxBatch:
		return fmt.Errorf("instances holds %d cases, at most %d per request", n, s.cfg.MaxBatch)
	}
	if _, err := dec.Token(); err != nil { // the array's end
		return sc.notJSON(err)
	}
	return nil
}

// tokenKind names the JSON kind of the value that begins with tok.
func tokenKind(tok json.Token) string {
	switch tok {
	case json.Delim('{'):
		return "object"
	case json.Delim('['):
		return "array"
	}
	return jsonKind(tok)
}

// notJSON says why the body did not decode: not JSON, and where. A
// decoder's offsets count from where the value it decoded began; the
// offset of the first bad byte of the body is the body's.
func (sc *scratch) notJSON(err error) error {
	if _, ok := errors.AsType[*json.SyntaxError](err); ok {
		if verr := json.Unmarshal(sc.body.Bytes(), new(json.RawMessage)); verr != nil {
			err = verr
		}
		if syn, ok := errors.AsType[*json.SyntaxError](err); ok {
			return fmt.Errorf("body is not valid JSON at offset %d: %v", syn.Offset, syn)
		}
	}
	switch {
	case err == io.EOF && sc.body.Len() == 0:
		return errors.New(`empty body: want one case as a JSON object, or {"instances": [...]}`)
	case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("body is not valid JSON: it ends in the middle of a value (truncated?)")
	}
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return err
	}
	return fmt.Errorf("reading the body: %w", err)
}

func jsonKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case json.Number, float64:
		return "number"
	case bool:
		return "boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// caseID takes the case id out of an instance's fields, when the id field
// is not also a model input: a string, or a whole number.
func (s *Server) caseID(fields map[string]any, m *model) (string, *models.FieldError) {
	name := s.cfg.IDField
	raw, ok := fields[name]
	if _, isInput := m.input[name]; !ok || isInput {
		return "", nil
	}
	delete(fields, name)
	switch v := raw.(type) {
	case nil:
		return "", nil
	case string:
		if len(v) > maxRequestID {
			return "", &models.FieldError{Column: name, Value: v[:32] + "...", Reason: fmt.Sprintf("a case id of %d characters, at most %d", len(v), maxRequestID)}
		}
		return v, nil
	case json.Number:
		if n, err := strconv.ParseInt(v.String(), 10, 64); err == nil {
			return strconv.FormatInt(n, 10), nil
		}
		return "", &models.FieldError{Column: name, Value: v.String(), Reason: "wrong type: want a string or a whole number"}
	}
	return "", &models.FieldError{Column: name, Value: jsonKind(raw), Reason: "wrong type: want a string or a whole number"}
}

// refuse answers a request that cannot be predicted, and counts its bad
// fields, or field for a request refused as a whole ("" counts nothing).
func (s *Server) refuse(w http.ResponseWriter, m *model, code int, reqID, msg string, fields []FieldProblem, field string) {
	if len(fields) == 0 && field != "" {
		s.metrics.invalid.WithLabelValues(field).Inc()
	}
	for _, f := range fields {
		label := f.Field
		if _, isInput := m.input[label]; !isInput && label != s.cfg.IDField && label != bodyField {
			label = unknownField
		}
		s.metrics.invalid.WithLabelValues(label).Inc()
	}
	writeJSON(w, code, Problem{Error: msg, RequestID: reqID, Fields: fields})
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
