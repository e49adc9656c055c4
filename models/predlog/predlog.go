// Package predlog is the prediction record, defined once: one line of the
// model server's prediction log and one row of ward_predictions. The
// server writes it (Append), ingest reads the logs that hospitals drop on
// SFTP back (Parse), and the server's database sink and the store insert
// it with the one statement Insert makes. Pure: no I/O.
//
// A line is a JSON object with Elastic Common Schema names; fields are only
// ever added, and Parse ignores the ones it does not know:
//
//	@timestamp              time of the answer, UTC, RFC 3339 with milliseconds
//	log.level               "info"
//	message                 "prediction"
//	service.name            "ward-serve"
//	event.kind              "event"
//	event.action            "predict"
//	event.outcome           "success"
//	event.duration          the request's latency so far, in nanoseconds
//	ward.request_id         X-Request-Id when the request had one, else the
//	                        server's id; for tracing
//	ward.server_request_id  the server's own id of the request (random per
//	                        process, then a count), never the client's
//	ward.item               the instance's place in the request's batch, from 0
//	ward.hospital           the model's hospital
//	ward.model.version      the model's version
//	ward.model.digest       the image digest of the model, or sha256:<its file's>
//	ward.case_id            the request's case id field, when sent
//	ward.inputs             the inputs as a JSON object (AppendInputs)
//	ward.inputs_hash        instead of ward.inputs: the hex HMAC-SHA256 of them
//	ward.prediction         the prediction, in the target's unit (the bill)
//	ward.calibrated         the calibrated prediction, when the model has one
//	ward.unseen             the fields whose value the model never saw in
//	                        training, when any
//
// (hospital, server request id, item) is a prediction's key: a client
// that sends the same X-Request-Id twice makes two predictions, not one.
// Lines of servers older than ward.server_request_id are keyed by
// ward.request_id, as they were.
package predlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wardml/ward/models"
)

// ServiceName is the service.name of every line.
const ServiceName = "ward-serve"

// Record is one prediction: one instance of a request.
type Record struct {
	Time     time.Time `json:"time"`
	Hospital string    `json:"hospital"`
	// ServerRequestID is the server's own id of the request; empty in a
	// line of an older server (Key).
	ServerRequestID string `json:"server_request_id,omitempty"`
	// RequestID is the client's X-Request-Id, or the server's id.
	RequestID string `json:"request_id"`
	// Item is the instance's place in the request's batch (0 for a single
	// instance).
	Item int `json:"item"`
	// CaseID is the case the request named, in the text form of the
	// contract's id column (models.Value.Format); empty when none.
	CaseID       string `json:"case_id,omitempty"`
	ModelVersion string `json:"model_version"`
	ModelDigest  string `json:"model_digest"`
	// Inputs are the request's inputs as a JSON object, or nil when the
	// server logs only their keyed hash in InputsHash.
	Inputs     json.RawMessage `json:"inputs,omitempty"`
	InputsHash string          `json:"inputs_hash,omitempty"`
	Predicted  float64         `json:"prediction"`

	// The log's alone (ward_predictions does not keep them): the latency,
	// the calibrated prediction, the fields the model did not know.
	Took       time.Duration `json:"-"`
	Calibrated *float64      `json:"calibrated,omitempty"`
	Unseen     []string      `json:"unseen,omitempty"`
}

// Key is the request's id in the prediction's key: the server's, or
// RequestID in a line of a server older than ServerRequestID.
func (r *Record) Key() string {
	if r.ServerRequestID != "" {
		return r.ServerRequestID
	}
	return r.RequestID
}

// Check says whether ward_predictions can take r.
func (r *Record) Check() error {
	switch {
	case r.Hospital == "" || r.RequestID == "":
		return fmt.Errorf("prediction %s/%s: needs a hospital and a request id", r.Hospital, r.RequestID)
	case r.Item < 0:
		return fmt.Errorf("prediction %s/%s: item %d is negative", r.Hospital, r.RequestID, r.Item)
	case r.Time.IsZero():
		return fmt.Errorf("prediction %s/%s: no time", r.Hospital, r.RequestID)
	case math.IsNaN(r.Predicted) || math.IsInf(r.Predicted, 0):
		return fmt.Errorf("prediction %s/%s: value %v is not a number", r.Hospital, r.RequestID, r.Predicted)
	case r.Inputs != nil && !json.Valid(r.Inputs):
		return fmt.Errorf("prediction %s/%s: inputs are not valid JSON", r.Hospital, r.RequestID)
	}
	return nil
}

// Append appends r's log line, with its line end, to b.
func Append(b []byte, r *Record) []byte {
	b = append(b, `{"@timestamp":"`...)
	b = appendTimestamp(b, r.Time)
	b = append(b, `","log.level":"info","message":"prediction","service.name":"`...)
	b = append(b, ServiceName...)
	b = append(b, `","event.kind":"event","event.action":"predict","event.outcome":"success","event.duration":`...)
	b = strconv.AppendInt(b, r.Took.Nanoseconds(), 10)
	b = append(b, `,"ward.request_id":`...)
	b = AppendString(b, r.RequestID)
	if r.ServerRequestID != "" {
		b = append(b, `,"ward.server_request_id":`...)
		b = AppendString(b, r.ServerRequestID)
	}
	b = append(b, `,"ward.item":`...)
	b = strconv.AppendInt(b, int64(r.Item), 10)
	b = append(b, `,"ward.hospital":`...)
	b = AppendString(b, r.Hospital)
	b = append(b, `,"ward.model.version":`...)
	b = AppendString(b, r.ModelVersion)
	b = append(b, `,"ward.model.digest":`...)
	b = AppendString(b, r.ModelDigest)
	if r.CaseID != "" {
		b = append(b, `,"ward.case_id":`...)
		b = AppendString(b, r.CaseID)
	}
	if r.Inputs != nil {
		b = append(b, `,"ward.inputs":`...)
		b = append(b, r.Inputs...)
	} else {
		b = append(b, `,"ward.inputs_hash":`...)
		b = AppendString(b, r.InputsHash)
	}
	b = append(b, `,"ward.prediction":`...)
	b = AppendFloat(b, r.Predicted)
	if r.Calibrated != nil {
		b = append(b, `,"ward.calibrated":`...)
		b = AppendFloat(b, *r.Calibrated)
	}
	if len(r.Unseen) > 0 {
		b = append(b, `,"ward.unseen":[`...)
		for i, u := range r.Unseen {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendString(b, u)
		}
		b = append(b, ']')
	}
	return append(b, "}\n"...)
}

// line is a log line as Parse decodes it.
type line struct {
	Timestamp  *string         `json:"@timestamp"`
	Action     *string         `json:"event.action"`
	Duration   *int64          `json:"event.duration"`
	RequestID  *string         `json:"ward.request_id"`
	ServerID   *string         `json:"ward.server_request_id"`
	Item       *int            `json:"ward.item"`
	Hospital   *string         `json:"ward.hospital"`
	Version    *string         `json:"ward.model.version"`
	Digest     *string         `json:"ward.model.digest"`
	CaseID     *string         `json:"ward.case_id"`
	Inputs     json.RawMessage `json:"ward.inputs"`
	InputsHash *string         `json:"ward.inputs_hash"`
	Prediction *float64        `json:"ward.prediction"`
	Calibrated *float64        `json:"ward.calibrated"`
	Unseen     []string        `json:"ward.unseen"`
}

// FieldError is a line that is not a prediction: the field at fault ("" for
// the line as a whole), its value (cut to 64 bytes) and why.
type FieldError struct {
	Field, Value, Reason string
}

func (e *FieldError) Error() string {
	switch {
	case e.Field == "":
		return e.Reason
	case e.Value == "":
		return e.Field + ": " + e.Reason
	}
	return e.Field + " " + strconv.Quote(e.Value) + ": " + e.Reason
}

func fail(field, value, format string, args ...any) error {
	if len(value) > 64 {
		value = strings.ToValidUTF8(value[:64], "") + "..."
	}
	return &FieldError{Field: field, Value: value, Reason: fmt.Sprintf(format, args...)}
}

// Parse reads one log line (without its line end) into a record, or says
// with a *FieldError why it is not a prediction.
func Parse(b []byte) (Record, error) {
	if !utf8.Valid(b) {
		return Record{}, fail("", "", "not valid UTF-8")
	}
	var l line
	if err := json.Unmarshal(b, &l); err != nil {
		if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
			return Record{}, fail(te.Field, "", "wrong type: a JSON %s, want %s", te.Value, kind(te.Type.String()))
		}
		return Record{}, fail("", "", "not a JSON object: %v", strings.TrimPrefix(err.Error(), "json: "))
	}
	for _, req := range []struct {
		name string
		v    *string
	}{{"event.action", l.Action}, {"@timestamp", l.Timestamp}, {"ward.request_id", l.RequestID}, {"ward.hospital", l.Hospital},
		{"ward.model.version", l.Version}, {"ward.model.digest", l.Digest}} {
		if req.v == nil || *req.v == "" {
			return Record{}, fail(req.name, "", "required value is missing")
		}
	}
	if *l.Action != "predict" {
		return Record{}, fail("event.action", *l.Action, "not a prediction (want predict)")
	}
	at, err := time.Parse(time.RFC3339Nano, *l.Timestamp)
	if err != nil {
		return Record{}, fail("@timestamp", *l.Timestamp, "not a timestamp (want RFC 3339, e.g. 2026-01-31T14:05:00.000Z)")
	}
	if y := at.UTC().Year(); y < 1 || y > 9999 {
		return Record{}, fail("@timestamp", *l.Timestamp, "out of range: want a UTC year from 0001 to 9999")
	}
	if l.Prediction == nil {
		return Record{}, fail("ward.prediction", "", "required value is missing")
	}
	r := Record{Time: at.UTC(), Hospital: *l.Hospital, RequestID: *l.RequestID, ModelVersion: *l.Version, ModelDigest: *l.Digest,
		Predicted: *l.Prediction, Calibrated: l.Calibrated}
	if len(l.Unseen) > 0 {
		r.Unseen = l.Unseen
	}
	if l.ServerID != nil {
		r.ServerRequestID = *l.ServerID
	}
	if l.Duration != nil {
		r.Took = time.Duration(*l.Duration)
	}
	if l.Item != nil {
		if *l.Item < 0 {
			return Record{}, fail("ward.item", strconv.Itoa(*l.Item), "below the minimum 0")
		}
		r.Item = *l.Item
	}
	if l.CaseID != nil {
		r.CaseID = *l.CaseID
	}
	switch {
	case len(l.Inputs) > 0 && !bytes.Equal(l.Inputs, []byte("null")):
		if l.Inputs[0] != '{' {
			return Record{}, fail("ward.inputs", string(l.Inputs), "not a JSON object")
		}
		// Compact: the line a record appends again stays one line.
		var c bytes.Buffer
		if err := json.Compact(&c, l.Inputs); err != nil {
			return Record{}, fail("ward.inputs", string(l.Inputs), "not a JSON object")
		}
		r.Inputs = c.Bytes()
	case l.InputsHash != nil && *l.InputsHash != "":
		r.InputsHash = *l.InputsHash
	default:
		return Record{}, fail("ward.inputs", "", "required value is missing (and no ward.inputs_hash)")
	}
	return r, nil
}

// kind names what a field of line wants.
func kind(goType string) string {
	switch strings.TrimLeft(goType, "*") {
	case "float64":
		return "a number"
	case "int", "int64":
		return "a whole number"
	case "string":
		return "a string"
	case "[]string":
		return "an array of strings"
	}
	return "a JSON object"
}

// Table is the table of predictions, made by pipelines/store's migrations.
const Table = "ward_predictions"

// Columns are ward_predictions' columns, in the order of Values.
var Columns = []string{"hospital", "server_request_id", "request_id", "item", "case_id", "model_version", "model_digest",
	"inputs", "inputs_hash", "prediction", "predicted_at"}

// Insert is the statement that inserts rows records, their Values one
// after the other ($1, $2, ...), and skips a prediction already there.
// PostgreSQL and SQLite take it alike.
func Insert(rows int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + Table + " (" + strings.Join(Columns, ", ") + ") VALUES ")
	n := 0
	for r := range rows {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for c := range Columns {
			if c > 0 {
				b.WriteString(", ")
			}
			n++
			b.WriteString("$" + strconv.Itoa(n))
		}
		b.WriteByte(')')
	}
	b.WriteString(" ON CONFLICT (hospital, server_request_id, item) DO NOTHING")
	return b.String()
}

// Values appends r's values in the order of Columns, nil for NULL; at
// gives the time as the database takes it.
func (r *Record) Values(args []any, at func(time.Time) any) []any {
	null := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	var inputs any
	if r.Inputs != nil {
		inputs = string(r.Inputs)
	}
	return append(args, r.Hospital, r.Key(), r.RequestID, int64(r.Item), null(r.CaseID), r.ModelVersion, r.ModelDigest,
		inputs, null(r.InputsHash), r.Predicted, at(r.Time))
}

// AppendInputs appends a row as the canonical JSON object of its inputs:
// every input in the model's order, null when missing, numbers and
// booleans as JSON numbers and booleans, strings, dates and timestamps as
// strings in their canonical form. The same case gives the same bytes
// whatever the order and spelling of the request, so its hash is stable.
func AppendInputs(b []byte, inputs []models.Column, row []models.Value) []byte {
	b = append(b, '{')
	for i, c := range inputs {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendString(b, c.Name)
		b = append(b, ':')
		v := row[i]
		switch {
		case v.Null:
			b = append(b, "null"...)
		case c.Type == models.Int || c.Type == models.Bool:
			b = v.AppendFormat(b, c.Type)
		case c.Type == models.Float:
			b = AppendFloat(b, v.Num)
		case c.Type == models.String:
			b = AppendString(b, v.Str)
		default:
			b = append(b, '"')
			b = v.AppendFormat(b, c.Type)
			b = append(b, '"')
		}
	}
	return append(b, '}')
}

// appendTimestamp appends t in UTC as 2006-01-02T15:04:05.000Z, as
// AppendFormat would, at a fraction of its cost.
func appendTimestamp(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, t.Nanosecond()/1e6, 3)
	return append(b, 'Z')
}

// appendDigits appends n (not negative) with at least width digits,
// zero-padded.
func appendDigits(b []byte, n, width int) []byte {
	var buf [8]byte
	i := len(buf)
	for n > 0 || width > 0 {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
		width--
	}
	return append(b, buf[i:]...)
}

// AppendFloat appends a finite float as encoding/json does: the shortest
// text that reads back to the same bits.
func AppendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	if abs == 0 || (abs >= 1e-6 && abs < 1e21) {
		return strconv.AppendFloat(b, f, 'f', -1, 64)
	}
	b = strconv.AppendFloat(b, f, 'e', -1, 64)
	if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
		b[n-2] = b[n-1] // e-07 to e-7
		b = b[:n-1]
	}
	return b
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// as encoding/json does.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
