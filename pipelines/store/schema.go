package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
)

// ward's own columns in every data table: the SHA-256 of the file each row
// came from (the lineage of a model trained on it) and when it was loaded.
const (
	fileColumn   = "_ward_file"
	loadedColumn = "_ward_loaded_at"
	// periodColumn is the period of the extract each row came from (its
	// name says it: the table's period pattern), so that a late extract
	// of an older period never replaces a newer row.
	periodColumn = "_ward_period"
)

// periodCol is periodColumn as a column, for ward_columns.
var periodCol = contract.Column{Column: models.Column{Name: periodColumn, Type: models.String}}

// maxIdent is PostgreSQL's limit on an identifier, in bytes; a longer name
// would be cut silently, and two tables could end up with one name.
const maxIdent = 63

// TableName is the database table that holds a hospital's contract table,
// e.g. st_olaf__cases for table cases of hospital st-olaf.
func TableName(hospital, table string) string {
	return strings.ReplaceAll(hospital, "-", "_") + "__" + table
}

// tableDef is a contract table as the database holds it.
type tableDef struct {
	name     string
	hospital string
	table    *contract.Table
}

func newTableDef(hospital string, t *contract.Table) (tableDef, error) {
	def := tableDef{name: TableName(hospital, t.Name), hospital: hospital, table: t}
	if len(def.name) > maxIdent {
		return def, fmt.Errorf("hospital %s table %s: the database table name %s is longer than %d bytes: shorten the table's name in the contract",
			hospital, t.Name, def.name, maxIdent)
	}
	for _, c := range t.Columns {
		if strings.HasPrefix(c.Name, "_ward_") {
			return def, fmt.Errorf("hospital %s table %s: column %s: names starting with _ward_ are ward's own; rename it (name: with header: %s)",
				hospital, t.Name, c.Name, c.FileHeader())
		}
	}
	return def, nil
}

// columnNames are the contract's column names, in contract order.
func (def tableDef) columnNames() []string {
	names := make([]string, len(def.table.Columns))
	for i, c := range def.table.Columns {
		names[i] = c.Name
	}
	return names
}

// registered is what ward_tables and ward_columns say about a table.
type registered struct {
	exists          bool
	hospital, table string
	key             []string
	types           map[string]models.Type
}

// querier is a *sql.DB or a *sql.Tx.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func readRegistry(ctx context.Context, q querier, name string) (registered, error) {
	var r registered
	var key string
	err := q.QueryRowContext(ctx, `SELECT hospital, tbl, key FROM ward_tables WHERE name = $1`, name).Scan(&r.hospital, &r.table, &key)
	if errors.Is(err, sql.ErrNoRows) {
		return r, nil
	}
	if err != nil {
		return r, err
	}
	r.exists = true
	r.key = strings.Split(key, ",")
	r.types = map[string]models.Type{}
	rows, err := q.QueryContext(ctx, `SELECT col, type FROM ward_columns WHERE name = $1`, name)
	if err != nil {
		return r, err
	}
	defer rows.Close()
	for rows.Next() {
		var col, typ string
		if err := rows.Scan(&col, &typ); err != nil {
			return r, err
		}
		r.types[col] = models.Type(typ)
	}
	return r, rows.Err()
}

// plan compares a contract table with what the database holds: the table
// is to be created, or columns added to it. A changed type or key is an
// error that says what to do, because changing either would rewrite the
// rows already loaded.
func plan(def tableDef, reg registered) (create bool, add []contract.Column, err error) {
	if !reg.exists {
		return true, nil, nil
	}
	t := def.table
	if reg.hospital != def.hospital || reg.table != t.Name {
		return false, nil, fmt.Errorf("the database table %s already holds hospital %s table %s: rename the table in the contract",
			def.name, reg.hospital, reg.table)
	}
	if strings.Join(reg.key, ",") != strings.Join(t.Key, ",") {
		return false, nil, fmt.Errorf("key is (%s) in the database table %s but (%s) in the contract: ward never changes a table's key; give the table a new name in the contract, or change the database table by hand",
			strings.Join(reg.key, ", "), def.name, strings.Join(t.Key, ", "))
	}
	for _, c := range t.Columns {
		had, ok := reg.types[c.Name]
		switch {
		case !ok:
			add = append(add, c)
		case had != c.Type:
			return false, nil, fmt.Errorf("column %s is %s in the database table %s but %s in the contract: ward never changes a column's type; give the column a new name in the contract (e.g. name: %s_%s, header: %s) so that ward adds it, or change the database column and its row in ward_columns by hand",
				c.Name, had, def.name, c.Type, c.Name, c.Type, c.FileHeader())
		}
	}
	if _, ok := reg.types[periodColumn]; !ok {
		// A table made before ward kept periods.
		add = append(add, periodCol)
	}
	return false, add, nil
}

// EnsureTable creates the table that holds a hospital's contract table, or
// adds the columns that a newer contract declares. Columns that the
// contract no longer names are kept. A column whose type changed, or a
// changed key, is an error. Safe when several processes call it at once.
func (s *Store) EnsureTable(ctx context.Context, hospital string, t *contract.Table) error {
	def, err := newTableDef(hospital, t)
	if err != nil {
		return err
	}
	wrap := func(err error) error {
		if err == nil {
			return nil
		}
		return fmt.Errorf("hospital %s table %s: %w", hospital, t.Name, err)
	}
	// Most calls find the table as it should be: look without a lock.
	reg, err := readRegistry(ctx, s.db, def.name)
	if err != nil {
		return wrap(err)
	}
	create, add, err := plan(def, reg)
	if err != nil {
		return wrap(err)
	}
	if !create && len(add) == 0 {
		return nil
	}
	return wrap(s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error {
		if err := s.d.lockSchema(ctx, tx); err != nil {
			return err
		}
		reg, err := readRegistry(ctx, tx, def.name)
		if err != nil {
			return err
		}
		create, add, err := plan(def, reg)
		if err != nil {
			return err
		}
		if create {
			if _, err := tx.ExecContext(ctx, s.createTable(def)); err != nil {
				return fmt.Errorf("create %s: %w", def.name, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO ward_tables (name, hospital, tbl, key) VALUES ($1, $2, $3, $4)`,
				def.name, hospital, t.Name, strings.Join(t.Key, ",")); err != nil {
				return err
			}
			add = append(slices.Clone(t.Columns), periodCol)
		} else {
			for _, c := range add {
				stmt := fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", quote(def.name), quote(c.Name), s.d.sqlType(c.Type))
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("add column %s to %s: %w", c.Name, def.name, err)
				}
			}
		}
		for _, c := range add {
			if _, err := tx.ExecContext(ctx, `INSERT INTO ward_columns (name, col, type) VALUES ($1, $2, $3)`,
				def.name, c.Name, string(c.Type)); err != nil {
				return err
			}
		}
		return nil
	}))
}

// createTable is the CREATE TABLE statement of a contract table. Key
// columns are NOT NULL explicitly: SQLite's primary keys allow nulls.
func (s *Store) createTable(def tableDef) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE %s (", quote(def.name))
	for _, c := range def.table.Columns {
		fmt.Fprintf(&b, "%s %s", quote(c.Name), s.d.sqlType(c.Type))
		for _, k := range def.table.Key {
			if k == c.Name {
				b.WriteString(" NOT NULL")
			}
		}
		b.WriteString(", ")
	}
	fmt.Fprintf(&b, "%s TEXT NOT NULL, %s %s NOT NULL, %s %s, PRIMARY KEY (%s))",
		fileColumn, loadedColumn, s.d.sqlType(models.Timestamp), periodColumn, s.d.sqlType(models.String), quoteAll("", def.table.Key))
	return b.String()
}

// ensureAll ensures every table of a hospital's contract.
func (s *Store) ensureAll(ctx context.Context, h *contract.Hospital) error {
	for i := range h.Tables {
		if err := s.EnsureTable(ctx, h.ID, &h.Tables[i]); err != nil {
			return err
		}
	}
	return nil
}
