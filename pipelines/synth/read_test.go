package synth

import (
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
)

// generate writes a group into a temporary folder and fails the test on
// error.
func generate(t testing.TB, opts ...Option) (string, *Summary) {
	t.Helper()
	dir := t.TempDir()
	sum, err := Generate(context.Background(), dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return dir, sum
}

// extractFile is one plaintext CSV extract, read with its contract.
type extractFile struct {
	name   string
	table  *contract.Table
	header []string
	rows   [][]string
}

// readExtracts reads every extract of a hospital, in name order (the order
// ingest loads them: a month's file before its correction).
func readExtracts(t testing.TB, out string, h *contract.Hospital) []extractFile {
	t.Helper()
	dir := filepath.Join(out, "sftp", filepath.FromSlash(h.Inbound.Folder))
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []extractFile
	for _, e := range entries {
		tb := h.TableFor(e.Name())
		if tb == nil {
			t.Fatalf("%s: no table of the contract matches %s", h.ID, e.Name())
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		r := csv.NewReader(f)
		r.Comma = []rune(tb.Delimiter)[0]
		recs, err := r.ReadAll()
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		files = append(files, extractFile{name: e.Name(), table: tb, header: recs[0], rows: recs[1:]})
	}
	return files
}

// parse checks every cell of a file with its contract, as ingest does:
// a row with a cell that does not pass, or whose key an earlier row of the
// file already had, is rejected.
func (f extractFile) parse() (good [][]models.Value, rejected int) {
	key := slices.IndexFunc(f.table.Columns, func(c contract.Column) bool { return c.Name == f.table.Key[0] })
	seen := map[string]bool{}
row:
	for _, rec := range f.rows {
		vals := make([]models.Value, len(rec))
		for i := range f.table.Columns {
			v, ferr := f.table.Columns[i].ParseText(rec[i])
			if ferr != nil {
				rejected++
				continue row
			}
			vals[i] = v
		}
		if seen[vals[key].Str] {
			rejected++
			continue
		}
		seen[vals[key].Str] = true
		good = append(good, vals)
	}
	return good, rejected
}

// dataset is a hospital's cases joined with their patients and doctors:
// one row per case, its values in the order of the contract's
// InputColumns, then the hospital's id.
type dataset struct {
	cols map[string]int
	rows [][]models.Value
}

// joinCases upserts every row of a hospital's extracts by key, as the
// database does, and joins each case with its patient and doctor. Rows
// that do not parse, and second copies of a key in one file, are skipped
// and counted in rejected.
func joinCases(t testing.TB, h *contract.Hospital, files []extractFile) (ds *dataset, rejected int) {
	t.Helper()
	byTable := map[string]map[string][]models.Value{}
	var order []string // case ids, as they first arrive
	main := h.Table(h.Training.Table)
	for _, f := range files {
		if !slices.Equal(f.header, headers(f.table)) {
			t.Fatalf("%s: header %v, contract %v", f.name, f.header, headers(f.table))
		}
		rows := byTable[f.table.Name]
		if rows == nil {
			rows = map[string][]models.Value{}
			byTable[f.table.Name] = rows
		}
		key := slices.IndexFunc(f.table.Columns, func(c contract.Column) bool { return c.Name == f.table.Key[0] })
		good, bad := f.parse()
		rejected += bad
		for _, vals := range good {
			k := vals[key].Str
			if _, ok := rows[k]; !ok && f.table == main {
				order = append(order, k)
			}
			rows[k] = vals
		}
	}
	ds = &dataset{cols: map[string]int{}}
	for i, c := range h.InputColumns() {
		ds.cols[c.Name] = i
	}
	ds.cols["hospital"] = len(ds.cols)
	for _, k := range order {
		row := make([]models.Value, len(ds.cols))
		c := byTable[main.Name][k]
		for i, col := range main.Columns {
			row[ds.cols[col.Name]] = c[i]
		}
		for _, jn := range main.Joins {
			other := h.Table(jn.Table)
			for mine, theirs := range jn.On {
				o := byTable[jn.Table][row[ds.cols[mine]].Str]
				for i, col := range other.Columns {
					if col.Name == theirs {
						continue
					}
					if o == nil {
						row[ds.cols[col.Name]] = models.Missing
					} else {
						row[ds.cols[col.Name]] = o[i]
					}
				}
			}
		}
		row[ds.cols["hospital"]] = models.Text(h.ID)
		ds.rows = append(ds.rows, row)
	}
	return ds, rejected
}

func headers(t *contract.Table) []string {
	out := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		out[i] = c.FileHeader()
	}
	return out
}

func isCorrection(name string) bool { return strings.Contains(name, "_correction") }
