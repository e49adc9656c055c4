package store

import (
	"context"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
)

// Lineage is where a set of training rows came from.
type Lineage struct {
	// Files are the SHA-256 of every file that gave a row, of the main
	// table or of a joined one, sorted.
	Files []string `json:"files"`
	Rows  int64    `json:"rows"`
	// From and To are the earliest and latest value of the training time
	// column (zero without one, or without rows).
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// Dataset is a hospital's training data: its main table left-joined with
// the tables the contract joins it to.
type Dataset struct {
	// Columns are the columns of each row: Hospital.InputColumns().
	Columns []models.Column
	// Lineage describes the rows of the last complete pass of Rows.
	Lineage Lineage

	s *Store
	h *contract.Hospital
}

// Training returns the hospital's training data; nothing is read until
// Rows is ranged over.
func (s *Store) Training(h *contract.Hospital) *Dataset {
	return &Dataset{Columns: h.InputColumns(), s: s, h: h}
}

// Rows streams the joined rows, one case each, in the order of the main
// table's key (by bytes, on both engines), as values aligned with Columns.
// A case whose joined row is missing comes out with nulls in its place.
// Each row is a new slice. Lineage is filled in as the rows go by, and is
// complete when the loop ends without an error or a break.
func (d *Dataset) Rows(ctx context.Context) iter.Seq2[[]models.Value, error] {
	return func(yield func([]models.Value, error) bool) {
		d.Lineage = Lineage{}
		if err := d.s.ensureAll(ctx, d.h); err != nil {
			yield(nil, fmt.Errorf("training data of %s: %w", d.h.ID, err))
			return
		}
		query, aliases := d.query()
		rows, err := d.s.db.QueryContext(ctx, query)
		if err != nil {
			yield(nil, fmt.Errorf("training data of %s: %w", d.h.ID, err))
			return
		}
		defer rows.Close()
		scan := make([]any, 0, len(d.Columns)+len(aliases))
		vs := make([]valueScanner, len(d.Columns)+len(aliases))
		for i, c := range d.Columns {
			vs[i].typ = c.Type
			scan = append(scan, &vs[i])
		}
		for i := range aliases {
			vs[len(d.Columns)+i].typ = models.String
			scan = append(scan, &vs[len(d.Columns)+i])
		}
		timeCol := slices.IndexFunc(d.Columns, func(c models.Column) bool { return c.Name == d.h.Training.TimeColumn })
		files := map[string]bool{}
		var lin Lineage
		for rows.Next() {
			if err := rows.Scan(scan...); err != nil {
				yield(nil, fmt.Errorf("training data of %s: row %d: %w", d.h.ID, lin.Rows+1, err))
				return
			}
			row := make([]models.Value, len(d.Columns))
			for i := range row {
				row[i] = vs[i].v
			}
			for _, f := range vs[len(d.Columns):] {
				if !f.v.Null {
					files[f.v.Str] = true
				}
			}
			lin.Rows++
			if timeCol >= 0 && !row[timeCol].Null {
				t := row[timeCol].Time(d.Columns[timeCol].Type)
				if lin.From.IsZero() || t.Before(lin.From) {
					lin.From = t
				}
				if t.After(lin.To) {
					lin.To = t
				}
			}
			if !yield(row, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(nil, fmt.Errorf("training data of %s: %w", d.h.ID, err))
			return
		}
		for f := range files {
			lin.Files = append(lin.Files, f)
		}
		slices.Sort(lin.Files)
		d.Lineage = lin
	}
}

// query is the SELECT of the joined rows, and the aliases of the tables
// whose file hashes end each row.
func (d *Dataset) query() (string, []string) {
	h := d.h
	main := h.Table(h.Training.Table)
	aliases := []string{"m"}
	from := fmt.Sprintf("%s AS m", quote(TableName(h.ID, main.Name)))
	var joined []*contract.Table
	for i, j := range main.Joins {
		alias := fmt.Sprintf("j%d", i+1)
		other := h.Table(j.Table)
		joined = append(joined, other)
		aliases = append(aliases, alias)
		on := make([]string, 0, len(j.On))
		for _, mine := range slices.Sorted(maps.Keys(j.On)) {
			on = append(on, fmt.Sprintf("%s.%s = m.%s", alias, quote(j.On[mine]), quote(mine)))
		}
		from += fmt.Sprintf(" LEFT JOIN %s AS %s ON %s", quote(TableName(h.ID, other.Name)), alias, strings.Join(on, " AND "))
	}
	// Each input column comes from the main table if it has it, else from
	// the first joined table that does (InputColumns leaves out the
	// joined tables' join columns, which the main table has).
	sel := make([]string, 0, len(d.Columns)+len(aliases))
	for _, c := range d.Columns {
		owner := "m"
		if main.Column(c.Name) == nil {
			for i, t := range joined {
				if t.Column(c.Name) != nil {
					owner = aliases[i+1]
					break
				}
			}
		}
		sel = append(sel, owner+"."+quote(c.Name))
	}
	for _, a := range aliases {
		sel = append(sel, a+"."+fileColumn)
	}
	order := make([]string, len(main.Key))
	for i, k := range main.Key {
		order[i] = "m." + quote(k)
		if main.Column(k).Type == models.String {
			order[i] += d.s.d.textOrder()
		}
	}
	return fmt.Sprintf("SELECT %s FROM %s ORDER BY %s", strings.Join(sel, ", "), from, strings.Join(order, ", ")), aliases
}

// Newest is the latest value of a table's time column among the rows
// loaded, or models.Missing when there are none or the table has no time
// column. Ingest compares a new file's rows with it (max_staleness).
func (s *Store) Newest(ctx context.Context, hospital string, t *contract.Table) (models.Value, error) {
	if t.TimeColumn == "" {
		return models.Missing, nil
	}
	if err := s.EnsureTable(ctx, hospital, t); err != nil {
		return models.Missing, err
	}
	v := valueScanner{typ: t.Column(t.TimeColumn).Type}
	err := s.db.QueryRowContext(ctx, fmt.Sprintf("SELECT max(%s) FROM %s", quote(t.TimeColumn), quote(TableName(hospital, t.Name)))).Scan(&v)
	if err != nil {
		return models.Missing, fmt.Errorf("hospital %s table %s: newest %s: %w", hospital, t.Name, t.TimeColumn, err)
	}
	return v.v, nil
}
