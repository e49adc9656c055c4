package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one file of migrations/, NNNN_name.sql, applied once, in
// order of its version.
type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: want NNNN_name.sql", e.Name())
		}
		text, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: name, sql: string(text)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s share version %d", out[i-1].name, out[i].name, out[i].version)
		}
	}
	return out, nil
}

// migrate applies the migrations that the database lacks, all in one
// transaction under the schema lock, so that two processes opening the
// database at once apply each exactly once.
func (s *Store) migrate(ctx context.Context) error {
	all, err := migrations()
	if err != nil {
		return err
	}
	latest := all[len(all)-1].version
	// An up-to-date database needs no write: a process that opens it while
	// another loads a large file (SQLite has one writer) need not wait.
	var have sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT max(version) FROM ward_migrations`).Scan(&have); err == nil && have.Int64 == int64(latest) {
		return nil
	}
	return s.inTx(ctx, func(_ *sql.Conn, tx *sql.Tx) error {
		if err := s.d.lockSchema(ctx, tx); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS ward_migrations (
			version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)`); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		var have sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT max(version) FROM ward_migrations`).Scan(&have); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if have.Int64 > int64(latest) {
			return fmt.Errorf("the database's schema is at version %d, and this ward knows up to %d: use a newer ward", have.Int64, latest)
		}
		for _, m := range all {
			if int64(m.version) <= have.Int64 {
				continue
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("migration %04d_%s: %w", m.version, m.name, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO ward_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
				m.version, m.name, s.d.time(time.Now())); err != nil {
				return fmt.Errorf("migration %04d_%s: %w", m.version, m.name, err)
			}
		}
		return nil
	})
}
