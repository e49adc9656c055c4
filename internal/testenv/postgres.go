package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgBinDirs is where Debian puts PostgreSQL's server programs.
var pgBinDirs = []string{"/usr/lib/postgresql/*/bin"}

// PostgresServer is a running PostgreSQL server.
type PostgresServer struct {
	// Admin is the URL of its postgres database, as a superuser.
	Admin string
	// Port is its port on 127.0.0.1, and Dir its data folder ("" for a
	// server given by WARD_TEST_POSTGRES).
	Port int
	Dir  string
	// PgCtl and Psql are the programs that manage and query it.
	PgCtl string
	svc   *service
}

var (
	pgOnce   sync.Once
	pgShared *PostgresServer
	pgErr    error
	pgSeq    atomic.Int64
)

// Postgres returns the URL of a new, empty database on a real PostgreSQL
// server. The server is shared by the tests of one test binary (started at
// the first call; stopped by Main) or, when WARD_TEST_POSTGRES holds the
// URL of an existing server, that one. The database is dropped when the
// test ends.
func Postgres(t testing.TB) string {
	t.Helper()
	srv := SharedPostgres(t)
	name := fmt.Sprintf("ward_test_%d_%d", os.Getpid(), pgSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, srv.Admin)
	if err != nil {
		t.Fatalf("postgres: connect %s: %v", srv.Admin, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("postgres: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, srv.Admin)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return withDatabase(srv.Admin, name)
}

// SharedPostgres returns the server that Postgres creates databases on.
func SharedPostgres(t testing.TB) *PostgresServer {
	t.Helper()
	if url := os.Getenv("WARD_TEST_POSTGRES"); url != "" {
		return &PostgresServer{Admin: url}
	}
	initdb := LookPath(t, "initdb", "postgresql", pgBinDirs...)
	pgOnce.Do(func() { pgShared, pgErr = StartPostgres(initdb) })
	if pgErr != nil {
		t.Fatalf("postgres: %v", pgErr)
	}
	return pgShared
}

// StartPostgres runs initdb into a new temporary folder and starts the
// server on a free loopback port. Stop it with Stop.
func StartPostgres(initdb string) (*PostgresServer, error) {
	bin := filepath.Dir(initdb)
	cred, err := serviceUser()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ward-pg-")
	if err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	as := func(cmd *exec.Cmd) *exec.Cmd {
		if cred != nil {
			cmd.SysProcAttr = sysProcAs(cred)
		}
		cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
		return cmd
	}
	if err := run(as(exec.Command(initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"))); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	postgres := filepath.Join(bin, "postgres")
	cmd := as(exec.Command(postgres, "-D", data, "-p", strconv.Itoa(port), "-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+dir, "-c", "fsync=off", "-c", "full_page_writes=off",
		"-c", "synchronous_commit=off", "-c", "max_connections=200"))
	svc, err := startService("postgres", cmd)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if err := WaitTCP(addr, 30*time.Second, svc.exited); err != nil {
		svc.stop()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("postgres on %s: %v\n%s", addr, err, svc.Output())
	}
	srv := &PostgresServer{
		Admin: fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", addr),
		Port:  port, Dir: dir, PgCtl: filepath.Join(bin, "pg_ctl"), svc: svc,
	}
	// The server accepts TCP before it accepts logins: wait for a login.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, srv.Admin)
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return srv, nil
		}
		if time.Now().After(deadline) {
			srv.Stop()
			return nil, fmt.Errorf("postgres on %s: no login within 30s: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops the server and removes its folder.
func (s *PostgresServer) Stop() {
	if s == nil || s.svc == nil {
		return
	}
	s.svc.stop()
	os.RemoveAll(s.Dir)
}

// Main runs the tests of a package, then stops the servers that they
// shared. Use it from TestMain: func TestMain(m *testing.M) { testenv.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	pgShared.Stop()
	os.Exit(code)
}

func withDatabase(admin, db string) string {
	u, err := parseURL(admin)
	if err != nil {
		return admin
	}
	u.Path = "/" + db
	return u.String()
}
