package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
)

// sqlite is the embedded engine: one file, one writer at a time (write
// transactions begin IMMEDIATE), and hospital locks as rows that expire.
type sqlite struct {
	db   *sql.DB
	ttl  time.Duration
	held sync.Map // hospital -> token of each lock this store holds
}

func (*sqlite) sqlType(t models.Type) string {
	switch t {
	case models.Int, models.Bool:
		return "INTEGER"
	case models.Float:
		return "REAL"
	}
	// Dates and timestamps are text in ward's fixed layouts: readable,
	// ordered, and read back exactly.
	return "TEXT"
}

func (*sqlite) arg(t models.Type, v models.Value) any {
	if v.Null {
		return nil
	}
	switch t {
	case models.String:
		return v.Str
	case models.Int:
		return int64(v.Num)
	case models.Bool:
		if v.Num != 0 {
			return int64(1)
		}
		return int64(0)
	case models.Date:
		return v.Format(models.Date)
	case models.Timestamp:
		return timestamp(v).Format(timeText)
	}
	return v.Num
}

func (*sqlite) time(t time.Time) any { return t.UTC().Format(timeText) }

// textOrder is empty: SQLite's default collation already compares bytes.
func (*sqlite) textOrder() string { return "" }

// lockSchema has nothing to do: the transaction began IMMEDIATE, so it
// already excludes every other writer.
func (*sqlite) lockSchema(context.Context, *sql.Tx) error { return nil }

// stagingTable holds a file's rows inside the load's transaction.
const stagingTable = "ward_load"

// maxParams stays under SQLite's limit on the parameters of one statement.
const maxParams = 32000

// ordColumn numbers the staged rows in the order they came.
const ordColumn = "_ward_ord"

// load stages the rows in a temporary table with batched inserts, drops
// those that a newer row of their key keeps out (refused), then upserts
// the rest into the table in one statement. Inserted rows are counted by
// the table's growth. A staged row whose key a row of the same file
// already took is skipped by the upsert's WHERE, so the rows changed fall
// short of the rows staged exactly when the file repeats a key.
func (d *sqlite) load(ctx context.Context, _ *sql.Conn, tx *sql.Tx, def tableDef, spec loadSpec, rows Rows) (Counts, error) {
	cols := def.table.Columns
	defs := make([]string, len(cols), len(cols)+1)
	for i, c := range cols {
		defs[i] = quote(c.Name) + " " + d.sqlType(c.Type)
	}
	defs = append(defs, ordColumn+" INTEGER")
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("CREATE TEMP TABLE %s (%s)", stagingTable, strings.Join(defs, ", "))); err != nil {
		return Counts{}, err
	}
	staged, err := d.stage(ctx, tx, cols, rows)
	if err != nil {
		return Counts{}, err
	}
	var c Counts
	if spec.keepNewer {
		if c.RefusedRows, err = refusals(ctx, tx, refusedSelect(def.table, def.name, stagingTable, ordColumn, "$1", "$2"), spec.periodArg(), spec.hospital); err != nil {
			return Counts{}, err
		}
		if len(c.RefusedRows) > 0 {
			res, err := tx.ExecContext(ctx, fmt.Sprintf("DELETE FROM %s AS s WHERE EXISTS (SELECT 1 FROM %s t WHERE %s AND %s)",
				stagingTable, quote(def.name), keysMatch(def.table), newer(def.table, "$1")), spec.periodArg())
			if err != nil {
				return Counts{}, err
			}
			if c.Refused, err = res.RowsAffected(); err != nil {
				return Counts{}, err
			}
			staged -= c.Refused
		}
	}
	count := "SELECT count(*) FROM " + quote(def.name)
	var before, after int64
	if err := tx.QueryRowContext(ctx, count).Scan(&before); err != nil {
		return Counts{}, err
	}
	if _, err := tx.ExecContext(ctx, "SAVEPOINT ward_upsert"); err != nil {
		return Counts{}, err
	}
	names := def.columnNames()
	sets := make([]string, 0, len(names)+3)
	for _, c := range append(names, fileColumn, loadedColumn, periodColumn) {
		sets = append(sets, fmt.Sprintf("%s = excluded.%s", quote(c), quote(c)))
	}
	upsert := fmt.Sprintf(`INSERT INTO %s AS t (%s, %s, %s, %s) SELECT %s, $1, $2, $3 FROM %s WHERE true
		ON CONFLICT (%s) DO UPDATE SET %s WHERE t.%s IS NOT excluded.%s`,
		quote(def.name), quoteAll("", names), fileColumn, loadedColumn, periodColumn, quoteAll("", names), stagingTable,
		quoteAll("", def.table.Key), strings.Join(sets, ", "), fileColumn, fileColumn)
	res, err := tx.ExecContext(ctx, upsert, spec.file, d.time(spec.at), spec.periodArg())
	if err != nil {
		return Counts{}, err
	}
	changed, err := res.RowsAffected()
	if err != nil {
		return Counts{}, err
	}
	if changed < staged {
		if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT ward_upsert"); err != nil {
			return Counts{}, err
		}
		return Counts{}, duplicateKey(ctx, tx, stagingTable, def.table, errors.New("the file repeats a key"))
	}
	if err := tx.QueryRowContext(ctx, count).Scan(&after); err != nil {
		return Counts{}, err
	}
	if _, err := tx.ExecContext(ctx, "DROP TABLE "+stagingTable); err != nil {
		return Counts{}, err
	}
	c.Inserted, c.Updated = after-before, changed-(after-before)
	return c, nil
}

func (d *sqlite) stage(ctx context.Context, tx *sql.Tx, cols []contract.Column, rows Rows) (int64, error) {
	width := len(cols) + 1
	per := max(1, min(500, maxParams/width))
	batch, err := tx.PrepareContext(ctx, insertValues(stagingTable, cols, per))
	if err != nil {
		return 0, err
	}
	defer batch.Close()
	args := make([]any, 0, per*width)
	var n int64
	for row, err := range rows {
		if err := checkRow(n, row, err, cols); err != nil {
			return n, err
		}
		for i, c := range cols {
			args = append(args, d.arg(c.Type, row[i]))
		}
		n++
		args = append(args, n)
		if len(args) == cap(args) {
			if _, err := batch.ExecContext(ctx, args...); err != nil {
				return n, err
			}
			args = args[:0]
		}
	}
	if len(args) > 0 {
		if _, err := tx.ExecContext(ctx, insertValues(stagingTable, cols, len(args)/width), args...); err != nil {
			return n, err
		}
	}
	return n, nil
}

// insertValues is an INSERT of rows rows into the staging table: the
// columns, then each row's place in the stream.
func insertValues(table string, cols []contract.Column, rows int) string {
	names := make([]string, len(cols), len(cols)+1)
	for i, c := range cols {
		names[i] = c.Name
	}
	names = append(names, ordColumn)
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(names)), ", ") + ")"
	return fmt.Sprintf("INSERT INTO %s (%s) VALUES %s", table, quoteAll("", names),
		strings.TrimSuffix(strings.Repeat(one+", ", rows), ", "))
}

func sqliteCode(err error) int {
	var se *msqlite.Error
	if errors.As(err, &se) {
		return se.Code()
	}
	return 0
}

func (*sqlite) isUnique(err error) bool {
	c := sqliteCode(err)
	return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

// isBusy reports whether another connection kept the database past the
// busy timeout.
func isBusy(err error) bool {
	c := sqliteCode(err) & 0xff
	return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
}

// tryLock inserts the hospital's lock row unless a live one exists; a row
// whose holder stopped renewing it (a crashed process) is removed first. A
// heartbeat renews the row until release.
func (d *sqlite) tryLock(ctx context.Context, hospital, token string, me Holder) (func() error, bool, error) {
	now := time.Now()
	var ok bool
	err := inTx(ctx, d.db, func(_ *sql.Conn, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM ward_locks WHERE hospital = $1 AND expires < $2", hospital, d.time(now)); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO ward_locks (hospital, token, what, pid, host, since, expires)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (hospital) DO NOTHING`,
			hospital, token, me.What, me.PID, me.Host, d.time(me.Since), d.time(now.Add(d.ttl)))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		ok = n == 1
		return err
	})
	if isBusy(err) {
		// Another process is writing (a long load): try again later.
		return nil, false, nil
	}
	if err != nil || !ok {
		return nil, false, err
	}
	d.held.Store(hospital, token)
	stop, done := make(chan struct{}), make(chan struct{})
	go d.heartbeat(hospital, token, stop, done)
	release := func() error {
		close(stop)
		<-done
		d.held.Delete(hospital)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := d.db.ExecContext(ctx, "DELETE FROM ward_locks WHERE hospital = $1 AND token = $2", hospital, token)
		return err
	}
	return release, true, nil
}

// heartbeat renews a lock row every third of its TTL. A renewal that
// fails (another process held the database past the busy timeout) is
// retried at the next beat; a load renews the lock in its own transaction,
// so a holder busy loading never lets it lapse.
func (d *sqlite) heartbeat(hospital, token string, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(d.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), d.ttl/3)
			_, _ = d.db.ExecContext(ctx, "UPDATE ward_locks SET expires = $1 WHERE hospital = $2 AND token = $3",
				d.time(time.Now().Add(d.ttl)), hospital, token)
			cancel()
		}
	}
}

func (d *sqlite) renew(ctx context.Context, tx *sql.Tx, hospital string) error {
	token, ok := d.held.Load(hospital)
	if !ok {
		return nil
	}
	_, err := tx.ExecContext(ctx, "UPDATE ward_locks SET expires = $1 WHERE hospital = $2 AND token = $3",
		d.time(time.Now().Add(d.ttl)), hospital, token)
	return err
}
