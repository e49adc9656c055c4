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
	c, err := s.loadFile(ctx, f, func(conn *sql.Conn, tx *sql.Tx) (Counts, error) {
		return s.d.load(ctx, conn, tx, def, f.SHA256, time.Now(), rows)
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
}

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
func checkRow(n int64, row []models.Value, err error, cols []models.Column) error {
	if err != nil {
		return err
	}
	if len(row) != len(cols) {
		return fmt.Errorf("row %d has %d values for the table's %d columns", n+1, len(row), len(cols))
	}
	return nil
}
