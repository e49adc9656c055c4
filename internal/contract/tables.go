package contract

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/wardml/ward/models"
)

// Table is one table of the hospital's extracts.
type Table struct {
	Name string `yaml:"name"`
	// Pattern matches the file names of this table's extracts (path.Match
	// syntax, e.g. "cases_*.csv.gpg").
	Pattern string `yaml:"pattern"`
	// Format is csv or parquet; default from the file name.
	Format string `yaml:"format"`
	// Delimiter of a CSV file; default ",".
	Delimiter string `yaml:"delimiter"`
	// Key columns: unique within a file, and the upsert key in the
	// database (a correction file that re-sends a key replaces the row).
	Key     []string `yaml:"key"`
	Columns []Column `yaml:"columns"`
	// Joins from this table to others (training joins them into one row).
	Joins []Join `yaml:"joins"`
	// TimeColumn orders the table's rows in time (freshness checks).
	TimeColumn string `yaml:"time_column"`
	// Strict refuses a file with columns the contract does not name
	// (default true); false ignores them.
	Strict *bool `yaml:"strict"`
	// Period is a regular expression whose one group finds the period
	// an extract covers in its name (default DefaultPeriod): a late
	// extract of an older period never replaces newer rows.
	Period   string         `yaml:"period"`
	periodRE *regexp.Regexp `yaml:"-"`
}

// Join links a table to another by columns of the same values.
type Join struct {
	Table string `yaml:"table"`
	// On maps this table's columns to the other's ({patient_id: patient_id}).
	On map[string]string `yaml:"on"`
}

// Table returns the table with the given name, or nil.
func (h *Hospital) Table(name string) *Table {
	for i := range h.Tables {
		if h.Tables[i].Name == name {
			return &h.Tables[i]
		}
	}
	return nil
}

// Column returns the column with the given name, or nil.
func (t *Table) Column(name string) *Column {
	for i := range t.Columns {
		if t.Columns[i].Name == name {
			return &t.Columns[i]
		}
	}
	return nil
}

// IsStrict reports whether unexpected columns are refused.
func (t *Table) IsStrict() bool { return t.Strict == nil || *t.Strict }

// TableFor returns the table whose pattern matches a file name, or nil.
func (h *Hospital) TableFor(fileName string) *Table {
	for i := range h.Tables {
		if ok, _ := path.Match(h.Tables[i].Pattern, fileName); ok {
			return &h.Tables[i]
		}
	}
	return nil
}

// InputColumns returns the columns of the joined row that training and
// serving see (joinedRow). A name that two tables share is an error at
// load time.
func (h *Hospital) InputColumns() []models.Column {
	main := h.Table(h.Training.Table)
	if main == nil {
		return nil
	}
	row, _ := h.joinedRow(main)
	cols := make([]models.Column, len(row))
	for i, c := range row {
		cols[i] = c.Column
	}
	return cols
}

// joinedColumn is a column of the joined row and the table it is from.
type joinedColumn struct {
	models.Column
	table string
}

// joinedRow lists the columns of the row that training joins from main:
// main's columns, then those of each table it joins (without the join
// columns, which main already has), in contract order. The error names
// the first column that two tables share; the row lists every column all
// the same.
func (h *Hospital) joinedRow(main *Table) ([]joinedColumn, error) {
	var row []joinedColumn
	var err error
	owner := map[string]string{}
	add := func(c models.Column, table string) {
		if prev, dup := owner[c.Name]; dup && err == nil {
			err = fmt.Errorf("column %q is in both %s and %s: rename one (name:, with header: for the file's name)", c.Name, prev, table)
		}
		owner[c.Name] = table
		row = append(row, joinedColumn{c, table})
	}
	for _, c := range main.Columns {
		add(c.Column, main.Name)
	}
	for _, j := range main.Joins {
		other := h.Table(j.Table)
		joined := map[string]bool{}
		for _, theirs := range j.On {
			joined[theirs] = true
		}
		for _, c := range other.Columns {
			if !joined[c.Name] {
				add(c.Column, other.Name)
			}
		}
	}
	return row, err
}

// normalizeTables checks each table, then the joins between them (which
// need every table checked).
func (h *Hospital) normalizeTables() error {
	if len(h.Tables) == 0 {
		return errors.New("tables: none declared")
	}
	seen := map[string]bool{}
	for i := range h.Tables {
		t := &h.Tables[i]
		if err := t.normalize(); err != nil {
			return fmt.Errorf("tables[%d] (%s): %w", i, t.Name, err)
		}
		if seen[t.Name] {
			return fmt.Errorf("tables[%d]: table %q declared twice", i, t.Name)
		}
		seen[t.Name] = true
	}
	for i := range h.Tables {
		for _, j := range h.Tables[i].Joins {
			if err := h.checkJoin(&h.Tables[i], j); err != nil {
				return fmt.Errorf("tables[%d] (%s): %w", i, h.Tables[i].Name, err)
			}
		}
	}
	return nil
}

func (t *Table) normalize() error {
	if t.Name == "" || !identPattern.MatchString(t.Name) {
		return fmt.Errorf("name %q: want lower-case letters, digits and underscores", t.Name)
	}
	if t.Pattern == "" {
		return errors.New("pattern: missing (e.g. " + t.Name + "_*.csv)")
	}
	if _, err := path.Match(t.Pattern, ""); err != nil {
		return fmt.Errorf("pattern %q: %v", t.Pattern, err)
	}
	switch t.Format {
	case "", "csv", "parquet":
	default:
		return fmt.Errorf("format %q: want csv or parquet", t.Format)
	}
	if t.Delimiter == "" {
		t.Delimiter = ","
	}
	if len([]rune(t.Delimiter)) != 1 || t.Delimiter == "\"" || t.Delimiter == "\n" || t.Delimiter == "\r" {
		return fmt.Errorf("delimiter %q: want one character other than a quote or line break", t.Delimiter)
	}
	if len(t.Columns) == 0 {
		return errors.New("columns: none declared")
	}
	names := map[string]bool{}
	headers := map[string]bool{}
	for i := range t.Columns {
		c := &t.Columns[i]
		if err := c.Prepare(); err != nil {
			return fmt.Errorf("columns[%d]: %w", i, err)
		}
		if !identPattern.MatchString(c.Name) {
			return fmt.Errorf("columns[%d]: name %q: want lower-case letters, digits and underscores (use header: for the file's own name)", i, c.Name)
		}
		if names[c.Name] {
			return fmt.Errorf("columns[%d]: column %q declared twice", i, c.Name)
		}
		names[c.Name] = true
		h := c.FileHeader()
		if headers[h] {
			return fmt.Errorf("columns[%d]: header %q used twice", i, h)
		}
		headers[h] = true
	}
	if len(t.Key) == 0 {
		return errors.New("key: no key columns (name the columns that identify a row)")
	}
	for _, k := range t.Key {
		c := t.Column(k)
		if c == nil {
			return fmt.Errorf("key: column %q is not declared", k)
		}
		if !c.Required {
			return fmt.Errorf("key: column %q must be required", k)
		}
	}
	if err := checkTimeColumn(t.TimeColumn, func(name string) (*models.Column, error) {
		if c := t.Column(name); c != nil {
			return &c.Column, nil
		}
		return nil, fmt.Errorf("time_column: column %q is not declared", name)
	}); err != nil {
		return err
	}
	return t.normalizePeriod()
}

var identPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// checkTimeColumn checks a time_column (a table's, or training's): unset,
// or a date or timestamp column that find finds (find's error says where
// it looked).
func checkTimeColumn(name string, find func(name string) (*models.Column, error)) error {
	if name == "" {
		return nil
	}
	c, err := find(name)
	if err != nil {
		return err
	}
	if c.Type != models.Date && c.Type != models.Timestamp {
		return fmt.Errorf("time_column: column %q is %s, want date or timestamp", name, c.Type)
	}
	return nil
}

// checkJoin checks that a join names another table and joins on its key,
// by columns of the same types.
func (h *Hospital) checkJoin(t *Table, j Join) error {
	other := h.Table(j.Table)
	if other == nil {
		return fmt.Errorf("joins: table %q is not declared", j.Table)
	}
	if other == t {
		return fmt.Errorf("joins: table %q joins itself", j.Table)
	}
	if len(j.On) == 0 {
		return fmt.Errorf("joins: %s: no on: columns", j.Table)
	}
	keys := make([]string, 0, len(j.On))
	for mine, theirs := range j.On {
		a, b := t.Column(mine), other.Column(theirs)
		if a == nil {
			return fmt.Errorf("joins: %s: column %q is not in %s", j.Table, mine, t.Name)
		}
		if b == nil {
			return fmt.Errorf("joins: %s: column %q is not in %s", j.Table, theirs, j.Table)
		}
		if a.Type != b.Type {
			return fmt.Errorf("joins: %s: %s.%s is %s but %s.%s is %s", j.Table, t.Name, mine, a.Type, j.Table, theirs, b.Type)
		}
		keys = append(keys, theirs)
	}
	sort.Strings(keys)
	want := slices.Clone(other.Key)
	sort.Strings(want)
	if !slices.Equal(keys, want) {
		return fmt.Errorf("joins: %s: must join on its key (%s)", j.Table, strings.Join(other.Key, ", "))
	}
	return nil
}
