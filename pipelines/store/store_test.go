package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/models"
)

func TestMain(m *testing.M) {
	if url := os.Getenv(lockHelperEnv); url != "" {
		lockHelper(url)
		return
	}
	testenv.Main(m)
}

// engines runs a test against a fresh database of each engine: a database
// on a real PostgreSQL server, and a SQLite file.
func engines(t *testing.T, test func(t *testing.T, url string)) {
	t.Run("postgres", func(t *testing.T) { test(t, testenv.Postgres(t)) })
	t.Run("sqlite", func(t *testing.T) { test(t, "sqlite:"+filepath.Join(t.TempDir(), "ward.db")) })
}

func open(t *testing.T, url string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(context.Background(), url, opts...)
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// testContract is a hospital with every column type and a join.
const testContract = `
id: test-hospital
tables:
  - name: patients
    pattern: "patients_*.csv"
    key: [patient_id]
    columns:
      - {name: patient_id, type: string, required: true}
      - {name: sex, type: string}
      - {name: birth_date, type: date}
  - name: cases
    pattern: "cases_*.csv"
    key: [case_id]
    time_column: admitted_at
    joins: [{table: patients, on: {patient_id: patient_id}}]
    columns:
      - {name: case_id, type: string, required: true}
      - {name: patient_id, type: string, required: true}
      - {name: admitted_at, type: date, required: true}
      - {name: arrived, type: timestamp}
      - {name: age, type: int}
      - {name: emergency, type: bool}
      - {name: total_bill, type: float}
training:
  target: total_bill
  time_column: admitted_at
  features: [{name: age, kind: numeric}, {name: sex, kind: categorical}]
`

func hospital(t *testing.T) *contract.Hospital {
	t.Helper()
	h, err := contract.Parse([]byte(testContract), "test-hospital/hospital.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// row parses one row of text cells with the table's columns, as ingest
// would.
func row(t *testing.T, tbl *contract.Table, cells ...string) []models.Value {
	t.Helper()
	if len(cells) != len(tbl.Columns) {
		t.Fatalf("row %v: %d cells for %d columns", cells, len(cells), len(tbl.Columns))
	}
	out := make([]models.Value, len(cells))
	for i, c := range tbl.Columns {
		v, ferr := c.ParseText(cells[i])
		if ferr != nil {
			t.Fatalf("row %v: %v", cells, ferr)
		}
		out[i] = v
	}
	return out
}

// stream makes a Rows of fixed rows.
func stream(rows ...[]models.Value) Rows {
	return func(yield func([]models.Value, error) bool) {
		for _, r := range rows {
			if !yield(r, nil) {
				return
			}
		}
	}
}

// file is a ledger entry whose content hash stands for the given text.
func file(hospital, name, content string) File {
	sum := sha256.Sum256([]byte(content))
	return File{Hospital: hospital, Name: name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(content))}
}

// tableRows reads a data table back, ordered by its key.
func tableRows(t *testing.T, s *Store, hospital string, tbl *contract.Table) [][]models.Value {
	t.Helper()
	cols := make([]string, len(tbl.Columns))
	for i, c := range tbl.Columns {
		cols[i] = c.Name
	}
	rows, err := s.db.Query(fmt.Sprintf("SELECT %s FROM %s ORDER BY %s", quoteAll("", cols),
		quote(TableName(hospital, tbl.Name)), quoteAll("", tbl.Key)))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out [][]models.Value
	for rows.Next() {
		vs := make([]valueScanner, len(cols))
		scan := make([]any, len(cols))
		for i, c := range tbl.Columns {
			vs[i].typ = c.Type
			scan[i] = &vs[i]
		}
		if err := rows.Scan(scan...); err != nil {
			t.Fatal(err)
		}
		r := make([]models.Value, len(cols))
		for i := range vs {
			r[i] = vs[i].v
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func count(t *testing.T, s *Store, table string) int64 {
	t.Helper()
	var n int64
	if err := s.db.QueryRow("SELECT count(*) FROM " + quote(table)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func equalRows(a, b []models.Value) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestOpenRefusesBadURLsWithExitCode2(t *testing.T) {
	ctx := context.Background()
	for _, url := range []string{
		"mysql://x/y",
		"sqlite:",
		"sqlite::memory:",
		"sqlite:ward.db?mode=ro",
		fmt.Sprintf("postgres://ward@127.0.0.1:%d/none?sslmode=disable&connect_timeout=2", testenv.FreePort(t)),
	} {
		s, err := Open(ctx, url)
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) worked", url)
			continue
		}
		if exit.Code(err) != exit.Config {
			t.Errorf("Open(%q): exit code %d, want %d: %v", url, exit.Code(err), exit.Config, err)
		}
	}
}

func TestMigrationsApplyOnceWhenOpenedConcurrently(t *testing.T) {
	all, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	engines(t, func(t *testing.T, url string) {
		// Each Open is its own *sql.DB, as two processes would be.
		const n = 4
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() {
				s, err := Open(context.Background(), url)
				if err == nil {
					err = s.Close()
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("concurrent open: %v", err)
			}
		}
		s := open(t, url)
		if got := count(t, s, "ward_migrations"); got != int64(len(all)) {
			t.Errorf("ward_migrations has %d rows, want %d", got, len(all))
		}
		// A database newer than this ward is refused, not touched.
		if _, err := s.db.Exec(`INSERT INTO ward_migrations (version, name, applied_at) VALUES (9999, 'future', $1)`, s.d.time(time.Now())); err != nil {
			t.Fatal(err)
		}
		_, err := Open(context.Background(), url)
		if err == nil || exit.Code(err) != exit.Config {
			t.Fatalf("Open of a newer schema: %v, want an exit-code-2 error", err)
		}
		t.Log(err)
	})
}

func TestEnsureTableCreatesAddsAndRefusesTypeChanges(t *testing.T) {
	engines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url)
		h := hospital(t)
		cases := h.Table("cases")
		if err := s.EnsureTable(ctx, h.ID, cases); err != nil {
			t.Fatal(err)
		}
		if err := s.EnsureTable(ctx, h.ID, cases); err != nil {
			t.Fatalf("second EnsureTable: %v", err)
		}
		if got := count(t, s, "test_hospital__cases"); got != 0 {
			t.Fatalf("new table has %d rows", got)
		}

		// A newer contract adds a column: the table gains it, old rows
		// have nulls there.
		if _, err := s.Load(ctx, file(h.ID, "cases_1.csv", "1"), cases,
			stream(row(t, cases, "C1", "P1", "2026-01-02", "", "40", "true", "100.5"))); err != nil {
			t.Fatal(err)
		}
		wider := *cases
		wider.Columns = append(append([]contract.Column{}, cases.Columns...), contract.Column{Column: models.Column{Name: "ward_class", Type: models.String}})
		if err := wider.Columns[len(wider.Columns)-1].Prepare(); err != nil {
			t.Fatal(err)
		}
		if err := s.EnsureTable(ctx, h.ID, &wider); err != nil {
			t.Fatalf("add column: %v", err)
		}
		got := tableRows(t, s, h.ID, &wider)
		if len(got) != 1 || !got[0][len(wider.Columns)-1].Null {
			t.Fatalf("after adding ward_class: %v", got)
		}
		if _, err := s.Load(ctx, file(h.ID, "cases_2.csv", "2"), &wider,
			stream(row(t, &wider, "C2", "P1", "2026-01-03", "", "41", "false", "7", "B1"))); err != nil {
			t.Fatal(err)
		}
		if got := tableRows(t, s, h.ID, &wider); len(got) != 2 || got[1][7].Str != "B1" {
			t.Fatalf("rows with ward_class: %v", got)
		}

		// A type change is refused, and says what to do.
		changed := *cases
		changed.Columns = append([]contract.Column{}, cases.Columns...)
		changed.Columns[4].Type = models.Float // age: int -> float
		err := s.EnsureTable(ctx, h.ID, &changed)
		if err == nil {
			t.Fatal("EnsureTable accepted a changed column type")
		}
		for _, want := range []string{"age is int", "float in the contract", "new name"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		// So is a key change.
		rekeyed := *cases
		rekeyed.Key = []string{"case_id", "patient_id"}
		if err := s.EnsureTable(ctx, h.ID, &rekeyed); err == nil || !strings.Contains(err.Error(), "key") {
			t.Fatalf("EnsureTable with another key: %v", err)
		}
		// A contract column may not take ward's own names.
		own := *cases
		own.Columns = append(append([]contract.Column{}, cases.Columns...), contract.Column{Column: models.Column{Name: "_ward_file", Type: models.String}})
		if err := s.EnsureTable(ctx, h.ID, &own); err == nil {
			t.Fatal("EnsureTable accepted a column named _ward_file")
		}
	})
}

func TestEnsureTableConcurrently(t *testing.T) {
	engines(t, func(t *testing.T, url string) {
		h := hospital(t)
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for range 4 {
			wg.Go(func() {
				s, err := Open(context.Background(), url)
				if err != nil {
					errs <- err
					return
				}
				defer s.Close()
				errs <- s.ensureAll(context.Background(), h)
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestLoadRoundTripsEveryTypeAndReplacesResentKeys(t *testing.T) {
	engines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url)
		h := hospital(t)
		cases := h.Table("cases")
		first := [][]models.Value{
			row(t, cases, "C1", "P1", "2026-01-02", "2026-01-02T08:15:00Z", "40", "true", "1234.5"),
			row(t, cases, "C2", "P2", "1969-12-31", "2026-01-02T08:15:00.123456Z", "0", "false", "0.1"),
			row(t, cases, "C3", "P1", "2026-02-28", "", "", "", ""),
			row(t, cases, "C4", "P3", "2000-02-29", "1999-12-31T23:59:59.5+02:00", "-3", "1", "1e-7"),
			row(t, cases, "C5 ünïcode 'quoted' \"x\"", "P,4", "2026-03-01", "2026-03-01T00:00:00Z", "9007199254740992", "no", "-0.25"),
		}
		f := file(h.ID, "cases_2026-01.csv", "january")
		c, err := s.Load(ctx, f, cases, stream(first...))
		if err != nil {
			t.Fatal(err)
		}
		if c.Inserted != 5 || c.Updated != 0 {
			t.Fatalf("first load: %+v, want 5 inserted", c)
		}
		got := tableRows(t, s, h.ID, cases)
		if len(got) != len(first) {
			t.Fatalf("%d rows back, want %d", len(got), len(first))
		}
		for i := range first {
			if !equalRows(got[i], first[i]) {
				t.Errorf("row %d:\n got %v\nwant %v", i, got[i], first[i])
			}
		}

		// A correction re-sends C2 and C3 and adds C6.
		fix := [][]models.Value{
			row(t, cases, "C2", "P2", "1969-12-31", "", "1", "true", "99"),
			row(t, cases, "C3", "P1", "2026-02-28", "", "50", "false", "5000"),
			row(t, cases, "C6", "P9", "2026-03-05", "", "70", "", "1"),
		}
		fixFile := file(h.ID, "cases_correction_2026-01.csv", "correction")
		// The validator's count of rejected rows is final only once its
		// stream has ended: the ledger takes it then.
		var rejected int64
		counted := func(yield func([]models.Value, error) bool) {
			for _, r := range fix {
				rejected++
				if !yield(r, nil) {
					return
				}
			}
			rejected = 2
		}
		c, err = s.Load(ctx, fixFile, cases, counted, WithRejected(func() int64 { return rejected }))
		if err != nil {
			t.Fatal(err)
		}
		if c.Inserted != 1 || c.Updated != 2 {
			t.Fatalf("correction: %+v, want 1 inserted, 2 updated", c)
		}
		got = tableRows(t, s, h.ID, cases)
		want := [][]models.Value{first[0], fix[0], fix[1], first[3], first[4], fix[2]}
		if len(got) != len(want) {
			t.Fatalf("%d rows after the correction, want %d", len(got), len(want))
		}
		for i := range want {
			if !equalRows(got[i], want[i]) {
				t.Errorf("row %d after the correction:\n got %v\nwant %v", i, got[i], want[i])
			}
		}
		// The ledger has both, loaded, with their counts.
		entries, err := s.Files(ctx, FileQuery{Hospital: h.ID, State: Loaded})
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 2 {
			t.Fatalf("loaded entries: %+v", entries)
		}
		for _, e := range entries {
			if e.Name == fixFile.Name && (e.Inserted != 1 || e.Updated != 2 || e.Rejected != 2 || e.Table != "cases") {
				t.Errorf("correction's entry: %+v", e)
			}
			if e.Name == f.Name && (e.Inserted != 5 || e.Updated != 0) {
				t.Errorf("first file's entry: %+v", e)
			}
		}
		// Each row says which file it came from.
		var fromFix int64
		if err := s.db.QueryRow(`SELECT count(*) FROM test_hospital__cases WHERE _ward_file = $1`, fixFile.SHA256).Scan(&fromFix); err != nil || fromFix != 3 {
			t.Errorf("rows from the correction: %d, %v; want 3", fromFix, err)
		}
	})
}

func TestLoadIsAllOrNothing(t *testing.T) {
	engines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url)
		h := hospital(t)
		cases := h.Table("cases")
		if _, err := s.Load(ctx, file(h.ID, "cases_0.csv", "0"), cases,
			stream(row(t, cases, "C0", "P0", "2026-01-01", "", "", "", ""))); err != nil {
			t.Fatal(err)
		}

		// The stream fails after 1500 rows (several COPY buffers and
		// SQLite batches have gone): nothing of the file stays.
		broken := errors.New("row 1501: admitted_at \"2026-13-01\": not a date")
		f := file(h.ID, "cases_1.csv", "1")
		_, err := s.Load(ctx, f, cases, func(yield func([]models.Value, error) bool) {
			for i := range 1500 {
				if !yield(row(t, cases, fmt.Sprintf("C%d", i+1), "P1", "2026-01-01", "", "1", "true", "1"), nil) {
					return
				}
			}
			yield(nil, broken)
		})
		if !errors.Is(err, broken) {
			t.Fatalf("load with a failing stream: %v, want it to wrap %v", err, broken)
		}
		if n := count(t, s, "test_hospital__cases"); n != 1 {
			t.Fatalf("%d rows after a failed load, want the 1 loaded before", n)
		}
		if e, err := s.Files(ctx, FileQuery{Hospital: h.ID, Name: f.Name}); err != nil || len(e) != 0 {
			t.Fatalf("ledger after a failed load: %+v, %v; want no entry", e, err)
		}

		// A row that does not fit the table.
		_, err = s.Load(ctx, f, cases, stream([]models.Value{models.Text("C9")}))
		if err == nil || !strings.Contains(err.Error(), "row 1 has 1 values") {
			t.Fatalf("short row: %v", err)
		}

		// A file that sends a key twice, in rows far apart, is refused
		// whole, naming the key.
		var rows [][]models.Value
		for i := range 1200 {
			rows = append(rows, row(t, cases, fmt.Sprintf("D%d", i), "P1", "2026-01-01", "", "1", "true", "1"))
		}
		rows = append(rows, row(t, cases, "D7", "P2", "2026-01-02", "", "2", "false", "2"))
		_, err = s.Load(ctx, file(h.ID, "cases_2.csv", "2"), cases, stream(rows...))
		var dup *DuplicateKeyError
		if !errors.As(err, &dup) || len(dup.Values) != 1 || dup.Values[0] != "D7" {
			t.Fatalf("duplicate key: %v, want a DuplicateKeyError for D7", err)
		}
		if n := count(t, s, "test_hospital__cases"); n != 1 {
			t.Fatalf("%d rows after a refused file, want 1", n)
		}
		// The store is still usable, and the file loads once fixed.
		if c, err := s.Load(ctx, f, cases, stream(rows[:1200]...)); err != nil || c.Inserted != 1200 {
			t.Fatalf("load after failures: %+v, %v", c, err)
		}
	})
}

func TestLoadTwiceIsRefused(t *testing.T) {
	engines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url)
		h := hospital(t)
		pts := h.Table("patients")
		r := row(t, pts, "P1", "F", "1980-05-06")
		f := file(h.ID, "patients_1.csv", "same bytes")
		if _, err := s.Load(ctx, f, pts, stream(r)); err != nil {
			t.Fatal(err)
		}
		_, err := s.Load(ctx, f, pts, stream(r))
		if !errors.Is(err, ErrAlreadyLoaded) {
			t.Fatalf("second load: %v, want ErrAlreadyLoaded", err)
		}
		// The same content under another name is the same file.
		renamed := f
		renamed.Name = "patients_1_resent.csv"
		_, err = s.Load(ctx, renamed, pts, stream(r))
		if !errors.Is(err, ErrAlreadyLoaded) || !strings.Contains(err.Error(), "loaded as patients_1.csv") {
			t.Fatalf("same content, other name: %v", err)
		}
		if err := s.Record(ctx, File{Hospital: h.ID, Name: renamed.Name, SHA256: f.SHA256, Size: f.Size, Table: "patients",
			State: Duplicate, Reason: "same content as patients_1.csv"}); err != nil {
			t.Fatal(err)
		}
		// The ledger finds it by content under both names.
		byContent, err := s.Files(ctx, FileQuery{Hospital: h.ID, SHA256: f.SHA256})
		if err != nil || len(byContent) != 2 {
			t.Fatalf("by SHA-256: %+v, %v", byContent, err)
		}
		if n := count(t, s, "test_hospital__patients"); n != 1 {
			t.Fatalf("%d patients, want 1", n)
		}
	})
}

func TestConcurrentLoadsOfOneFileLoadItOnce(t *testing.T) {
	// Even without the hospital lock, the ledger lets one load of a
	// content through.
	engines(t, func(t *testing.T, url string) {
		h := hospital(t)
		pts := h.Table("patients")
		var rows [][]models.Value
		for i := range 3000 {
			rows = append(rows, row(t, pts, fmt.Sprintf("P%d", i), "F", "1980-05-06"))
		}
		const n = 3
		var wg sync.WaitGroup
		results := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				s, err := Open(context.Background(), url)
				if err != nil {
					results <- err
					return
				}
				defer s.Close()
				f := file(h.ID, fmt.Sprintf("patients_%d.csv", i), "one content")
				_, err = s.Load(context.Background(), f, pts, stream(rows...))
				results <- err
			})
		}
		wg.Wait()
		close(results)
		loaded := 0
		for err := range results {
			switch {
			case err == nil:
				loaded++
			case !errors.Is(err, ErrAlreadyLoaded):
				t.Errorf("concurrent load: %v", err)
			}
		}
		if loaded != 1 {
			t.Fatalf("%d loads went through, want 1", loaded)
		}
		s := open(t, url)
		if c := count(t, s, "test_hospital__patients"); c != 3000 {
			t.Fatalf("%d rows, want 3000", c)
		}
	})
}

func TestLedgerStates(t *testing.T) {
	engines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url)
		h := hospital(t)
		f := file(h.ID, "cases_2026-11.csv.gpg", "november")
		f.Table = "cases"
		state := func() File {
			t.Helper()
			got, err := s.Files(ctx, FileQuery{Hospital: h.ID, Name: f.Name})
			if err != nil || len(got) != 1 {
				t.Fatalf("by name: %+v, %v", got, err)
			}
			return got[0]
		}
		f.State = Fetched
		if err := s.Record(ctx, f); err != nil {
			t.Fatal(err)
		}
		first := state()
		if first.State != Fetched || first.Size != f.Size || first.FirstSeen.IsZero() {
			t.Fatalf("fetched: %+v", first)
		}
		f.State, f.Reason, f.Rejected = Quarantined, `row 1042: admitted_at "2026-13-01": not a date (want YYYY-MM-DD)`, 1
		if err := s.Record(ctx, f); err != nil {
			t.Fatal(err)
		}
		if got := state(); got.State != Quarantined || got.Reason != f.Reason || got.Rejected != 1 || !got.FirstSeen.Equal(first.FirstSeen) {
			t.Fatalf("quarantined: %+v", got)
		}
		// A quarantined file may be fetched again after a fix, and loaded.
		f.State, f.Reason, f.Rejected = Fetched, "", 0
		if err := s.Record(ctx, f); err != nil {
			t.Fatal(err)
		}
		cases := h.Table("cases")
		if _, err := s.Load(ctx, f, cases, stream(row(t, cases, "C1", "P1", "2026-11-01", "", "", "", ""))); err != nil {
			t.Fatal(err)
		}
		if got := state(); got.State != Loaded || got.Reason != "" || got.Inserted != 1 {
			t.Fatalf("loaded: %+v", got)
		}
		// Loaded is final.
		f.State = Quarantined
		if err := s.Record(ctx, f); !errors.Is(err, ErrAlreadyLoaded) {
			t.Fatalf("recording a loaded file: %v, want ErrAlreadyLoaded", err)
		}
		f.State = Loaded
		if err := s.Record(ctx, f); err == nil {
			t.Fatal("Record marked a file loaded")
		}
		// The same name with new content is another entry.
		g := file(h.ID, f.Name, "november, fixed")
		g.Table, g.State = "cases", Fetched
		if err := s.Record(ctx, g); err != nil {
			t.Fatal(err)
		}
		all, err := s.Files(ctx, FileQuery{Hospital: h.ID, Name: f.Name})
		if err != nil || len(all) != 2 || all[0].SHA256 != g.SHA256 {
			t.Fatalf("two contents under one name, newest first: %+v, %v", all, err)
		}
		bySHA, err := s.Files(ctx, FileQuery{SHA256: f.SHA256})
		if err != nil || len(bySHA) != 1 || bySHA[0].State != Loaded {
			t.Fatalf("by SHA-256: %+v, %v", bySHA, err)
		}
		// Bad entries are refused before the database sees them.
		for _, bad := range []File{
			{Name: "x", SHA256: f.SHA256, Table: "cases", State: Fetched},
			{Hospital: h.ID, Name: "x", SHA256: "abc", Table: "cases", State: Fetched},
			{Hospital: h.ID, Name: "x", SHA256: f.SHA256, Table: "cases", State: "lost"},
		} {
			if err := s.Record(ctx, bad); err == nil {
				t.Errorf("Record(%+v) worked", bad)
			}
		}
	})
}
