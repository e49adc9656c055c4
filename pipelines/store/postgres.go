package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"iter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/wardml/ward/models"
)

// postgres is the production engine: pgx, COPY into a staging table for
// loads, advisory locks for the schema and the hospitals.
type postgres struct{ db *sql.DB }

func (*postgres) name() string { return "postgres" }

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

func (*postgres) arg(t models.Type, v models.Value) any {
	if v.Null {
		return nil
	}
	switch t {
	case models.String:
		return v.Str
	case models.Int:
		return int64(v.Num)
	case models.Bool:
		return v.Num != 0
	case models.Date:
		return v.Time(models.Date)
	case models.Timestamp:
		return timestamp(v)
	}
	return v.Num
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

func (p *postgres) stage(ctx context.Context, conn *sql.Conn, _ *sql.Tx, cols []models.Column, rows Rows) (int64, error) {
	src := &copySource{ctx: ctx, p: p, cols: cols, vals: make([]any, len(cols))}
	var stop func()
	src.next, stop = iter.Pull2(rows)
	defer stop()
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	var n int64
	err := conn.Raw(func(dc any) error {
		var err error
		n, err = dc.(*stdlib.Conn).Conn().CopyFrom(ctx, pgx.Identifier{stagingTable}, names, src)
		return err
	})
	if src.err != nil {
		return 0, src.err
	}
	return n, err
}

// copySource feeds a file's rows to COPY, one row's arguments at a time.
type copySource struct {
	ctx  context.Context
	next func() ([]models.Value, error, bool)
	p    *postgres
	cols []models.Column
	vals []any
	n    int64
	err  error
}

func (c *copySource) Next() bool {
	// COPY reads its source in a goroutine of its own; a cancelled load
	// stops here rather than read the rest of the file.
	if c.n%1024 == 0 {
		if c.err = c.ctx.Err(); c.err != nil {
			return false
		}
	}
	row, err, ok := c.next()
	if !ok {
		return false
	}
	if c.err = checkRow(c.n, row, err, c.cols); c.err != nil {
		return false
	}
	for i, col := range c.cols {
		c.vals[i] = c.p.arg(col.Type, row[i])
	}
	c.n++
	return true
}

func (c *copySource) Values() ([]any, error) { return c.vals, nil }
func (c *copySource) Err() error             { return c.err }

// upsert counts inserted and replaced rows by xmax, which is 0 in a row
// version that an INSERT made and set in one that an UPDATE made.
func (*postgres) upsert(ctx context.Context, tx *sql.Tx, def tableDef, file string, at time.Time, _ int64) (Counts, error) {
	q := "WITH up AS (" + upsertSQL(def, " RETURNING (xmax = 0) AS inserted") +
		") SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up"
	var c Counts
	err := tx.QueryRowContext(ctx, q, file, at.UTC()).Scan(&c.Inserted, &c.Updated)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "21000" { // ON CONFLICT DO UPDATE command cannot affect row a second time
		return c, errDuplicateKeys
	}
	return c, err
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
