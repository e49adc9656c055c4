package extract

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/ingest/decrypt"
)

const contracts = "../../../internal/contract/testdata/"

func stOlaf(t testing.TB) *contract.Hospital {
	t.Helper()
	h, err := contract.Load(contracts + "st-olaf/hospital.yaml")
	if err != nil {
		t.Fatal(err)
	}
	h.Reports.ShowValues = true // the tests name the values that fail
	return h
}

const casesHeader = "case_id,patient_id,doctor_id,admitted_at,admission_type,ward_class,age,planned_los,comorbidities,status,total_bill"

// caseRow is row i of a clean cases file.
func caseRow(i int) string {
	return fmt.Sprintf("C%07d,P%06d,D%03d,2026-%02d-%02d,%s,%s,%d,%d,%d,completed,%d.%02d",
		i, i%500000, i%97, 1+i%12, 1+i%28, []string{"elective", "emergency"}[i%2], []string{"A", "B1", "B2", "C"}[i%4], i%100, 1+i%20, i%6, 1000+i%90000, i%100)
}

func casesCSV(rows int, edit func(i int, row string) string) []byte {
	var b bytes.Buffer
	b.WriteString(casesHeader + "\n")
	for i := 1; i <= rows; i++ {
		row := caseRow(i)
		if edit != nil {
			row = edit(i, row)
		}
		b.WriteString(row + "\n")
	}
	return b.Bytes()
}

// result is what a loader sees: the rows, and how the iteration ended.
type result struct {
	rows [][]models.Value
	err  error
	rep  *Report
	x    *Extractor
}

func extract(t testing.TB, h *contract.Hospital, table, name string, r io.Reader, opts ...Option) result {
	t.Helper()
	x := New(r, h, h.Table(table), name, opts...)
	var res result
	for row, err := range x.Rows() {
		if res.err != nil {
			t.Fatalf("Rows yielded after its error %v", res.err)
		}
		if err != nil {
			res.err = err
			continue
		}
		res.rows = append(res.rows, row)
	}
	res.rep, res.x = x.Report(), x
	return res
}

// rejectedWith asserts that a run loads and rejects the given rows, with
// the given failure messages.
func (r result) rejectedWith(t *testing.T, good int, failures ...string) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("file failed: %v", r.err)
	}
	if len(r.rows) != good || r.rep.Good != int64(good) {
		t.Fatalf("%d good rows (report %d), want %d", len(r.rows), r.rep.Good, good)
	}
	var got []string
	for _, f := range r.rep.Failures {
		got = append(got, f.String())
	}
	if strings.Join(got, "\n") != strings.Join(failures, "\n") {
		t.Fatalf("failures:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(failures, "\n"))
	}
}

func (r result) quarantined(t *testing.T, want string) {
	t.Helper()
	var q *QuarantineError
	if !errors.As(r.err, &q) {
		t.Fatalf("error %v (%T), want a quarantine", r.err, r.err)
	}
	if r.err.Error() != want+"; file quarantined, nothing loaded" {
		t.Fatalf("error:\n%v\nwant:\n%s; file quarantined, nothing loaded", r.err, want)
	}
	if r.rep.Verdict != Quarantined || r.rep.Reason != want {
		t.Fatalf("report: %s %q", r.rep.Verdict, r.rep.Reason)
	}
}

func TestCleanFileLoadsEveryRow(t *testing.T) {
	h := stOlaf(t)
	r := extract(t, h, "cases", "cases_2026-11.csv", bytes.NewReader(casesCSV(1000, nil)))
	r.rejectedWith(t, 1000)
	if r.rep.Verdict != Loaded || r.rep.Rows != 1000 {
		t.Fatalf("report: %+v", r.rep)
	}
	// Values come out typed, aligned with the contract's columns.
	row := r.rows[6] // caseRow(7)
	want := []models.Value{
		models.Text("C0000007"), models.Text("P000007"), models.Text("D007"),
		models.DateValue(time.Date(2026, 8, 8, 0, 0, 0, 0, time.UTC)),
		models.Text("emergency"), models.Text("C"),
		models.Number(7), models.Number(8), models.Number(1), models.Text("completed"), models.Number(1007.07),
	}
	if fmt.Sprint(row) != fmt.Sprint(want) {
		t.Fatalf("row 7 = %v\nwant    %v", row, want)
	}
	// Each row is the loader's to keep: later rows do not overwrite it.
	if r.rows[0][0].Str != "C0000001" || r.rows[999][0].Str != "C0001000" {
		t.Fatalf("rows share storage: %v %v", r.rows[0][0], r.rows[999][0])
	}
}

func TestWrongHeader(t *testing.T) {
	h := stOlaf(t)
	data := strings.Replace(string(casesCSV(3, nil)), "admitted_at", "admission_date", 1)
	r := extract(t, h, "cases", "cases.csv", strings.NewReader(data))
	r.quarantined(t, `header does not match the contract's table cases: missing column "admitted_at"; unexpected column "admission_date" (the table is strict; set strict: false in the contract to ignore extra columns)`)
	if len(r.rows) != 0 {
		t.Fatal("rows yielded for a bad header")
	}

	// A column the contract does not name is ignored when not strict.
	data = strings.Replace(string(casesCSV(3, nil)), casesHeader, casesHeader+",extra", 1)
	data = strings.ReplaceAll(data, "completed,", "completed,") // rows get a cell more:
	lines := strings.Split(strings.TrimSpace(data), "\n")
	for i := 1; i < len(lines); i++ {
		lines[i] += ",x"
	}
	data = strings.Join(lines, "\n") + "\n"
	r = extract(t, h, "cases", "cases.csv", strings.NewReader(data))
	r.quarantined(t, `header does not match the contract's table cases: unexpected column "extra" (the table is strict; set strict: false in the contract to ignore extra columns)`)
	lax := false
	h.Table("cases").Strict = &lax
	extract(t, h, "cases", "cases.csv", strings.NewReader(data)).rejectedWith(t, 3)

	r = extract(t, h, "cases", "cases.csv", strings.NewReader("case_id,case_id\n"))
	r.quarantined(t, `header: column "case_id" appears twice (columns 1 and 2)`)
}

func TestUnparseableDate(t *testing.T) {
	h := stOlaf(t)
	data := casesCSV(100, func(i int, row string) string {
		if i == 42 {
			return strings.Replace(row, "2026-07-15", "2026-13-01", 1)
		}
		return row
	})
	r := extract(t, h, "cases", "cases.csv", bytes.NewReader(data))
	r.rejectedWith(t, 99, `row 42: admitted_at "2026-13-01": not a date (want YYYY-MM-DD)`)
	if r.rep.Verdict != Partial || r.rep.Summary() != "partially loaded: 99 rows, 1 of 100 rejected" {
		t.Fatalf("report: %s", r.rep.Summary())
	}
}

func TestOutOfRangeValue(t *testing.T) {
	h := stOlaf(t)
	data := casesCSV(100, func(i int, row string) string {
		switch i {
		case 7:
			return strings.Replace(row, ",7,8,1,", ",150,8,1,", 1)
		case 10:
			return strings.Replace(row, ",B2,", ",Z9,", 1)
		}
		return row
	})
	extract(t, h, "cases", "cases.csv", bytes.NewReader(data)).rejectedWith(t, 98,
		`row 7: age "150": above the maximum 110`,
		`row 10: ward_class "Z9": not an allowed value (want one of A, B1, B2, C)`)
}

func TestDuplicateKeys(t *testing.T) {
	h := stOlaf(t)
	data := casesCSV(50, func(i int, row string) string {
		if i == 30 {
			return strings.Replace(row, "C0000030", "C0000012", 1)
		}
		return row
	})
	extract(t, h, "cases", "cases.csv", bytes.NewReader(data)).rejectedWith(t, 49,
		`row 30: case_id "C0000012": duplicate key: first seen in row 12`)
}

func TestEmptyFile(t *testing.T) {
	h := stOlaf(t)
	extract(t, h, "cases", "cases.csv", bytes.NewReader(nil)).quarantined(t, "empty file: no header row")
	// A header and no rows is a file with nothing in it, not an error.
	r := extract(t, h, "cases", "cases.csv", strings.NewReader(casesHeader+"\n"))
	r.rejectedWith(t, 0)
	if r.rep.Verdict != Loaded {
		t.Fatalf("verdict %s", r.rep.Verdict)
	}
}

func TestLineOf10MB(t *testing.T) {
	h := stOlaf(t)
	data := casesCSV(10, nil)
	long := append(bytes.Clone(data), bytes.Repeat([]byte("x"), 10<<20)...)
	long = append(long, '\n')
	r := extract(t, h, "cases", "cases.csv", &countingReader{r: bytes.NewReader(long)})
	r.quarantined(t, "row 11: longer than 1 MiB without a line end (a line that never ends, or a quote that is never closed?)")
	if len(r.rows) != 10 {
		t.Fatalf("%d rows before the long line", len(r.rows))
	}
	// It stopped reading soon after the limit, not at the end of the file.
	cr := &countingReader{r: bytes.NewReader(long)}
	extract(t, h, "cases", "cases.csv", cr, WithMaxLineBytes(1<<20))
	if cr.n > 2<<20 {
		t.Fatalf("read %d bytes to find a line over 1 MiB", cr.n)
	}
	// An unclosed quote is the same.
	open := append(bytes.Clone(data), []byte("C1,\"P1")...)
	open = append(open, bytes.Repeat([]byte("y\n"), 1<<20)...)
	extract(t, h, "cases", "cases.csv", bytes.NewReader(open)).quarantined(t, "row 11: longer than 1 MiB without a line end (a line that never ends, or a quote that is never closed?)")
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestInvalidUTF8(t *testing.T) {
	h := stOlaf(t)
	data := casesCSV(20, func(i int, row string) string {
		if i == 5 {
			return strings.Replace(row, "P000005", "P00\xff005", 1)
		}
		return row
	})
	r := extract(t, h, "cases", "cases.csv", bytes.NewReader(data))
	r.rejectedWith(t, 19, `row 5: patient_id: not valid UTF-8`)
	r = extract(t, h, "cases", "cases.csv", strings.NewReader("case_id,\xfe\n"))
	r.quarantined(t, "header: column 2 is not valid UTF-8")
}

// BOM, CRLF, quoted fields with the delimiter, quotes and line breaks,
// and another delimiter.
func TestCSVDialect(t *testing.T) {
	h := stOlaf(t)
	semi, all := ";", 1.0
	h.Table("doctors").Delimiter = semi
	h.Thresholds.MaxRejectedRows = &all
	data := "\xEF\xBB\xBFdoctor_id;specialty;grade\r\n" +
		"D1;\"Cardiology; adult\";consultant\r\n" +
		"D2;\"Oncology \"\"day\"\" unit\nsecond line\";registrar\r\n" +
		"\r\n" + // blank lines are skipped
		"D3;Surgery;resident\r\n"
	r := extract(t, h, "doctors", "doctors.csv", strings.NewReader(data))
	r.rejectedWith(t, 3)
	if got := r.rows[1][1].Str; got != "Oncology \"day\" unit\nsecond line" {
		t.Fatalf("quoted field = %q", got)
	}
	if r.rows[0][0].Str != "D1" || r.rows[2][0].Str != "D3" || r.rows[0][1].Str != "Cardiology; adult" {
		t.Fatalf("rows = %v", r.rows)
	}
	// Row-level CSV problems reject the row; line numbers follow the file.
	data = "doctor_id;specialty;grade\nD1;Surgery\nD2;Sur\"gery;resident\nD3;Surgery;resident\n"
	extract(t, h, "doctors", "doctors.csv", strings.NewReader(data)).rejectedWith(t, 1,
		"row 1: 2 fields, want 3 as in the header",
		`row 2: bare " in non-quoted-field (at byte 7 of the line)`)
	// A quote opened and never closed swallows lines: the file stops there.
	data = "doctor_id;specialty;grade\nD1;\"Surgery;resident\nD2;Surgery;resident\n"
	extract(t, h, "doctors", "doctors.csv", strings.NewReader(data)).quarantined(t,
		`line 2: a quoted field opened here is still open at line 3 (extraneous or missing " in quoted-field)`)
}

// The file-level threshold: the good rows stream first, then the error
// that tells the loader to roll back.
func TestTooManyRejectsQuarantinesTheFile(t *testing.T) {
	h := stOlaf(t)
	data := casesCSV(100, func(i int, row string) string {
		if i%10 == 0 {
			return strings.Replace(row, ",completed,", ",unknown,", 1)
		}
		return row
	})
	r := extract(t, h, "cases", "cases.csv", bytes.NewReader(data))
	r.quarantined(t, `10 of 100 rows rejected (10.0%, over max_rejected_rows 5%); first: row 10: status "unknown": not an allowed value (want one of completed, cancelled)`)
	if len(r.rows) != 90 {
		t.Fatalf("%d rows streamed before the verdict, want 90", len(r.rows))
	}
}

func TestFailuresAreCappedButCounted(t *testing.T) {
	h := stOlaf(t)
	h.Thresholds.MaxErrors = 5
	one := 1.0
	h.Thresholds.MaxRejectedRows = &one
	data := casesCSV(100, func(i int, row string) string {
		return strings.Replace(row, ",completed,", ",?,", 1)
	})
	r := extract(t, h, "cases", "cases.csv", bytes.NewReader(data))
	if r.err != nil || len(r.rep.Failures) != 5 || r.rep.FailuresTotal != 100 || r.rep.Rejected != 100 {
		t.Fatalf("err %v, %d failures listed, %d counted, %d rejected", r.err, len(r.rep.Failures), r.rep.FailuresTotal, r.rep.Rejected)
	}
	if !strings.Contains(r.rep.Text(), "failures: 100 (the first 5 listed)") {
		t.Fatalf("text:\n%s", r.rep.Text())
	}
}

func TestRowCountRatioAndStaleness(t *testing.T) {
	h := stOlaf(t) // row_count_ratio: 10
	data := casesCSV(50, nil)
	extract(t, h, "cases", "cases_2026-11.csv", bytes.NewReader(data), WithPreviousRows(600)).quarantined(t,
		"50 rows, against 600 in the previous extract of cases: off by more than row_count_ratio 10x")
	extract(t, h, "cases", "cases_2026-11.csv", bytes.NewReader(data), WithPreviousRows(400)).rejectedWith(t, 50)
	extract(t, h, "cases", "cases_2026-11_correction.csv", bytes.NewReader(data), WithPreviousRows(600)).rejectedWith(t, 50)

	h.Thresholds.MaxStaleness = contract.Period{Months: 3}
	// The newest admitted_at in the file is 2026-12-24.
	loaded := time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC)
	extract(t, h, "cases", "cases_2026-11.csv", bytes.NewReader(data), WithNewestLoaded(loaded)).quarantined(t,
		"stale: the newest admitted_at is 2026-12-24, older than the newest already loaded (2027-06-30) by more than max_staleness 3mo")
	r := extract(t, h, "cases", "cases_2026-11.csv", bytes.NewReader(data), WithNewestLoaded(time.Date(2027, 3, 20, 0, 0, 0, 0, time.UTC)))
	r.rejectedWith(t, 50)
	if len(r.rep.Checks) != 1 || r.rep.Checks[0] != "newest admitted_at 2026-12-24 against 2027-03-20 already loaded (max_staleness 3mo)" {
		t.Fatalf("checks: %q", r.rep.Checks)
	}
	extract(t, h, "cases", "cases_2026-11_correction.csv", bytes.NewReader(data), WithNewestLoaded(loaded)).rejectedWith(t, 50)
}

// A decryption failure at the end of the stream (a bad signature, a cut
// ciphertext) quarantines the file after its rows streamed; a disk error
// fails the run without blaming the file.
func TestStreamFailures(t *testing.T) {
	h := stOlaf(t)
	data := casesCSV(300, nil)
	bad := io.MultiReader(bytes.NewReader(data), errReader{&decrypt.Error{Reason: "bad signature", Err: errors.New("openpgp: invalid signature")}})
	r := extract(t, h, "cases", "cases.csv.gpg", bad)
	r.quarantined(t, "bad signature: openpgp: invalid signature")
	if len(r.rows) != 300 {
		t.Fatalf("%d rows before the error", len(r.rows))
	}
	disk := io.MultiReader(bytes.NewReader(data[:len(data)/2]), errReader{errors.New("input/output error")})
	r = extract(t, h, "cases", "cases.csv", disk)
	var q *QuarantineError
	if r.err == nil || errors.As(r.err, &q) || r.rep.Verdict != Failed || r.err.Error() != "read: input/output error" {
		t.Fatalf("disk error: %v, verdict %s", r.err, r.rep.Verdict)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestUnknownFormat(t *testing.T) {
	h := stOlaf(t)
	x := New(strings.NewReader("x"), h, nil, "invoices_2026-11.csv")
	for _, err := range x.Rows() {
		if err == nil || err.Error() != "no table of the contract matches the name invoices_2026-11.csv; file quarantined, nothing loaded" {
			t.Fatalf("no table: %v", err)
		}
	}
	extract(t, h, "cases", "cases_2026-11.xlsx", strings.NewReader("x")).quarantined(t,
		"cannot tell the format of cases_2026-11.xlsx: name it .csv or .parquet, or set format: in the contract's table cases")
}

// The real SPARCS sample passes its contract: quoted thousands
// separators, an empty header, float-formatted ids, empty cells.
func TestSPARCS(t *testing.T) {
	h, err := contract.Load(contracts + "sparcs/hospital.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(contracts + "sparcs/sparcs-2016-sample.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := extract(t, h, "discharges", "sparcs-2016-sample.csv", f)
	r.rejectedWith(t, 1000)
	tb := h.Table("discharges")
	first := r.rows[0]
	for name, want := range map[string]string{
		"record_id":      "2205426",
		"facility_id":    "563",
		"facility_name":  "St Francis Hospital",
		"zip3":           "",
		"total_charges":  "108429.42",
		"total_costs":    "20377.11",
		"abortion_edit":  "false",
		"length_of_stay": "12",
	} {
		c := tb.Column(name)
		j := indexOf(tb, name)
		if got := first[j].Format(c.Type); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	second := r.rows[1]
	if second[indexOf(tb, "facility_id")].Num != 1458 {
		t.Errorf(`facility_id "1,458" = %v`, second[indexOf(tb, "facility_id")])
	}
}

func indexOf(t *contract.Table, name string) int {
	for j := range t.Columns {
		if t.Columns[j].Name == name {
			return j
		}
	}
	return -1
}

// Rejected rows go to the rejects writer as CSV, with their row and
// reasons; nothing is written for a clean file.
func TestRejectedRowsAreKept(t *testing.T) {
	h := stOlaf(t)
	data := casesCSV(60, func(i int, row string) string {
		switch i {
		case 3:
			return strings.Replace(row, ",3,4,3,", ",-1,4,3,", 1)
		case 9:
			return strings.Replace(row, "2026-10-10", "10/10/2026", 1)
		}
		return row
	})
	var buf bytes.Buffer
	extract(t, h, "cases", "cases.csv", bytes.NewReader(data), WithRejects(&buf)).rejectedWith(t, 58,
		`row 3: age "-1": below the minimum 0`, `row 9: admitted_at "10/10/2026": not a date (want YYYY-MM-DD)`)
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || strings.Join(recs[0], ",") != casesHeader+",ward_row,ward_reason" {
		t.Fatalf("rejects: %q", recs)
	}
	if strings.Join(recs[1][:11], ",") != strings.Replace(caseRow(3), ",3,4,3,", ",-1,4,3,", 1) || recs[1][11] != "3" || recs[1][12] != `age "-1": below the minimum 0` {
		t.Fatalf("reject row: %q", recs[1])
	}
	var clean bytes.Buffer
	extract(t, h, "cases", "cases.csv", bytes.NewReader(casesCSV(5, nil)), WithRejects(&clean)).rejectedWith(t, 5)
	if clean.Len() != 0 {
		t.Fatalf("rejects for a clean file: %q", clean.String())
	}
}

func TestRejectsFileIsSealedAndPrivate(t *testing.T) {
	h := stOlaf(t)
	dir := t.TempDir()
	idFile := filepath.Join(dir, "id.age")
	if err := os.WriteFile(idFile, []byte("AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := decrypt.Load(decrypt.WithAgeIdentity(idFile))
	if err != nil {
		t.Fatal(err)
	}
	seal := func(w io.Writer) (io.WriteCloser, error) { return keys.Seal(w, decrypt.Age) }
	data := casesCSV(40, func(i int, row string) string {
		if i == 2 {
			return strings.Replace(row, "P000002", "", 1)
		}
		return row
	})
	path := filepath.Join(dir, "cases.csv.age.rejected.csv.age")
	rf := NewRejectsFile(path, seal)
	extract(t, h, "cases", "cases.csv.age", bytes.NewReader(data), WithRejects(rf)).rejectedWith(t, 39, "row 2: patient_id: required value is missing")
	got, err := rf.Finish()
	if err != nil || got != path {
		t.Fatalf("Finish = %q, %v", got, err)
	}
	raw, _ := os.ReadFile(path)
	if bytes.Contains(raw, []byte("C0000002")) {
		t.Fatal("rejected rows on disk in plaintext")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	hAge := &contract.Hospital{Inbound: contract.Inbound{Encryption: decrypt.Age}}
	pr, err := keys.Open(bytes.NewReader(raw), hAge, "r.csv.age")
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(pr)
	if err != nil || !strings.Contains(string(plain), "C0000002,,D002") {
		t.Fatalf("decrypted rejects: %q %v", plain, err)
	}
	none := NewRejectsFile(filepath.Join(dir, "none.csv"), nil)
	extract(t, h, "cases", "cases.csv", bytes.NewReader(casesCSV(5, nil)), WithRejects(none)).rejectedWith(t, 5)
	if p, err := none.Finish(); p != "" || err != nil {
		t.Fatalf("clean file left a rejects file %q %v", p, err)
	}
}

func TestReportFiles(t *testing.T) {
	h := stOlaf(t)
	data := casesCSV(60, func(i int, row string) string {
		if i == 60 {
			return strings.Replace(row, "1060.60", "-5.59", 1)
		}
		return row
	})
	r := extract(t, h, "cases", "cases_2026-11.csv.gpg", bytes.NewReader(data))
	rep := r.rep
	rep.SHA256 = strings.Repeat("ab", 32)
	dir := t.TempDir()
	js, txt, err := rep.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	if js != filepath.Join(dir, "cases_2026-11.csv.gpg.validation.json") || txt != filepath.Join(dir, "cases_2026-11.csv.gpg.validation.txt") {
		t.Fatalf("paths %s %s", js, txt)
	}
	var back Report
	b, _ := os.ReadFile(js)
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Verdict != Partial || back.Rows != 60 || back.Good != 59 || back.Failures[0].Row != 60 || back.Failures[0].Column != "total_bill" || back.Failures[0].Value != "-5.59" {
		t.Fatalf("json report: %s", b)
	}
	text, _ := os.ReadFile(txt)
	want := `ward ingest: validation report

hospital  st-olaf
file      cases_2026-11.csv.gpg
sha256    ` + rep.SHA256 + `
table     cases (csv)
verdict   partially loaded: 59 rows, 1 of 60 rejected
rows      60 read, 59 good, 1 rejected

failures: 1
  row 60: total_bill "-5.59": below the minimum 0
`
	if string(text) != want {
		t.Fatalf("text report:\n%s\nwant:\n%s", text, want)
	}
	for _, p := range []string{js, txt} {
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v", p, fi.Mode())
		}
	}
	q := NewReport("st-olaf", "x.csv.gpg", &decrypt.Error{Reason: "wrong key"})
	if q.Verdict != Quarantined || q.Summary() != "quarantined: wrong key" {
		t.Fatalf("NewReport: %+v", q)
	}
}

// A loader that stops early gets no more rows and no error.
func TestLoaderStopsEarly(t *testing.T) {
	h := stOlaf(t)
	x := New(bytes.NewReader(casesCSV(100, nil)), h, h.Table("cases"), "cases.csv")
	n := 0
	for _, err := range x.Rows() {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if n == 10 {
			break
		}
	}
	if n != 10 || x.Report().Verdict != Failed {
		t.Fatalf("n %d, verdict %s", n, x.Report().Verdict)
	}
	for _, err := range x.Rows() {
		if err == nil || !strings.Contains(err.Error(), "ranged over twice") {
			t.Fatalf("second range: %v", err)
		}
	}
}
