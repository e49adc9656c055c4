package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/pipelines/store"
)

// pgCases is a PostgreSQL database holding a hospital's cases table as
// ward creates it, and psql's \copy into it: the reference that the load
// benchmarks measure ward against, in the same run.
type pgCases struct {
	url   string
	st    *store.Store
	conn  *pgx.Conn
	table string // ward's table
	ref   string // the table psql loads into
	cols  []string
	close []func()
}

// openCases opens the database at url (empty: a PostgreSQL server started
// for the benchmark) and makes the cases table. psql loads into ref, a
// copy of ward's table, or with ref empty into ward's own: psql fills the
// contract's columns only, and ward's own columns get defaults.
func openCases(ctx context.Context, url string, h *contract.Hospital, cases *contract.Table, ref string) (*pgCases, error) {
	p := &pgCases{url: url}
	if p.url == "" {
		initdbs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
		if len(initdbs) == 0 {
			return nil, errors.New("no initdb: install postgresql, or pass -postgres URL")
		}
		srv, err := testenv.StartPostgres(initdbs[len(initdbs)-1])
		if err != nil {
			return nil, err
		}
		p.close = append(p.close, srv.Stop)
		p.url = srv.Admin
	}
	var err error
	if p.st, err = store.Open(ctx, p.url); err != nil {
		p.Close()
		return nil, err
	}
	p.close = append(p.close, func() { p.st.Close() })
	if err := p.st.EnsureTable(ctx, h.ID, cases); err != nil {
		p.Close()
		return nil, err
	}
	p.table, p.ref = store.TableName(h.ID, cases.Name), ref
	if p.conn, err = pgx.Connect(ctx, p.url); err != nil {
		p.Close()
		return nil, err
	}
	p.close = append(p.close, func() { p.conn.Close(context.Background()) })
	setup := fmt.Sprintf(`ALTER TABLE %s ALTER _ward_file SET DEFAULT 'psql', ALTER _ward_loaded_at SET DEFAULT now()`, p.table)
	if ref != "" {
		setup = fmt.Sprintf(`DROP TABLE IF EXISTS %[2]s; CREATE TABLE %[2]s (LIKE %[1]s INCLUDING ALL);
			ALTER TABLE %[2]s ALTER _ward_file SET DEFAULT 'psql', ALTER _ward_loaded_at SET DEFAULT now()`, p.table, ref)
	} else {
		p.ref = p.table
	}
	if _, err := p.conn.Exec(ctx, setup); err != nil {
		p.Close()
		return nil, err
	}
	for _, c := range cases.Columns {
		p.cols = append(p.cols, c.Name)
	}
	return p, nil
}

// reset empties the tables and the ledger, and checkpoints, so that each
// run starts alike.
func (p *pgCases) reset(ctx context.Context) error {
	tables := p.table
	if p.ref != p.table {
		tables += ", " + p.ref
	}
	_, err := p.conn.Exec(ctx, fmt.Sprintf("TRUNCATE %s; DELETE FROM ward_files; CHECKPOINT", tables))
	return err
}

// psql loads a CSV file with psql's \copy and returns the seconds it took.
func (p *pgCases) psql(ctx context.Context, file string) (float64, error) {
	start := time.Now()
	out, err := exec.CommandContext(ctx, "psql", p.url, "-v", "ON_ERROR_STOP=1", "-q", "-c",
		fmt.Sprintf(`\copy %s (%s) FROM '%s' WITH (FORMAT csv, HEADER true)`, p.ref, strings.Join(p.cols, ", "), file)).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("psql: %v\n%s", err, out)
	}
	return time.Since(start).Seconds(), nil
}

// Close releases the database and stops the server it started.
func (p *pgCases) Close() {
	for i := len(p.close) - 1; i >= 0; i-- {
		p.close[i]()
	}
	p.close = nil
}
