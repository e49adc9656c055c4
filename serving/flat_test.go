package serving

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
)

// decodeStd decodes body as the server does when flatObject declines.
func decodeStd(body []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, end(dec)
}

var flatNames = map[string]string{"age": "age", "ward": "ward", "los": "los"}

// TestFlatObjectTakesWhatClientsSend: the bodies clients send are decoded
// by flatObject, to what encoding/json gives; the others are left to
// encoding/json.
func TestFlatObjectTakesWhatClientsSend(t *testing.T) {
	taken := []string{
		`{"age":67,"ward":"B2","los":3.5e0}`,
		" \t\r\n{ \"age\" : -0.25 , \"ward\" : \"Gérard\", \"x\": null, \"y\": true, \"z\": false } \n",
		`{}`,
		`{"age":1,"age":2}`,
		`{"ward":"","los":0,"n":-12E+3,"m":1.0e-7}`,
	}
	for _, body := range taken {
		got := map[string]any{"stale": 1}
		if !flatObject([]byte(body), got, flatNames) {
			t.Errorf("%q: declined", body)
			continue
		}
		want, err := decodeStd([]byte(body))
		if err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		if !reflect.DeepEqual(any(got), want) {
			t.Errorf("%q: %#v, encoding/json %#v", body, got, want)
		}
	}
	declined := []string{
		``, ` `, `[]`, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,}`, `{"a":1}x`, `{"a":1}{}`,
		`{"a":"\u0041"}`, `{"a\n":1}`, "{\"a\":\"\x01\"}", "{\"a\":\"\xff\"}",
		`{"a":{"b":1}}`, `{"a":[1]}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":-}`,
		`{"a":+1}`, `{"a":tru}`, `{"a":truex}`, `{"a":nul}`, `{"a":NaN}`, `{'a':1}`, `{"a" 1}`,
	}
	for _, body := range declined {
		if flatObject([]byte(body), map[string]any{}, flatNames) {
			t.Errorf("%q: taken", body)
		}
	}
}

// TestCaseMapNotKeptAfterAFlood: the map a body of many keys grew is not
// the next request's; a case's map is.
func TestCaseMapNotKeptAfterAFlood(t *testing.T) {
	var sc scratch
	m := sc.caseMap(12)
	m["age"] = 1
	if again := sc.caseMap(12); len(again) != 1 {
		t.Fatalf("a case's map was not kept: %d fields", len(again))
	}
	var flood bytes.Buffer
	flood.WriteString("{")
	for i := range 10_000 {
		fmt.Fprintf(&flood, `"k%d":%d,`, i, i)
	}
	flood.WriteString(`"age":1}`)
	if !flatObject(flood.Bytes(), sc.caseMap(12), flatNames) || len(sc.obj) != 10_001 {
		t.Fatalf("the flood was not decoded: %d fields", len(sc.obj))
	}
	if next := sc.caseMap(12); len(next) != 0 {
		t.Fatalf("the next request got the flood's map: %d fields", len(next))
	}
}

// FuzzFlatObject: whatever flatObject takes, encoding/json decodes to the
// same map, so that taking the fast way never changes an answer.
func FuzzFlatObject(f *testing.F) {
	for _, s := range []string{`{"age":67,"ward":"B2"}`, `{"a":-1.5e3,"b":null,"c":true}`, `{}`, `{"a":"é"}`, `{"a":1}{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got := map[string]any{}
		if !flatObject(body, got, flatNames) {
			return
		}
		want, err := decodeStd(body)
		if err != nil {
			t.Fatalf("%q: taken, but encoding/json says %v", body, err)
		}
		if !reflect.DeepEqual(any(got), want) {
			t.Fatalf("%q: %#v, encoding/json %#v", body, got, want)
		}
	})
}
