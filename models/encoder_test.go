package models_test

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wardml/ward/models"
)

func ptr[T any](v T) *T { return &v }

func prepared(t *testing.T, cols ...models.Column) []models.Column {
	t.Helper()
	for i := range cols {
		if err := cols[i].Prepare(); err != nil {
			t.Fatal(err)
		}
	}
	return cols
}

func fitEncoder(t *testing.T, inputs []models.Column, features []models.Feature, rows [][]models.Value) (*models.Encoder, error) {
	t.Helper()
	fit, err := models.NewEncoderFit(inputs, features)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if err := fit.Add(r); err != nil {
			return nil, err
		}
	}
	return fit.Encoder()
}

// dense expands an encoded row for comparisons.
func dense(s *models.Sparse, width int) []float64 {
	out := make([]float64, width)
	for k, i := range s.Index {
		out[i] = s.Value[k]
	}
	return out
}

func TestNumericStandardised(t *testing.T) {
	inputs := prepared(t, models.Column{Name: "los", Type: models.Int}, models.Column{Name: "age", Type: models.Float})
	features := []models.Feature{{Name: "los", Kind: models.Numeric, Transform: models.Log1p}, {Name: "age", Kind: models.Numeric}}
	var rows [][]models.Value
	for _, r := range [][2]float64{{0, 20}, {1, 40}, {3, 60}, {7, 80}} {
		rows = append(rows, []models.Value{models.Number(r[0]), models.Number(r[1])})
	}
	rows = append(rows, []models.Value{models.Missing, models.Missing})
	enc, err := fitEncoder(t, inputs, features, rows)
	if err != nil {
		t.Fatal(err)
	}
	// los: log1p of 0, 1, 3, 7 is 0, ln 2, ln 4, ln 8 = k ln 2 for k = 0..3:
	// mean 1.5 ln 2, population std sqrt(1.25) ln 2. age: mean 50, std sqrt(500).
	los, age := enc.Features[0].Numeric, enc.Features[1].Numeric
	if math.Abs(los.Mean-1.5*math.Ln2) > 1e-15 || math.Abs(los.Std-math.Sqrt(1.25)*math.Ln2) > 1e-15 {
		t.Errorf("los mean %v std %v, want %v %v", los.Mean, los.Std, 1.5*math.Ln2, math.Sqrt(1.25)*math.Ln2)
	}
	if age.Mean != 50 || math.Abs(age.Std-math.Sqrt(500)) > 1e-12 {
		t.Errorf("age mean %v std %v, want 50 %v", age.Mean, age.Std, math.Sqrt(500))
	}
	if got := enc.Names(); !slices.Equal(got, []string{"los", "age"}) {
		t.Errorf("names %v", got)
	}
	var s models.Sparse
	if err := enc.Encode(&s, []models.Value{models.Number(7), models.Number(50)}); err != nil {
		t.Fatal(err)
	}
	got := dense(&s, enc.Width())
	if want := 1.5 / math.Sqrt(1.25); math.Abs(got[0]-want) > 1e-12 || got[1] != 0 {
		t.Errorf("encoded %v, want [%v 0] (age at its mean is 0)", got, want)
	}
	// Missing values become the mean: nothing set.
	if err := enc.Encode(&s, []models.Value{models.Missing, models.Missing}); err != nil || len(s.Index) != 0 {
		t.Errorf("a row of missing values encodes as %v, %v; want no columns set", s.Index, err)
	}
	// Outside the transform's domain: a field error naming the column.
	err = enc.Encode(&s, []models.Value{models.Number(-2), models.Number(1)})
	var ferr *models.FieldError
	if !errors.As(err, &ferr) || ferr.Column != "los" || !strings.Contains(ferr.Reason, "log1p needs a value above -1") {
		t.Errorf("log1p of -2: got %v", err)
	}
}

func TestCategoricalLevels(t *testing.T) {
	inputs := prepared(t,
		models.Column{Name: "specialty", Type: models.String},
		models.Column{Name: "grade", Type: models.String},
		models.Column{Name: "code", Type: models.Int},
	)
	features := []models.Feature{
		{Name: "specialty", Kind: models.Categorical, MinCount: 2},
		{Name: "grade", Kind: models.Categorical},
		{Name: "code", Kind: models.Categorical},
	}
	row := func(spec, grade string, code float64) []models.Value {
		g := models.Text(grade)
		if grade == "" {
			g = models.Missing
		}
		return []models.Value{models.Text(spec), g, models.Number(code)}
	}
	rows := [][]models.Value{
		row("surgery", "consultant", 10), row("surgery", "", 9), row("cardio", "", 10),
		row("cardio", "resident", 9), row("neuro", "consultant", 10), row("surgery", "resident", 9),
	}
	enc, err := fitEncoder(t, inputs, features, rows)
	if err != nil {
		t.Fatal(err)
	}
	// neuro is seen once, under min_count 2: other. Missing grades are a
	// level of their own (""), sorted first. Int codes are levels by text.
	want := []string{
		"specialty=cardio", "specialty=surgery", "specialty=(other)",
		"grade=(missing)", "grade=consultant", "grade=resident", "grade=(other)",
		"code=10", "code=9", "code=(other)",
	}
	if got := enc.Names(); !slices.Equal(got, want) {
		t.Fatalf("names\n got %v\nwant %v", got, want)
	}
	var s models.Sparse
	check := func(r []models.Value, wantCols []string, unseen []string) {
		t.Helper()
		if err := enc.Encode(&s, r); err != nil {
			t.Fatal(err)
		}
		var cols []string
		for k, i := range s.Index {
			if s.Value[k] != 1 {
				t.Errorf("one-hot value %v", s.Value[k])
			}
			cols = append(cols, enc.Names()[i])
		}
		var gotUnseen []string
		for _, f := range s.Unseen {
			gotUnseen = append(gotUnseen, enc.Features[f].Name)
		}
		if !slices.Equal(cols, wantCols) || !slices.Equal(gotUnseen, unseen) {
			t.Errorf("encoded %v unseen %v; want %v unseen %v", cols, gotUnseen, wantCols, unseen)
		}
	}
	check(row("cardio", "resident", 9), []string{"specialty=cardio", "grade=resident", "code=9"}, nil)
	// Rare in training and never seen both go to other, and are reported.
	check(row("neuro", "", 10), []string{"specialty=(other)", "grade=(missing)", "code=10"}, []string{"specialty"})
	check(row("oncology", "registrar", 11), []string{"specialty=(other)", "grade=(other)", "code=(other)"}, []string{"specialty", "grade", "code"})
	// An empty string is missing, as null is.
	check([]models.Value{models.Text("surgery"), models.Text(""), models.Number(9)}, []string{"specialty=surgery", "grade=(missing)", "code=9"}, nil)
	// A missing value that was too rare goes to other, and is not unseen.
	check([]models.Value{models.Missing, models.Text("consultant"), models.Number(9)}, []string{"specialty=(other)", "grade=consultant", "code=9"}, nil)
}

func TestDateParts(t *testing.T) {
	inputs := prepared(t, models.Column{Name: "admitted_at", Type: models.Date})
	features := []models.Feature{{Name: "admitted", Column: "admitted_at", Kind: models.DateParts, Parts: []string{"year", "month", "dow"}}}
	day := func(s string) models.Value {
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			t.Fatal(err)
		}
		return models.DateValue(d)
	}
	rows := [][]models.Value{{day("2025-11-03")}, {day("2026-01-14")}, {day("2026-02-01")}, {models.Missing}}
	enc, err := fitEncoder(t, inputs, features, rows)
	if err != nil {
		t.Fatal(err)
	}
	if enc.Width() != 3+12+7 {
		t.Fatalf("width %d, want 3 (2025, 2026, other) + 12 + 7", enc.Width())
	}
	var s models.Sparse
	// 2026-03-16 is a Monday (dow 1); 2027 was not seen: year other.
	if err := enc.Encode(&s, []models.Value{day("2027-03-15")}); err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, i := range s.Index {
		cols = append(cols, enc.Names()[i])
	}
	if want := []string{"admitted.year=(other)", "admitted.month=3", "admitted.dow=1"}; !slices.Equal(cols, want) || len(s.Unseen) != 1 {
		t.Errorf("encoded %v unseen %v, want %v and the feature unseen", cols, s.Unseen, want)
	}
	if err := enc.Encode(&s, []models.Value{day("2026-02-01")}); err != nil {
		t.Fatal(err)
	}
	cols = cols[:0]
	for _, i := range s.Index {
		cols = append(cols, enc.Names()[i])
	}
	if want := []string{"admitted.year=2026", "admitted.month=2", "admitted.dow=7"}; !slices.Equal(cols, want) || len(s.Unseen) != 0 {
		t.Errorf("encoded %v, want %v", cols, want)
	}
}

func TestConstantAndEmptyFeatures(t *testing.T) {
	inputs := prepared(t,
		models.Column{Name: "age", Type: models.Int},
		models.Column{Name: "sex", Type: models.String},
		models.Column{Name: "doctor", Type: models.String},
		models.Column{Name: "admitted_at", Type: models.Date},
		models.Column{Name: "weight", Type: models.Float},
	)
	features := []models.Feature{
		{Name: "age", Kind: models.Numeric},
		{Name: "sex", Kind: models.Categorical},
		{Name: "doctor", Kind: models.Categorical, MinCount: 5},
		{Name: "admitted", Column: "admitted_at", Kind: models.DateParts, Parts: []string{"month", "year"}},
		{Name: "weight", Kind: models.Numeric},
	}
	var rows [][]models.Value
	for i := range 4 {
		rows = append(rows, []models.Value{
			models.Number(40), models.Text("F"), models.Text(string(rune('a' + i))),
			models.Number(float64(20454 + 40*i)), models.Missing,
		})
	}
	_, err := fitEncoder(t, inputs, features, rows)
	if !errors.Is(err, models.ErrConstant) {
		t.Fatalf("got %v, want ErrConstant", err)
	}
	for _, want := range []string{
		"feature age: constant on the training rows: every value of age is 40",
		`feature sex: constant on the training rows: every value of sex is "F"`,
		"feature doctor: constant on the training rows: every value of doctor rarer than min_count 5, so all are other",
		"feature admitted: part year: constant on the training rows: every year of admitted_at is 2026",
		"feature weight: column weight has no values in the training rows",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "part month") {
		t.Errorf("month varies over the rows, yet: %v", err)
	}
}

func TestEncodeAllocatesNothing(t *testing.T) {
	inputs := prepared(t,
		models.Column{Name: "age", Type: models.Int},
		models.Column{Name: "ward", Type: models.String},
		models.Column{Name: "code", Type: models.Int},
		models.Column{Name: "admitted_at", Type: models.Date},
	)
	features := []models.Feature{
		{Name: "age", Kind: models.Numeric, Transform: models.Log},
		{Name: "ward", Kind: models.Categorical},
		{Name: "code", Kind: models.Categorical},
		{Name: "admitted", Column: "admitted_at", Kind: models.DateParts, Parts: []string{"year", "week", "dom"}},
	}
	var rows [][]models.Value
	for i := range 50 {
		rows = append(rows, []models.Value{models.Number(float64(20 + i)), models.Text([]string{"A", "B", "C"}[i%3]), models.Number(float64(i % 4)), models.Number(float64(20000 + 11*i))})
	}
	enc, err := fitEncoder(t, inputs, features, rows)
	if err != nil {
		t.Fatal(err)
	}
	var s models.Sparse
	row := []models.Value{models.Number(33), models.Text("Z"), models.Number(3), models.Number(20111)}
	allocs := testing.AllocsPerRun(200, func() {
		if err := enc.Encode(&s, row); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Encode allocates %v times per row, want 0", allocs)
	}
}
