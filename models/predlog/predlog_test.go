package predlog

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The log's hand-written JSON must say what encoding/json says.
func TestAppendStringAndFloatMatchEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " and \ backslash`, "new\nline\ttab\rcr", "\x00\x01\x1f", "é ü 中文 🙂", "bad \xff utf-8", "<html>&"} {
		got := AppendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Errorf("%q: %s is not JSON: %v", s, got, err)
			continue
		}
		want, _ := json.Marshal(s)
		var wantBack string
		json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("%q: reads back as %q, encoding/json's as %q", s, back, wantBack)
		}
	}
	for _, f := range []float64{0, 1, -1, 0.1, 1234.5, 108429.42, 1e-7, 1e21, 123456789012345678, math.SmallestNonzeroFloat64, math.MaxFloat64, -3.25e-5} {
		got := AppendFloat(nil, f)
		want, _ := json.Marshal(f)
		if !bytes.Equal(got, want) {
			t.Errorf("%v: %s, encoding/json %s", f, got, want)
		}
	}
}

func TestAppendTimestampMatchesAppendFormat(t *testing.T) {
	for _, at := range []time.Time{
		time.Date(2026, 11, 3, 14, 5, 1, 123456789, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600)),
		time.Date(999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Unix(0, 0),
	} {
		got, want := appendTimestamp(nil, at), at.UTC().AppendFormat(nil, "2006-01-02T15:04:05.000Z07:00")
		if !bytes.Equal(got, want) {
			t.Errorf("%v: %s, want %s", at, got, want)
		}
	}
}

// A record appended and parsed back is the same record (its time to the
// millisecond), and a line parsed, appended and parsed again says the same.
func TestAppendParseRoundTrip(t *testing.T) {
	cal := 2345.0625
	at := time.Date(2026, 11, 3, 14, 5, 1, 123000000, time.UTC)
	for _, r := range []Record{
		{Time: at, Took: 1500 * time.Microsecond, Hospital: "st-olaf", ServerRequestID: "5f2c-17", RequestID: "client-7", Item: 3, CaseID: "C-1 \"q\"",
			ModelVersion: "v1", ModelDigest: "sha256:ab", Inputs: []byte(`{"age":61,"sex":"F","admitted_at":"2026-05-04"}`), Predicted: 1234.5,
			Calibrated: &cal, Unseen: []string{"doctor_id", "ward"}},
		{Time: at, Hospital: "h", RequestID: "old-server", ModelVersion: "v", ModelDigest: "d", InputsHash: "00ff", Predicted: -1e-9},
	} {
		line := Append(nil, &r)
		if bytes.Count(line, []byte("\n")) != 1 || line[len(line)-1] != '\n' {
			t.Fatalf("not one line: %q", line)
		}
		back, err := Parse(line[:len(line)-1])
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if !reflect.DeepEqual(back, r) {
			t.Errorf("appended and parsed back:\n%+v\nwant\n%+v", back, r)
		}
	}
	old := Record{RequestID: "fixed"}
	if old.Key() != "fixed" {
		t.Errorf("an older server's line is keyed by %q", old.Key())
	}
}

func TestParseSaysWhatIsWrong(t *testing.T) {
	good := `"@timestamp":"2026-01-31T14:05:00.000Z","event.action":"predict","ward.request_id":"r","ward.hospital":"h","ward.model.version":"v","ward.model.digest":"d","ward.prediction":1`
	for _, c := range []struct{ line, want string }{
		{`{` + good + `,"ward.inputs":{"a":1}}`, ""},
		{`{` + good + `}`, "ward.inputs: required value is missing"},
		{`{` + good + `,"ward.inputs":[1]}`, `ward.inputs "[1]": not a JSON object`},
		{`{` + good + `,"ward.inputs_hash":"ab","ward.item":-1}`, `ward.item "-1": below the minimum 0`},
		{`{` + good + `,"ward.inputs_hash":"ab","ward.item":"1"}`, "ward.item: wrong type: a JSON string, want a whole number"},
		{`{` + strings.Replace(good, "predict", "start", 1) + `}`, `event.action "start": not a prediction`},
		{`{` + strings.Replace(good, "2026-01-31T14:05:00.000Z", "0000-01-01T00:05:00.000+01:00", 1) + `,"ward.inputs_hash":"ab"}`, "out of range"},
		{`not json`, "not a JSON object"},
		{"{\"bad\": \"\xff\"}", "not valid UTF-8"},
	} {
		_, err := Parse([]byte(c.line))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.line, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want %q", c.line, err, c.want)
		}
	}
}

func TestInsertNamesEveryColumnOfEveryRow(t *testing.T) {
	r := Record{Time: time.Unix(0, 0), Hospital: "h", RequestID: "r"}
	args := r.Values(r.Values(nil, func(t time.Time) any { return t }), func(t time.Time) any { return t })
	if want := 2 * len(Columns); len(args) != want || !strings.Contains(Insert(2), "$"+itoa(want)+")") || strings.Contains(Insert(2), "$"+itoa(want+1)) {
		t.Errorf("%d values; %s", len(args), Insert(2))
	}
	if args[1] != "r" || args[4] != nil {
		t.Errorf("the key falls back to the request id, an empty case id is NULL: %v", args)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// FuzzParse: no line crashes Parse; a line it takes appends to one line
// that parses back to the same record.
func FuzzParse(f *testing.F) {
	cal := 1.5
	f.Add(Append(nil, &Record{Time: time.Unix(1764504000, 0), Hospital: "h", ServerRequestID: "s-1", RequestID: "r", ModelVersion: "v", ModelDigest: "d",
		Inputs: []byte(`{"a":1}`), Predicted: 2, Calibrated: &cal, Unseen: []string{"a"}}))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := Parse(line)
		if err != nil {
			if _, ok := err.(*FieldError); !ok {
				t.Fatalf("%q: an error that is not a *FieldError: %v", line, err)
			}
			return
		}
		if err := r.Check(); err != nil {
			t.Fatalf("%q parses to a record the table refuses: %v", line, err)
		}
		out := Append(nil, &r)
		if bytes.IndexByte(out, '\n') != len(out)-1 {
			t.Fatalf("%q appends as more than one line: %q", line, out)
		}
		back, err := Parse(out[:len(out)-1])
		if err != nil {
			t.Fatalf("%q appends as %q, which does not parse: %v", line, out, err)
		}
		r.Time = r.Time.Truncate(time.Millisecond)
		if !reflect.DeepEqual(back, r) && !(math.IsNaN(back.Predicted)) {
			t.Fatalf("%q: parsed %+v, appended and parsed again %+v", line, r, back)
		}
	})
}
