package store

import (
	"bufio"
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
)

// postgres is the production engine: pgx, COPY for loads, advisory locks
// for the schema and the hospitals.
type postgres struct{ db *sql.DB }

func (*postgres) sqlType(t models.Type) string {
	switch t {
	case models.Int:
		return "bigint"
	case models.Float:
		return "double precision"
	case models.Bool:
		return "boolean"
	case models.Date:
		return "date"
	case models.Timestamp:
		return "timestamptz"
	}
	return "text"
}

func (*postgres) time(t time.Time) any { return t.UTC() }

func (*postgres) textOrder() string { return ` COLLATE "C"` }

// advisoryKey is the advisory lock of a name: one 64-bit key space is
// shared by every application on the server, so ward's keys are hashes of
// names that only ward uses.
func advisoryKey(name string) int64 {
	sum := sha256.Sum256([]byte("ward " + name))
	return int64(binary.BigEndian.Uint64(sum[:8]))
}

func (*postgres) lockSchema(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", advisoryKey("schema"))
	return err
}

// load COPYs the file's rows straight into the table, which is what makes
// it as fast as psql's \copy (an INSERT ... SELECT from a staging table,
// with or without ON CONFLICT, inserts row by row and took three times as
// long). Most files bring new keys only, and are done then. A COPY that
// meets a key already in the table is rolled back to its savepoint; the
// rows, spooled to local disk as they went by, load again: their keys
// (with the time column and their place in the file) into a temporary
// table, the keys whose table row is newer refused, the table's rows with
// the other keys deleted (the rows the file replaces), and the rows
// COPYed from the spool, without the refused ones.
func (p *postgres) load(ctx context.Context, conn *sql.Conn, tx *sql.Tx, def tableDef, spec loadSpec, rows Rows) (Counts, error) {
	t := def.table
	rowSpool, err := newSpoolFile()
	if err != nil {
		return Counts{}, err
	}
	defer rowSpool.remove()
	keySpool, err := newSpoolFile()
	if err != nil {
		return Counts{}, err
	}
	defer keySpool.remove()
	enc := &copyEncoder{ctx: ctx, cols: t.Columns, rows: rowSpool, keys: keySpool}
	keyCols := slices.Clone(t.Key)
	if t.TimeColumn != "" && !slices.Contains(keyCols, t.TimeColumn) {
		keyCols = append(keyCols, t.TimeColumn)
	}
	for _, k := range keyCols {
		enc.keyIdx = append(enc.keyIdx, slices.IndexFunc(t.Columns, func(c contract.Column) bool { return c.Name == k }))
	}
	period := models.Missing
	if spec.period != "" {
		period = models.Text(spec.period)
	}
	enc.ward = appendField(nil, models.String, models.Text(spec.file))
	enc.ward = appendField(enc.ward, models.Timestamp, timeValue(spec.at))
	enc.ward = appendField(enc.ward, models.String, period)
	var stop func()
	enc.next, stop = iter.Pull2(rows)
	defer stop()

	copyRows := fmt.Sprintf("COPY %s (%s, %s, %s, %s) FROM STDIN BINARY", quote(def.name), quoteAll("", def.columnNames()), fileColumn, loadedColumn, periodColumn)
	if _, err := tx.ExecContext(ctx, "SAVEPOINT ward_copy"); err != nil {
		return Counts{}, err
	}
	n, err := copyIn(ctx, conn, enc, copyRows)
	enc.detach()
	if enc.err != nil {
		return Counts{}, enc.err
	}
	if err == nil {
		return Counts{Inserted: n}, nil
	}
	if !p.isUnique(err) {
		return Counts{}, err
	}

	// The table has some of the file's keys (or the file repeats one).
	if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT ward_copy"); err != nil {
		return Counts{}, err
	}
	if err := enc.drain(); err != nil {
		return Counts{}, err
	}
	keys := make([]string, 0, len(keyCols)+1)
	for _, k := range keyCols {
		keys = append(keys, quote(k)+" "+p.sqlType(t.Column(k).Type))
	}
	keys = append(keys, ordColumn+" bigint")
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("CREATE TEMP TABLE %s (%s) ON COMMIT DROP", keysTable, strings.Join(keys, ", "))); err != nil {
		return Counts{}, err
	}
	r, err := keySpool.reader()
	if err != nil {
		return Counts{}, err
	}
	if _, err := copyIn(ctx, conn, r, fmt.Sprintf("COPY %s FROM STDIN BINARY", keysTable)); err != nil {
		return Counts{}, err
	}
	var c Counts
	skip := map[int64]bool{}
	if spec.keepNewer {
		if c.RefusedRows, err = refusals(ctx, tx, refusedSelect(t, def.name, keysTable, ordColumn, "$1::text", "$2"), spec.periodArg(), spec.hospital); err != nil {
			return Counts{}, err
		}
		if len(c.RefusedRows) > 0 {
			// Every refused row, not only those listed, is skipped.
			refused, err := tx.QueryContext(ctx, fmt.Sprintf("DELETE FROM %s AS s USING %s AS t WHERE %s AND %s RETURNING s.%s",
				keysTable, quote(def.name), keysMatch(t), newer(t, "$1::text"), ordColumn), spec.periodArg())
			if err != nil {
				return Counts{}, err
			}
			for refused.Next() {
				var ord int64
				if err := refused.Scan(&ord); err != nil {
					refused.Close()
					return Counts{}, err
				}
				skip[ord] = true
			}
			if err := refused.Close(); err != nil {
				return Counts{}, err
			}
			c.Refused = int64(len(skip))
		}
	}
	res, err := tx.ExecContext(ctx, fmt.Sprintf("DELETE FROM %s AS t USING %s AS s WHERE %s", quote(def.name), keysTable, keysMatch(t)))
	if err != nil {
		return Counts{}, err
	}
	replaced, err := res.RowsAffected()
	if err != nil {
		return Counts{}, err
	}
	if r, err = rowSpool.reader(); err != nil {
		return Counts{}, err
	}
	if len(skip) > 0 {
		r = &tupleFilter{r: bufio.NewReaderSize(r, 1<<16), skip: skip}
	}
	if _, err := tx.ExecContext(ctx, "SAVEPOINT ward_copy"); err != nil {
		return Counts{}, err
	}
	n, err = copyIn(ctx, conn, r, copyRows)
	if p.isUnique(err) {
		// None of the file's keys is left in the table: it repeats one.
		if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT ward_copy"); rerr != nil {
			return Counts{}, errors.Join(err, rerr)
		}
		return Counts{}, duplicateKey(ctx, tx, keysTable, t, err)
	}
	if err != nil {
		return Counts{}, err
	}
	c.Inserted, c.Updated = n-replaced, replaced
	return c, nil
}

// keysTable holds a file's keys inside the load's transaction.
const keysTable = "ward_keys"

// copyIn runs a COPY ... FROM STDIN on the transaction's connection.
func copyIn(ctx context.Context, conn *sql.Conn, r io.Reader, copySQL string) (int64, error) {
	var n int64
	err := conn.Raw(func(dc any) error {
		tag, err := dc.(*stdlib.Conn).Conn().PgConn().CopyFrom(ctx, r, copySQL)
		n = tag.RowsAffected()
		return err
	})
	return n, err
}

func (*postgres) isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// tryLock takes a session advisory lock on a connection of its own, held
// until release; if the process dies, the server ends the session and the
// lock with it. The ward_locks row only names the holder for others.
func (p *postgres) tryLock(ctx context.Context, hospital, token string, me Holder) (func() error, bool, error) {
	key := advisoryKey("hospital " + hospital)
	conn, err := p.db.Conn(ctx)
	if err != nil {
		return nil, false, err
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&ok); err != nil || !ok {
		conn.Close()
		return nil, false, err
	}
	release := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := p.db.ExecContext(ctx, "DELETE FROM ward_locks WHERE hospital = $1 AND token = $2", hospital, token)
		var unlocked bool
		if uerr := conn.QueryRowContext(ctx, "SELECT pg_advisory_unlock($1)", key).Scan(&unlocked); uerr != nil || !unlocked {
			// Never hand a session that may still hold the lock back to
			// the pool: close it, and the server drops the lock.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			err = errors.Join(err, uerr)
		}
		return errors.Join(err, conn.Close())
	}
	_, err = p.db.ExecContext(ctx, `INSERT INTO ward_locks (hospital, token, what, pid, host, since, expires)
		VALUES ($1, $2, $3, $4, $5, $6, NULL)
		ON CONFLICT (hospital) DO UPDATE SET token = excluded.token, what = excluded.what, pid = excluded.pid,
			host = excluded.host, since = excluded.since, expires = NULL`,
		hospital, token, me.What, me.PID, me.Host, me.Since.UTC())
	if err != nil {
		return nil, false, errors.Join(err, release())
	}
	return release, true, nil
}

func (*postgres) renew(context.Context, *sql.Tx, string) error { return nil }
