package store

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/wardml/ward/models"
)

// dialect is what differs between the two engines; everything else in the
// package is one code path for both.
type dialect interface {
	name() string
	// sqlType is the column type that holds values of a contract type.
	sqlType(t models.Type) string
	// arg turns a value of a contract type into a query argument.
	arg(t models.Type, v models.Value) any
	// time turns a time into an argument for a TIMESTAMPTZ column of
	// ward's own tables.
	time(t time.Time) any
	// textOrder follows a text column in ORDER BY so that both engines
	// sort by bytes, and give training the same rows in the same order.
	textOrder() string
	// lockSchema serialises schema changes (migrations, EnsureTable)
	// between processes; it is the first statement of their transaction.
	lockSchema(ctx context.Context, tx *sql.Tx) error
	// stage copies a file's rows into the staging table ward_load, and
	// returns how many there were.
	stage(ctx context.Context, conn *sql.Conn, tx *sql.Tx, cols []models.Column, rows Rows) (int64, error)
	// upsert moves the staged rows into the table, replacing rows with the
	// same key, and counts what it inserted and replaced. It returns
	// errDuplicateKeys when two staged rows share a key.
	upsert(ctx context.Context, tx *sql.Tx, def tableDef, file string, at time.Time, staged int64) (Counts, error)
	// isUnique reports whether err is a unique-constraint violation.
	isUnique(err error) bool
	// tryLock takes the hospital's lock if it is free. release gives it
	// back; ok is false when another holder has it.
	tryLock(ctx context.Context, hospital, token string, me Holder) (release func() error, ok bool, err error)
	// renew extends, inside tx, the lock this process holds on the
	// hospital, where locks expire.
	renew(ctx context.Context, tx *sql.Tx, hospital string) error
}

// errDuplicateKeys is the upsert's signal that the file repeats a key.
var errDuplicateKeys = errors.New("duplicate keys in the staged rows")
