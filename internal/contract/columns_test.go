package contract

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/wardml/ward/models"
)

// A model column's keys in a contract are its keys in the artifact: the
// YAML keys of the inlined models.Column are its lower-cased field names,
// so a field whose JSON name differs would get another key in contracts.
// An artifact's column (JSON is YAML) must decode, strictly, to itself.
func TestColumnKeysAreTheArtifactKeys(t *testing.T) {
	min, max := 1.0, 9.0
	want := models.Column{Name: "x", Type: models.Date, Required: true, Min: &min, Max: &max, Allowed: []string{"a"}, Pattern: "p", Format: "DD/MM/YYYY"}
	for _, f := range reflect.VisibleFields(reflect.TypeFor[models.Column]()) {
		if f.IsExported() && reflect.ValueOf(want).FieldByIndex(f.Index).IsZero() {
			t.Fatalf("set %s in the test, so that its key is checked", f.Name)
		}
	}
	artifact, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(artifact))
	dec.KnownFields(true)
	var got Column
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("artifact column %s in a contract: %v", artifact, err)
	}
	if !reflect.DeepEqual(got, Column{Column: want}) {
		t.Fatalf("artifact column %s reads as %+v", artifact, got)
	}
}

func TestColumnParsesTheFilesSpellings(t *testing.T) {
	empty := ""
	num := Column{Column: models.Column{Name: "bill", Type: models.Float, Required: true, Max: ptr(5000.0)}, Header: &empty, Thousands: ",", Missing: []string{"NA"}}
	text := Column{Column: models.Column{Name: "code", Type: models.String}, Thousands: ",", Missing: []string{"NA", "-"}}
	for _, c := range []*Column{&num, &text} {
		if err := c.Prepare(); err != nil {
			t.Fatal(err)
		}
	}
	if num.FileHeader() != "" || text.FileHeader() != "code" {
		t.Errorf("headers %q and %q", num.FileHeader(), text.FileHeader())
	}
	for _, tc := range []struct {
		c         *Column
		raw       string
		want      models.Value
		wantError string
	}{
		{&num, " 1,234.5 ", models.Number(1234.5), ""},
		{&num, "NA", models.Missing, "bill: required value is missing"},
		{&num, "", models.Missing, "bill: required value is missing"},
		{&num, "5,000.5", models.Number(5000.5), `bill "5,000.5": above the maximum 5000`},
		{&num, "1,2x", models.Missing, `bill "1,2x": not a number`},
		{&num, "1000 ,", models.Missing, `bill "1000 ,": not a number`},
		{&num, ",", models.Missing, `bill ",": not a number`},
		{&num, "\xe2,\x82\xac", models.Missing, "bill: not valid UTF-8"},
		{&text, "-", models.Missing, ""},
		{&text, "1,234", models.Text("1,234"), ""},
		{&text, "\xff", models.Missing, "code: not valid UTF-8"},
	} {
		got, ferr := tc.c.ParseText(tc.raw)
		var msg string
		if ferr != nil {
			msg = ferr.Error()
		}
		if got != tc.want || msg != tc.wantError {
			t.Errorf("%s %q: %+v, error %q; want %+v, error %q", tc.c.Name, tc.raw, got, msg, tc.want, tc.wantError)
		}
	}
}
