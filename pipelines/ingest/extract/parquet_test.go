package extract

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
)

const visitsContract = `
id: pq
inbound: {encryption: none}
tables:
  - name: visits
    pattern: "visits_*"
    key: [visit_id]
    columns:
      - {name: visit_id, type: int, required: true}
      - {name: seen_at, type: timestamp}
      - {name: day, type: date, required: true}
      - {name: cost, type: float, min: 0}
      - {name: units, type: int, max: 100}
      - {name: note, type: string}
      - {name: urgent, type: bool}
      - {name: ward_class, type: string, allowed: [A, B]}
training: {table: visits, target: cost, features: [{name: note, kind: categorical}]}
`

type visit struct {
	VisitID   int64     `parquet:"visit_id"`
	SeenAt    time.Time `parquet:"seen_at,timestamp(millisecond)"`
	Day       *int32    `parquet:"day,date,optional"` // days since 1970 (parquet-go mis-writes *time.Time dates)
	Cost      float64   `parquet:"cost"`
	Units     *int32    `parquet:"units,optional"`
	Note      *string   `parquet:"note,optional"`
	Urgent    bool      `parquet:"urgent"`
	WardClass string    `parquet:"ward_class"`
}

func visits(t testing.TB) *contract.Hospital {
	t.Helper()
	h, err := contract.Parse([]byte(visitsContract), "pq.yaml")
	if err != nil {
		t.Fatal(err)
	}
	h.Reports.ShowValues = true // the tests name the values that fail
	return h
}

func writeParquet[T any](t testing.TB, rows []T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[T](&buf)
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func ptr[T any](v T) *T { return &v }

func sampleVisits(n int) []visit {
	out := make([]visit, n)
	for i := range out {
		day := time.Date(2026, 11, 1+i%28, 0, 0, 0, 0, time.UTC)
		out[i] = visit{
			VisitID:   int64(i + 1),
			SeenAt:    day.Add(9*time.Hour + time.Duration(i)*time.Minute),
			Day:       ptr(int32(day.Unix() / 86400)),
			Cost:      100.5 + float64(i),
			Units:     ptr(int32(i % 50)),
			Note:      ptr(fmt.Sprintf("visit %d", i+1)),
			Urgent:    i%3 == 0,
			WardClass: "A",
		}
	}
	return out
}

func TestParquetTypesMap(t *testing.T) {
	h := visits(t)
	vs := sampleVisits(300)
	vs[4].Note, vs[4].Units = nil, nil // nulls in optional columns
	data := writeParquet(t, vs)
	// From disk (random access) and from a stream (an OpenPGP plaintext,
	// held in memory).
	file := filepath.Join(t.TempDir(), "visits_2026-11.parquet")
	os.WriteFile(file, data, 0o600)
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for name, r := range map[string]io.Reader{"file": f, "stream": io.MultiReader(bytes.NewReader(data))} {
		res := extract(t, h, "visits", "visits_2026-11.parquet", r)
		res.rejectedWith(t, 300)
		row := res.rows[4]
		want := []models.Value{
			models.Number(5),
			models.Number(float64(time.Date(2026, 11, 5, 9, 4, 0, 0, time.UTC).Unix())),
			models.DateValue(time.Date(2026, 11, 5, 0, 0, 0, 0, time.UTC)),
			models.Number(104.5),
			models.Missing,
			models.Missing,
			models.Number(0),
			models.Text("A"),
		}
		if fmt.Sprint(row) != fmt.Sprint(want) {
			t.Fatalf("%s: row 5 = %v\nwant %v", name, row, want)
		}
		if res.rows[0][6].Num != 1 || res.rows[0][5].Str != "visit 1" {
			t.Fatalf("%s: row 1 = %v", name, res.rows[0])
		}
	}
}

func TestParquetBadValues(t *testing.T) {
	h := visits(t)
	one := 1.0
	h.Thresholds.MaxRejectedRows = &one
	vs := sampleVisits(10)
	vs[1].Cost = -3
	vs[2].Units = ptr(int32(500))
	vs[3].Day = nil
	vs[4].WardClass = "Z"
	vs[5].VisitID = 1
	extract(t, h, "visits", "visits.parquet", bytes.NewReader(writeParquet(t, vs))).rejectedWith(t, 5,
		`row 2: cost "-3": below the minimum 0`,
		`row 3: units "500": above the maximum 100`,
		`row 4: day: required value is missing`,
		`row 5: ward_class "Z": not an allowed value (want one of A, B)`,
		`row 6: visit_id "1": duplicate key: first seen in row 1`)
}

func TestParquetHeaderAndTypes(t *testing.T) {
	h := visits(t)
	type short struct {
		VisitID int64  `parquet:"visit_id"`
		Extra   string `parquet:"extra"`
	}
	res := extract(t, h, "visits", "visits.parquet", bytes.NewReader(writeParquet(t, []short{{1, "x"}})))
	res.quarantined(t, `header does not match the contract's table visits: missing columns "seen_at", "day", "cost", "units", "note", "urgent", "ward_class"; unexpected column "extra" (the table is strict; set strict: false in the contract to ignore extra columns)`)

	// A string column where the contract wants a date is parsed as text.
	type textual struct {
		VisitID   int64   `parquet:"visit_id"`
		SeenAt    string  `parquet:"seen_at"`
		Day       string  `parquet:"day"`
		Cost      string  `parquet:"cost"`
		Units     float64 `parquet:"units"`
		Note      int64   `parquet:"note"`
		Urgent    string  `parquet:"urgent"`
		WardClass string  `parquet:"ward_class"`
	}
	one := 1.0
	h.Thresholds.MaxRejectedRows = &one
	rows := []textual{
		{1, "2026-11-02T10:00:00Z", "2026-11-02", "12.5", 3, 77, "yes", "B"},
		{2, "2026-11-02", "2026-13-02", "x", 2.5, 1, "maybe", "A"},
	}
	res = extract(t, h, "visits", "visits.parquet", bytes.NewReader(writeParquet(t, rows)))
	res.rejectedWith(t, 1,
		`row 2: seen_at "2026-11-02": not a timestamp (want RFC 3339, e.g. 2026-01-31T14:05:00Z)`,
		`row 2: day "2026-13-02": not a date (want YYYY-MM-DD)`,
		`row 2: cost "x": not a number`,
		`row 2: units "2.5": not a whole number`,
		`row 2: urgent "maybe": not a boolean (want true or false)`)
	if r := res.rows[0]; r[5].Str != "77" || r[6].Num != 1 || r[3].Num != 12.5 {
		t.Fatalf("row 1 = %v", r)
	}
}

func TestParquetCorruptOrTooLarge(t *testing.T) {
	h := visits(t)
	data := writeParquet(t, sampleVisits(100))
	res := extract(t, h, "visits", "visits.parquet", bytes.NewReader([]byte("PAR1 this is not parquet PAR1")))
	if res.err == nil || res.rep.Verdict != Quarantined {
		t.Fatalf("not parquet: %v", res.err)
	}
	// Flip bytes in the middle (the column data): never a crash.
	bad := bytes.Clone(data)
	for i := len(bad) / 4; i < len(bad)/2; i += 7 {
		bad[i] ^= 0xA5
	}
	res = extract(t, h, "visits", "visits.parquet", bytes.NewReader(bad))
	if res.err == nil && res.rep.Rejected == 0 {
		t.Fatalf("corrupt parquet went through clean")
	}
	h.Inbound.Limits.MaxPlaintextBytes = 1000
	extract(t, h, "visits", "visits.parquet", io.MultiReader(bytes.NewReader(data))).quarantined(t,
		"plaintext over 1000 bytes (the contract's inbound.limits.max_plaintext_bytes; raise it there if the file is genuine)")
}
