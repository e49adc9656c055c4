// Package store is the RDBMS behind ward's data side. Ingest records every
// file in its ledger and loads the hospitals' extracts into it, train reads
// a hospital's tables back joined into one row per case with the lineage of
// those rows, and feedback joins the predictions that were served with the
// outcomes that later extracts bring.
//
// Each contract table gets a typed table of its own (TableName), created and
// widened from the contract (EnsureTable), never by a code change; ward's
// own tables (ledger, locks, predictions) come from embedded, versioned
// migrations applied at Open. Two engines stand behind the one Store:
// PostgreSQL through pgx, with COPY for bulk loads, in production, and a
// SQLite file (pure Go) as the embedded default. Tests run the same cases
// against both.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/wardml/ward/internal/config"
	"github.com/wardml/ward/internal/exit"
)

// Store is an open database: PostgreSQL or SQLite. It is safe for
// concurrent use, and several processes may open the same database at once.
type Store struct {
	db  *sql.DB
	d   dialect
	url string // redacted, for messages

	mu    sync.Mutex
	locks map[*Lock]struct{} // held, released by Close
}

// Option changes how Open sets up a store.
type Option func(*options)

type options struct {
	lockTTL time.Duration
}

// WithLockTTL sets how long a SQLite hospital lock outlives its holder's
// last heartbeat (default 1 minute; heartbeats come every third of it). A
// crashed holder's lock is free after this long. PostgreSQL's locks end
// with the holder's session and need no expiry.
func WithLockTTL(d time.Duration) Option { return func(o *options) { o.lockTTL = d } }

// Open connects to the database that url names, sqlite:PATH or a
// postgres:// URL (config.ParseDatabase), and brings ward's own tables up to
// date. A bad URL, a server that cannot be reached or a schema that cannot
// be migrated is an error with exit code 2 (exit.Config).
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	o := options{lockTTL: time.Minute}
	for _, opt := range opts {
		opt(&o)
	}
	redacted := config.Redact(url)
	spec, err := config.ParseDatabase(url)
	if err != nil {
		return nil, exit.With(exit.Config, fmt.Errorf("database: %w", err))
	}
	s := &Store{url: redacted, locks: map[*Lock]struct{}{}}
	switch spec.Driver {
	case "sqlite":
		s.db, err = openSQLite(spec.DSN)
		if err == nil {
			s.d = &sqlite{db: s.db, ttl: o.lockTTL}
		}
	default:
		var cfg *pgx.ConnConfig
		cfg, err = pgx.ParseConfig(spec.DSN)
		if err == nil {
			// Statements are never cached on the server: EnsureTable alters
			// tables under running processes, and a cached plan of a changed
			// table fails once before pgx drops it.
			cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
			if cfg.RuntimeParams["application_name"] == "" {
				cfg.RuntimeParams["application_name"] = "ward"
			}
			s.db = stdlib.OpenDB(*cfg)
			s.d = &postgres{db: s.db}
		}
	}
	if err != nil {
		return nil, exit.With(exit.Config, fmt.Errorf("database %s: %w", redacted, err))
	}
	pingCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = s.db.PingContext(pingCtx)
	// A new SQLite file turns to WAL on its first connection, and that
	// switch answers SQLITE_BUSY at once, without the busy timeout, while
	// another process makes the same switch: wait for it and try again.
	for err != nil && spec.Driver == "sqlite" && strings.Contains(err.Error(), "SQLITE_BUSY") && pingCtx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
		err = s.db.PingContext(pingCtx)
	}
	cancel()
	if err != nil {
		s.db.Close()
		return nil, exit.With(exit.Config, fmt.Errorf("database %s: cannot connect: %w", redacted, err))
	}
	if err := s.migrate(ctx); err != nil {
		s.db.Close()
		return nil, exit.With(exit.Config, fmt.Errorf("database %s: %w", redacted, err))
	}
	return s, nil
}

// openSQLite opens the file at path, creating its folder. Write
// transactions start with BEGIN IMMEDIATE and wait for each other up to the
// busy timeout, so that two processes never fail on a lock upgrade; WAL
// lets readers go on while one of them writes.
func openSQLite(path string) (*sql.DB, error) {
	if path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlite:%s: want the path of a file (ward's processes share it)", path)
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("sqlite:%s: a path with ? or # is not supported", path)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	dsn := "file:" + path + "?_txlock=immediate" +
		"&_pragma=busy_timeout(30000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)"
	return sql.Open("sqlite", dsn)
}

// Close releases the locks the store still holds and closes the database.
func (s *Store) Close() error {
	s.mu.Lock()
	held := make([]*Lock, 0, len(s.locks))
	for l := range s.locks {
		held = append(held, l)
	}
	s.mu.Unlock()
	var errs []error
	for _, l := range held {
		errs = append(errs, l.Unlock())
	}
	errs = append(errs, s.db.Close())
	return errors.Join(errs...)
}

func (s *Store) inTx(ctx context.Context, fn func(conn *sql.Conn, tx *sql.Tx) error) error {
	return inTx(ctx, s.db, fn)
}

// inTx runs fn in a write transaction on a connection of its own (the
// PostgreSQL load needs the connection for COPY), and commits when fn
// returns nil.
func inTx(ctx context.Context, db *sql.DB, fn func(conn *sql.Conn, tx *sql.Tx) error) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(conn, tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}
