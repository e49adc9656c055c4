package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wardml/ward/models/predlog"
)

// State is where a file stands in the ledger.
type State string

// The states of a file. Loaded is final: only Load sets it, and a file is
// loaded at most once by content.
const (
	// Fetched: downloaded and staged, not yet loaded.
	Fetched State = "fetched"
	// Quarantined: refused; Reason says why. A later run may fetch it again
	// (after the contract or the file is fixed).
	Quarantined State = "quarantined"
	// Duplicate: the same content as a file already loaded under another
	// name; skipped.
	Duplicate State = "duplicate"
	// Loaded: its rows are in the database.
	Loaded State = "loaded"
)

// PredictionsTable is File.Table for a prediction log.
const PredictionsTable = predlog.Table

// File is one entry of the ledger: a file of a hospital, by name and
// content. The same name with other content is another entry.
type File struct {
	Hospital string `json:"hospital"`
	Name     string `json:"name"`
	SHA256   string `json:"sha256"`
	Size     int64  `json:"size"`
	// Table is the contract table the file belongs to, or PredictionsTable.
	Table  string `json:"table"`
	State  State  `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Counts of a loaded file: rows inserted, rows that replaced a row with
	// the same key (updated), predictions already present (duplicates),
	// and rows that ingest rejected (set by the caller).
	Inserted   int64     `json:"inserted"`
	Updated    int64     `json:"updated"`
	Duplicates int64     `json:"duplicates"`
	Rejected   int64     `json:"rejected"`
	FirstSeen  time.Time `json:"first_seen"`
	Changed    time.Time `json:"changed"`
}

func (f File) String() string { return f.Hospital + "/" + f.Name }

// ErrAlreadyLoaded is returned (wrapped) when a file, or the same content
// under another name, is already loaded.
var ErrAlreadyLoaded = errors.New("already loaded")

func (f File) check() error {
	switch {
	case f.Hospital == "" || f.Name == "":
		return fmt.Errorf("ledger: a file needs a hospital and a name (got %q)", f.String())
	case len(f.SHA256) != 64 || strings.Trim(f.SHA256, "0123456789abcdef") != "":
		return fmt.Errorf("ledger %s: sha256 %q: want 64 lower-case hex digits", f, f.SHA256)
	case f.Table == "":
		return fmt.Errorf("ledger %s: no table", f)
	}
	switch f.State {
	case Fetched, Quarantined, Duplicate, Loaded:
		return nil
	}
	return fmt.Errorf("ledger %s: unknown state %q", f, f.State)
}

// Record adds a file to the ledger or moves it to another state (fetched,
// quarantined or duplicate); the counts and reason are replaced. A file
// that is loaded stays loaded: recording it again is an error wrapping
// ErrAlreadyLoaded.
func (s *Store) Record(ctx context.Context, f File) error {
	if err := f.check(); err != nil {
		return err
	}
	if f.State == Loaded {
		return fmt.Errorf("ledger %s: only Load marks a file loaded", f)
	}
	return s.record(ctx, s.db, f)
}

// record upserts f's entry unless it is loaded already.
func (s *Store) record(ctx context.Context, q querier, f File) error {
	now := s.d.time(time.Now())
	res, err := q.ExecContext(ctx, `INSERT INTO ward_files
		(hospital, name, sha256, size, tbl, state, reason, inserted, updated, duplicates, rejected, first_seen, changed_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
		ON CONFLICT (hospital, name, sha256) DO UPDATE SET size = excluded.size, tbl = excluded.tbl,
			state = excluded.state, reason = excluded.reason, inserted = excluded.inserted,
			updated = excluded.updated, duplicates = excluded.duplicates, rejected = excluded.rejected,
			changed_at = excluded.changed_at
		WHERE ward_files.state <> 'loaded'`,
		f.Hospital, f.Name, f.SHA256, f.Size, f.Table, string(f.State), f.Reason,
		f.Inserted, f.Updated, f.Duplicates, f.Rejected, now)
	if err != nil {
		if s.d.isUnique(err) {
			return s.alreadyLoaded(ctx, f)
		}
		return fmt.Errorf("ledger %s: %w", f, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("ledger %s: %w", f, ErrAlreadyLoaded)
	}
	return nil
}

// setCounts records what loading f did, and the rows its validation
// rejected.
func (s *Store) setCounts(ctx context.Context, q querier, f File, c Counts) error {
	_, err := q.ExecContext(ctx, `UPDATE ward_files SET inserted = $1, updated = $2, duplicates = $3, rejected = $4, changed_at = $5
		WHERE hospital = $6 AND name = $7 AND sha256 = $8`,
		c.Inserted, c.Updated, c.Duplicates, f.Rejected, s.d.time(time.Now()), f.Hospital, f.Name, f.SHA256)
	return err
}

// alreadyLoaded names the entry that loaded f's content.
func (s *Store) alreadyLoaded(ctx context.Context, f File) error {
	prev, err := s.Files(ctx, FileQuery{Hospital: f.Hospital, SHA256: f.SHA256, State: Loaded})
	if err != nil || len(prev) == 0 {
		return fmt.Errorf("ledger %s: %w (the same content under another name)", f, ErrAlreadyLoaded)
	}
	p := prev[0]
	return fmt.Errorf("ledger %s: %w: the same content was loaded as %s on %s", f, ErrAlreadyLoaded, p.Name, p.Changed.Format(time.RFC3339))
}

// FileQuery selects ledger entries; empty fields select all.
type FileQuery struct {
	Hospital string
	Name     string
	SHA256   string
	Table    string
	State    State
}

// Files returns the ledger entries that q selects, the most recently
// changed first: by name to see whether a file on the server is known, by
// SHA-256 to see whether its content is.
func (s *Store) Files(ctx context.Context, q FileQuery) ([]File, error) {
	var where []string
	var args []any
	for _, c := range []struct{ col, val string }{
		{"hospital", q.Hospital}, {"name", q.Name}, {"sha256", q.SHA256}, {"tbl", q.Table}, {"state", string(q.State)},
	} {
		if c.val != "" {
			args = append(args, c.val)
			where = append(where, fmt.Sprintf("%s = $%d", c.col, len(args)))
		}
	}
	query := `SELECT hospital, name, sha256, size, tbl, state, reason, inserted, updated, duplicates, rejected,
		first_seen, changed_at FROM ward_files`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY changed_at DESC, name"
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	defer rows.Close()
	var out []File
	for rows.Next() {
		var f File
		var state string
		if err := rows.Scan(&f.Hospital, &f.Name, &f.SHA256, &f.Size, &f.Table, &state, &f.Reason,
			&f.Inserted, &f.Updated, &f.Duplicates, &f.Rejected,
			timeScanner{&f.FirstSeen}, timeScanner{&f.Changed}); err != nil {
			return nil, fmt.Errorf("ledger: %w", err)
		}
		f.State = State(state)
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	return out, nil
}
