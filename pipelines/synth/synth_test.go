package synth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/models"
)

// hashes returns the SHA-256 of every file under dir but keys/, by path.
func hashes(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if strings.HasPrefix(rel, "keys"+string(filepath.Separator)) {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		out[rel] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSameSeedSameBytes(t *testing.T) {
	for _, format := range []string{"csv", "parquet"} {
		t.Run(format, func(t *testing.T) {
			opts := []Option{WithHospitals(6), WithMonths(4), WithEncryption("none"), WithFormat(format), WithDirt(0.01)}
			a, _ := generate(t, opts...)
			b, _ := generate(t, opts...)
			c, _ := generate(t, append(opts, WithSeed(2))...)
			ha, hb, hc := hashes(t, a), hashes(t, b), hashes(t, c)
			if len(ha) < 6*3*4+6+1 {
				t.Fatalf("%d files", len(ha))
			}
			if !maps.Equal(ha, hb) {
				for p := range ha {
					if ha[p] != hb[p] {
						t.Errorf("%s differs between two runs with the same seed", p)
					}
				}
				t.FailNow()
			}
			for p, h := range ha {
				switch {
				case strings.HasSuffix(p, contract.FileName):
					if hc[p] != h {
						t.Errorf("%s: a contract depends on the seed", p)
					}
				case strings.Contains(p, "cases_"):
					if hc[p] == h {
						t.Errorf("%s: the same with seed 2", p)
					}
				}
			}
		})
	}
}

func TestContractsDescribeTheFiles(t *testing.T) {
	out, sum := generate(t, WithMonths(3), WithDirt(0.01))
	hs, err := contract.LoadAll(filepath.Join(out, "hospitals"))
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 5 || len(sum.Hospitals) != 5 {
		t.Fatalf("%d contracts, %d in the summary", len(hs), len(sum.Hospitals))
	}
	for _, h := range hs {
		s := sum.Hospitals[slices.IndexFunc(sum.Hospitals, func(s HospitalSummary) bool { return s.ID == h.ID })]
		if h.Inbound.Encryption != s.Encryption || h.Inbound.Folder != h.ID+"/inbound" {
			t.Errorf("%s: contract says %s in %s, summary %s", h.ID, h.Inbound.Encryption, h.Inbound.Folder, s.Encryption)
		}
		for _, tb := range tables {
			ct := h.Table(tb.name)
			if ct == nil {
				t.Fatalf("%s: no table %s", h.ID, tb.name)
			}
			if !reflect.DeepEqual(stripped(modelColumns(ct.Columns)), stripped(tb.columns)) {
				t.Errorf("%s: table %s columns differ from synth's:\n%+v\n%+v", h.ID, tb.name, ct.Columns, tb.columns)
			}
		}
		wantDelim := ","
		if h.ID == "lakeshore" {
			wantDelim = ";"
		}
		if h.Table("cases").Delimiter != wantDelim {
			t.Errorf("%s: delimiter %q", h.ID, h.Table("cases").Delimiter)
		}
		entries, err := os.ReadDir(filepath.Join(out, "sftp", h.ID, "inbound"))
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != s.Files {
			t.Errorf("%s: %d files, summary says %d", h.ID, len(entries), s.Files)
		}
		for _, e := range entries {
			tb := h.TableFor(e.Name())
			if tb == nil {
				t.Errorf("%s: no table matches %s", h.ID, e.Name())
				continue
			}
			if !strings.HasPrefix(e.Name(), tb.Name+"_") || h.IsCorrection(e.Name()) != strings.Contains(e.Name(), "_correction") {
				t.Errorf("%s: %s matched table %s (correction %v)", h.ID, e.Name(), tb.Name, h.IsCorrection(e.Name()))
			}
			if want := map[string]string{"openpgp": ".gpg", "age": ".age"}[h.Inbound.Encryption]; !strings.HasSuffix(e.Name(), ".csv"+want) {
				t.Errorf("%s: %s for encryption %s", h.ID, e.Name(), h.Inbound.Encryption)
			}
		}
	}
	if hs[0].ID != "hillcrest" || sum.Hospitals[0].ID != "st-olaf" || sum.Hospitals[0].Encryption != "openpgp" || sum.Hospitals[1].Encryption != "age" {
		t.Errorf("mixed group: %+v", sum.Hospitals)
	}
}

// modelColumns are the model columns of a contract table's columns.
func modelColumns(cols []contract.Column) []models.Column {
	out := make([]models.Column, len(cols))
	for i, c := range cols {
		out[i] = c.Column
	}
	return out
}

// stripped drops what Prepare compiles, to compare definitions.
func stripped(cols []models.Column) []models.Column {
	out := make([]models.Column, len(cols))
	for i, c := range cols {
		out[i] = models.Column{Name: c.Name, Type: c.Type, Required: c.Required, Min: c.Min, Max: c.Max, Allowed: c.Allowed, Pattern: c.Pattern}
	}
	return out
}

// The repo's hospitals/ holds the contracts of the default group, so that
// `ward ingest --all` in CI finds them; they must never drift from what
// synth writes.
func TestRepoHospitalsAreTheDefaultGroup(t *testing.T) {
	out, _ := generate(t, WithMonths(1))
	repo := filepath.Join("..", "..", "hospitals")
	got, err := contract.LoadAll(repo)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, h := range got {
		ids = append(ids, h.ID)
		want, err := os.ReadFile(filepath.Join(out, "hospitals", h.ID, contract.FileName))
		if err != nil {
			t.Fatalf("hospitals/%s is not in the default group: %v", h.ID, err)
		}
		have, _ := os.ReadFile(filepath.Join(repo, h.ID, contract.FileName))
		if !bytes.Equal(have, want) {
			t.Errorf("hospitals/%s/%s differs from what `ward synth` writes; regenerate it:\n  go run ./tools/ward synth --out /tmp/g --months 1 && cp -r /tmp/g/hospitals/* hospitals/", h.ID, contract.FileName)
		}
	}
	if !slices.Equal(ids, []string{"hillcrest", "lakeshore", "northgate", "riverside", "st-olaf"}) {
		t.Errorf("hospitals/ holds %v", ids)
	}
}

func TestCleanDataMatchesTheContracts(t *testing.T) {
	out, sum := generate(t, WithMonths(3), WithEncryption("none"), WithDirt(0))
	hs, err := contract.LoadAll(filepath.Join(out, "hospitals"))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		files := readExtracts(t, out, h)
		ds, rejected := joinCases(t, h, files)
		if rejected > 0 {
			t.Errorf("%s: %d rows of clean data do not pass the contract", h.ID, rejected)
		}
		// Every case's patient arrived in its month's file or before, and
		// its doctor is on its month's roster.
		patientsSoFar, roster := map[string]bool{}, map[string]bool{}
		cases := 0
		for _, f := range files {
			if f.table.Name == "cases" && isCorrection(f.name) {
				t.Errorf("%s: correction file %s in clean data", h.ID, f.name)
			}
		}
		for _, month := range []string{"2024-01", "2024-02", "2024-03"} {
			for _, f := range files {
				if !strings.Contains(f.name, "_"+month) {
					continue
				}
				switch f.table.Name {
				case "patients":
					for _, r := range f.rows {
						patientsSoFar[r[0]] = true
					}
				case "doctors":
					clear(roster)
					for _, r := range f.rows {
						roster[r[0]] = true
					}
				}
			}
			for _, f := range files {
				if f.table.Name != "cases" || !strings.Contains(f.name, "_"+month) {
					continue
				}
				for _, r := range f.rows {
					cases++
					if !patientsSoFar[r[1]] || !roster[r[2]] {
						t.Fatalf("%s %s: case %s: patient %s or doctor %s not sent yet", h.ID, f.name, r[0], r[1], r[2])
					}
				}
			}
		}
		s := sum.Hospitals[slices.IndexFunc(sum.Hospitals, func(s HospitalSummary) bool { return s.ID == h.ID })]
		if cases != s.Cases || len(ds.rows) != s.Cases {
			t.Errorf("%s: %d case rows, %d joined, summary says %d", h.ID, cases, len(ds.rows), s.Cases)
		}
		if s.Dirt != (DirtCounts{}) {
			t.Errorf("%s: dirt %+v at rate 0", h.ID, s.Dirt)
		}
	}
}

// A Parquet extract holds the same values as the CSV one, typed.
func TestParquetHoldsTheSameValues(t *testing.T) {
	opts := []Option{WithHospitals(2), WithMonths(2), WithEncryption("none"), WithDirt(0)}
	csvOut, _ := generate(t, opts...)
	pqOut, _ := generate(t, append(opts, WithFormat("parquet"))...)
	hs, err := contract.LoadAll(filepath.Join(pqOut, "hospitals"))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		csvContract, err := contract.Load(filepath.Join(csvOut, "hospitals", h.ID, contract.FileName))
		if err != nil {
			t.Fatal(err)
		}
		want := readExtracts(t, csvOut, csvContract)
		for _, w := range want {
			name := strings.TrimSuffix(w.name, ".csv") + ".parquet"
			tb := h.TableFor(name)
			if tb == nil || tb.Format != "parquet" {
				t.Fatalf("%s: %s matches %v", h.ID, name, tb)
			}
			got := readParquet(t, filepath.Join(pqOut, "sftp", h.ID, "inbound", name), tb)
			if len(got) != len(w.rows) {
				t.Fatalf("%s: %d rows, CSV %d", name, len(got), len(w.rows))
			}
			for i, rec := range w.rows {
				for j, c := range tb.Columns {
					v, ferr := c.ParseText(rec[j])
					if ferr != nil {
						t.Fatal(ferr)
					}
					if got[i][j] != v {
						t.Fatalf("%s row %d %s: parquet %+v, csv %+v", name, i+1, c.Name, got[i][j], v)
					}
				}
			}
		}
	}
}

// readParquet reads a Parquet extract into values in the contract's
// column order.
func readParquet(t *testing.T, file string, tb *contract.Table) [][]models.Value {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	leaf := map[string]int{}
	for i, path := range pf.Schema().Columns() {
		leaf[path[0]] = i
	}
	r := parquet.NewReader(pf)
	defer r.Close()
	var out [][]models.Value
	buf := make([]parquet.Row, 64)
	for {
		n, err := r.ReadRows(buf)
		for _, pr := range buf[:n] {
			row := make([]models.Value, len(tb.Columns))
			for j, c := range tb.Columns {
				v := pr[leaf[c.Name]]
				switch {
				case v.IsNull():
					row[j] = models.Missing
				case c.Type == models.String:
					row[j] = models.Text(string(v.ByteArray()))
				case c.Type == models.Float:
					row[j] = models.Number(v.Double())
				case c.Type == models.Date:
					row[j] = models.Number(float64(v.Int32()))
				default:
					row[j] = models.Number(float64(v.Int64()))
				}
			}
			out = append(out, row)
		}
		if err != nil {
			break
		}
	}
	return out
}

// A shock multiplies exactly one hospital's bills, from the month given,
// and changes nothing else: not the other hospitals, not the months
// before, not a single other cell.
func TestShockMultipliesOneHospitalFromItsMonth(t *testing.T) {
	opts := []Option{WithHospitals(3), WithMonths(8), WithEncryption("none")}
	base, _ := generate(t, opts...)
	sh, err := ParseShock("riverside:2024-05:1.35")
	if err != nil {
		t.Fatal(err)
	}
	shocked, _ := generate(t, append(opts, WithShocks(sh))...)
	hs, err := contract.LoadAll(filepath.Join(base, "hospitals"))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, h := range hs {
		a, b := readExtracts(t, base, h), readExtracts(t, shocked, h)
		if len(a) != len(b) {
			t.Fatalf("%s: %d files, %d with the shock", h.ID, len(a), len(b))
		}
		billIdx := slices.IndexFunc(h.Table("cases").Columns, func(c contract.Column) bool { return c.Name == "total_bill" })
		for i := range a {
			if a[i].name != b[i].name || len(a[i].rows) != len(b[i].rows) {
				t.Fatalf("%s: %s (%d rows) vs %s (%d rows)", h.ID, a[i].name, len(a[i].rows), b[i].name, len(b[i].rows))
			}
			for r := range a[i].rows {
				ra, rb := a[i].rows[r], b[i].rows[r]
				for j := range ra {
					if a[i].table.Name == "cases" && j == billIdx && ra[j] != "" {
						x, y := parseFloat(t, ra[j]), parseFloat(t, rb[j])
						// A bad date is dirt in a month's own file.
						month := ra[3]
						if _, ferr := a[i].table.Columns[3].ParseText(month); ferr != nil {
							month = strings.TrimPrefix(a[i].name, "cases_")
						}
						want := 1.0
						if h.ID == "riverside" && month[:7] >= "2024-05" {
							want = 1.35
						}
						if math.Abs(y-x*want) > 0.02 { // both rounded to cents
							t.Fatalf("%s %s: case %s admitted %s: bill %v with the shock, %v without; want x%v", h.ID, a[i].name, ra[0], ra[3], y, x, want)
						}
						if want != 1 {
							checked++
						}
						continue
					}
					if ra[j] != rb[j] {
						t.Fatalf("%s %s row %d: %q became %q", h.ID, a[i].name, r+1, ra[j], rb[j])
					}
				}
			}
		}
	}
	if checked < 3000 {
		t.Fatalf("only %d shocked bills", checked)
	}
}

func parseFloat(t *testing.T, s string) float64 {
	c := models.Column{Name: "x", Type: models.Float}
	if err := c.Prepare(); err != nil {
		t.Fatal(err)
	}
	v, ferr := c.ParseText(s)
	if ferr != nil {
		t.Fatal(ferr)
	}
	return v.Num
}

func TestBadOptions(t *testing.T) {
	junk := filepath.Join(t.TempDir(), "junk.pub")
	os.WriteFile(junk, []byte("not a key\n"), 0o644)
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "notes.txt"), []byte("mine"), 0o644)
	cases := []struct {
		name string
		out  string
		opts []Option
		want string
	}{
		{"no hospitals", "", []Option{WithHospitals(0)}, "hospitals 0: want 1 to 99"},
		{"too many", "", []Option{WithHospitals(100)}, "hospitals 100"},
		{"no months", "", []Option{WithMonths(0)}, "months 0"},
		{"format", "", []Option{WithFormat("xlsx")}, `format "xlsx": want csv or parquet`},
		{"encryption", "", []Option{WithEncryption("rot13")}, `encrypt "rot13"`},
		{"dirt", "", []Option{WithDirt(-0.1)}, "dirt -0.1"},
		{"sign without openpgp", "", []Option{WithEncryption("age"), WithSigning(true)}, "signed with OpenPGP"},
		{"shock unknown hospital", "", []Option{WithShocks(Shock{Hospital: "elsewhere", From: mustMonth("2024-03"), Factor: 2})}, `no hospital "elsewhere" in a group of 5 (st-olaf, riverside`},
		{"shock out of range", "", []Option{WithMonths(3), WithShocks(Shock{Hospital: "st-olaf", From: mustMonth("2025-07"), Factor: 2})}, "month 2025-07 is outside the months generated (2024-01 to 2024-03)"},
		{"recipient", "", []Option{WithRecipients(junk)}, "neither an age recipients file"},
		{"not empty", full, nil, "is not empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := tc.out
			if out == "" {
				out = t.TempDir()
			}
			_, err := Generate(context.Background(), out, tc.opts...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if exit.Code(err) != exit.Config {
				t.Fatalf("exit code %d, want %d (usage)", exit.Code(err), exit.Config)
			}
		})
	}
	for _, s := range []string{"st-olaf:2025-07", "st-olaf:2025-13:1.2", "st-olaf:2025-07:0", "st-olaf:2025-07:x"} {
		if _, err := ParseShock(s); err == nil {
			t.Errorf("ParseShock(%q) accepted", s)
		}
	}
	if sh, err := ParseShock("st-olaf:2025-07:1.35"); err != nil || sh.String() != "st-olaf:2025-07:1.35" {
		t.Errorf("ParseShock: %v %v", sh, err)
	}
}

func mustMonth(s string) time.Time {
	m, err := ParseMonth(s)
	if err != nil {
		panic(err)
	}
	return m
}

// Force replaces an earlier run's output and nothing else.
func TestForceReplacesAnEarlierRun(t *testing.T) {
	dir := t.TempDir()
	if _, err := Generate(context.Background(), dir, WithHospitals(2), WithMonths(3), WithEncryption("none")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644)
	if _, err := Generate(context.Background(), dir, WithHospitals(1), WithMonths(1), WithEncryption("none")); err == nil {
		t.Fatal("a second run into the same folder was not refused")
	}
	if _, err := Generate(context.Background(), dir, WithHospitals(1), WithMonths(1), WithEncryption("none"), WithForce(true)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Error("force removed a file that synth did not write")
	}
	if _, err := os.Stat(filepath.Join(dir, "sftp", "riverside")); err == nil {
		t.Error("force left the earlier run's second hospital")
	}
	if _, err := os.Stat(filepath.Join(dir, "sftp", "st-olaf", "inbound", "cases_2024-02.csv")); err == nil {
		t.Error("force left the earlier run's second month")
	}
}
