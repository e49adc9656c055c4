package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
)

// Rows is a stream of a file's rows, each aligned with its contract
// table's columns. Load reads it once and keeps no row after the next, so
// memory stays flat whatever the file's size; the producer may reuse the
// slice. An error ends the stream and aborts the load.
type Rows = iter.Seq2[[]models.Value, error]

// Counts says what a load did.
type Counts struct {
	// Inserted rows had a new key; Updated rows replaced a row with the
	// same key (a correction file).
	Inserted int64 `json:"inserted"`
	Updated  int64 `json:"updated"`
	// Duplicates are predictions whose request was already recorded.
	Duplicates int64 `json:"duplicates"`
	// Refused rows were not loaded: the table holds a newer row of their
	// key (WithPeriod). RefusedRows lists the first maxRefusedListed.
	Refused     int64     `json:"refused"`
	RefusedRows []Refusal `json:"refused_rows,omitempty"`
}

// Refusal is a row that a newer row of its key kept out of the table.
type Refusal struct {
	// Row is the row's place in the stream Load read (from 1).
	Row int64
	// By is the name of the file the newer row came from, and Period
	// that file's period.
	By, Period string
}

func (r Refusal) String() string {
	by := "an earlier file"
	if r.By != "" {
		by = r.By
	}
	if r.Period != "" {
		by += " (period " + r.Period + ")"
	}
	return "refused: the database holds a newer row of this key, from " + by + ", and keeps it (a correction file replaces rows whatever their age)"
}

// maxRefusedListed bounds the refusals a load lists (it counts them all).
const maxRefusedListed = 1000

// loadSpec is what a dialect's load is told about the file.
type loadSpec struct {
	// file is its SHA-256, at when it is loaded; both fill ward's columns.
	file string
	at   time.Time
	// period is the file's period ("" if its name has none); with
	// keepNewer, a row whose key has a newer row in the table (by the
	// table's time column, then by period) is refused.
	period    string
	keepNewer bool
	hospital  string
}

// periodArg is a period as an SQL argument: none is NULL, which no
// comparison holds for.
func (l loadSpec) periodArg() any {
	if l.period == "" {
		return nil
	}
	return l.period
}

// newer is the SQL condition under which the table's row t is newer than
// the file's row s (the staged row, or its key): a later time in the
// table's time column, or the same time and a later period. arg is the
// file's period.
func newer(t *contract.Table, arg string) string {
	byPeriod := fmt.Sprintf("t.%s > %s", periodColumn, arg)
	if t.TimeColumn == "" {
		return byPeriod
	}
	tc := quote(t.TimeColumn)
	return fmt.Sprintf("(t.%s > s.%s OR (t.%s IS NOT DISTINCT FROM s.%s AND %s))", tc, tc, tc, tc, byPeriod)
}

// keysMatch joins t and s on the table's key.
func keysMatch(t *contract.Table) string {
	on := make([]string, len(t.Key))
	for i, k := range t.Key {
		on[i] = fmt.Sprintf("t.%s = s.%s", quote(k), quote(k))
	}
	return strings.Join(on, " AND ")
}

// refusals lists the rows that query finds (their place in the stream,
// the period and file of the newer row), the first maxRefusedListed.
func refusals(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]Refusal, error) {
	rows, err := tx.QueryContext(ctx, query+fmt.Sprintf(" LIMIT %d", maxRefusedListed), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Refusal
	for rows.Next() {
		var r Refusal
		var period, by sql.NullString
		if err := rows.Scan(&r.Row, &period, &by); err != nil {
			return nil, err
		}
		r.Period, r.By = period.String, by.String
		out = append(out, r)
	}
	return out, rows.Err()
}

// refusedSelect is the SELECT of refusals over the staged rows (or keys)
// in from, with the newer rows' file names from the ledger.
func refusedSelect(t *contract.Table, table, from, ord, arg, hospitalArg string) string {
	return fmt.Sprintf(`SELECT s.%s, t.%s, (SELECT f.name FROM ward_files f WHERE f.hospital = %s AND f.sha256 = t.%s AND f.state = 'loaded')
		FROM %s s JOIN %s t ON %s WHERE %s ORDER BY s.%s`,
		ord, periodColumn, hospitalArg, fileColumn, from, quote(table), keysMatch(t), newer(t, arg), ord)
}

// DuplicateKeyError says that a file sends one key twice, so that which
// row should win is unknown.
type DuplicateKeyError struct {
	Columns []string
	Values  []string
}

func (e *DuplicateKeyError) Error() string {
	return fmt.Sprintf("key (%s)=(%s) appears more than once in the file: each key may appear once per file",
		strings.Join(e.Columns, ", "), strings.Join(e.Values, ", "))
}

// Load loads a file's rows into its table in one transaction, all or
// nothing, and marks the file loaded in the ledger in the same
// transaction: a load that fails anywhere, the connection dying mid-COPY
// included, leaves neither rows nor a loaded entry, and the next run loads
// the file again, exactly once. A row whose key is already in the table
// replaces it (Updated). A file already loaded, or its content under
// another name, is an error wrapping ErrAlreadyLoaded; a file that repeats
// a key is a *DuplicateKeyError. f.Rejected is recorded as given, unless
// WithRejected says otherwise.
func (s *Store) Load(ctx context.Context, f File, t *contract.Table, rows Rows, opts ...LoadOption) (Counts, error) {
	f.Table = t.Name
	def, err := newTableDef(f.Hospital, t)
	if err == nil {
		err = s.EnsureTable(ctx, f.Hospital, t)
	}
	if err != nil {
		return Counts{}, fmt.Errorf("load %s: %w", f, err)
	}
	var o loadOptions
	for _, opt := range opts {
		opt(&o)
	}
	spec := loadSpec{file: f.SHA256, at: time.Now(), period: o.period, keepNewer: !o.replace, hospital: f.Hospital}
	c, err := s.loadFile(ctx, f, func(conn *sql.Conn, tx *sql.Tx) (Counts, error) {
		return s.d.load(ctx, conn, tx, def, spec, rows)
	}, opts)
	if err != nil {
		return Counts{}, fmt.Errorf("load %s into %s: %w; nothing loaded", f, def.name, err)
	}
	return c, nil
}

// LoadOption changes a load.
type LoadOption func(*loadOptions)

type loadOptions struct {
	rejected func() int64
	period   string
	replace  bool
}

// WithPeriod gives the period the file covers (its name says it, by the
// table's period pattern: contract.Table.PeriodOf). A row whose key the
// table holds from a later period, or with a later time_column value, is
// refused and the newer row kept (Counts.Refused); a row of the same or a
// later period replaces. Without it, only the time column decides.
func WithPeriod(period string) LoadOption { return func(o *loadOptions) { o.period = period } }

// WithReplace makes every row replace the row of its key, whatever their
// age: a correction file.
func WithReplace() LoadOption { return func(o *loadOptions) { o.replace = true } }

// WithRejected records, as the file's rejected rows, what rejected returns
// once the rows have been read: a validator that streams the rows knows
// its final count only when its stream has ended (extract's Report).
func WithRejected(rejected func() int64) LoadOption {
	return func(o *loadOptions) { o.rejected = rejected }
}

// loadFile runs load in one transaction with f's ledger entry, so that
// the file is loaded and recorded as loaded together or not at all. The
// entry comes first: a second load of the same content waits there, or
// fails, before it reads a row.
func (s *Store) loadFile(ctx context.Context, f File, load func(*sql.Conn, *sql.Tx) (Counts, error), opts []LoadOption) (Counts, error) {
	f.State = Loaded
	if err := f.check(); err != nil {
		return Counts{}, err
	}
	var o loadOptions
	for _, opt := range opts {
		opt(&o)
	}
	var c Counts
	err := s.inTx(ctx, func(conn *sql.Conn, tx *sql.Tx) error {
		if err := s.record(ctx, tx, f); err != nil {
			return err
		}
		var err error
		if c, err = load(conn, tx); err != nil {
			return err
		}
		if o.rejected != nil {
			f.Rejected = o.rejected()
		}
		if err := s.setCounts(ctx, tx, f, c); err != nil {
			return err
		}
		return s.d.renew(ctx, tx, f.Hospital)
	})
	return c, err
}

// duplicateKey names a key that the rows of table from repeat, after
// the file's load failed on one (table is where the load put the file's
// rows, or its keys). It returns fallback when no key repeats.
func duplicateKey(ctx context.Context, tx *sql.Tx, from string, t *contract.Table, fallback error) error {
	keys := quoteAll("", t.Key)
	row := tx.QueryRowContext(ctx, fmt.Sprintf("SELECT %s FROM %s GROUP BY %s HAVING count(*) > 1 LIMIT 1", keys, from, keys))
	scan := make([]any, len(t.Key))
	vs := make([]valueScanner, len(t.Key))
	for i, k := range t.Key {
		vs[i].typ = t.Column(k).Type
		scan[i] = &vs[i]
	}
	if err := row.Scan(scan...); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return fallback
		}
		return fmt.Errorf("%w (looking for a repeated key: %v)", fallback, err)
	}
	e := &DuplicateKeyError{Columns: t.Key}
	for i, k := range t.Key {
		e.Values = append(e.Values, vs[i].v.Format(t.Column(k).Type))
	}
	return e
}

// checkRow passes on the stream's error, or refuses a row that does not
// fit the table (n rows came before it).
func checkRow(n int64, row []models.Value, err error, cols []contract.Column) error {
	if err != nil {
		return err
	}
	if len(row) != len(cols) {
		return fmt.Errorf("row %d has %d values for the table's %d columns", n+1, len(row), len(cols))
	}
	return nil
}
