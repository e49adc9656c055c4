package store

import (
	"context"
	"database/sql"
	"time"

	"github.com/wardml/ward/models"
)

// dialect is what differs between the two engines; everything else in the
// package is one code path for both.
type dialect interface {
	// sqlType is the column type that holds values of a contract type.
	sqlType(t models.Type) string
	// time turns a time into an argument for a TIMESTAMPTZ column of
	// ward's own tables.
	time(t time.Time) any
	// textOrder follows a text column in ORDER BY so that both engines
	// sort by bytes, and give training the same rows in the same order.
	textOrder() string
	// lockSchema serialises schema changes (migrations, EnsureTable)
	// between processes; it is the first statement of their transaction.
	lockSchema(ctx context.Context, tx *sql.Tx) error
	// load puts a file's rows into its table inside tx, replacing rows
	// with the same key (unless spec keeps a newer one), and counts what
	// it inserted, replaced and refused. A file that repeats a key is a
	// *DuplicateKeyError.
	load(ctx context.Context, conn *sql.Conn, tx *sql.Tx, def tableDef, spec loadSpec, rows Rows) (Counts, error)
	// isUnique reports whether err is a unique-constraint violation.
	isUnique(err error) bool
	// tryLock takes the hospital's lock if it is free. release gives it
	// back; ok is false when another holder has it.
	tryLock(ctx context.Context, hospital, token string, me Holder) (release func() error, ok bool, err error)
	// renew extends, inside tx, the lock this process holds on the
	// hospital, where locks expire.
	renew(ctx context.Context, tx *sql.Tx, hospital string) error
}
