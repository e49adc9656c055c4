package ingest_test

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/ProtonMail/go-crypto/openpgp"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, to look into the database
	_ "modernc.org/sqlite"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/sftpd/sftptest"
	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/pipelines/ingest"
	"github.com/wardml/ward/pipelines/ingest/decrypt"
	"github.com/wardml/ward/pipelines/ingest/fetch"
	"github.com/wardml/ward/pipelines/ingest/staging"
	"github.com/wardml/ward/pipelines/store"
	"github.com/wardml/ward/pipelines/synth"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		// A hostile test's child: one ingest, measured from outside.
		os.Exit(childIngest(dir))
	}
	testenv.Main(m)
}

// engines runs a test against a fresh database of each engine: a database
// on a real PostgreSQL server, and a SQLite file.
func engines(t *testing.T, test func(t *testing.T, url string)) {
	t.Run("postgres", func(t *testing.T) { test(t, testenv.Postgres(t)) })
	t.Run("sqlite", func(t *testing.T) { test(t, "sqlite:"+filepath.Join(t.TempDir(), "ward.db")) })
}

// group is a synthetic hospital group written by synth, with ward's keys.
type group struct {
	dir  string
	sum  *synth.Summary
	hs   []*contract.Hospital
	keys *decrypt.Keys
	pgp  *openpgp.Entity
	age  *age.X25519Identity
}

func newGroup(t *testing.T, opts ...synth.Option) *group {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "group")
	sum, err := synth.Generate(context.Background(), dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	g := &group{dir: dir, sum: sum}
	if g.hs, err = contract.LoadAll(sum.Contracts); err != nil {
		t.Fatal(err)
	}
	g.loadKeys(t)
	return g
}

// loadKeys reads ward's ingest keys from the group's keys/ folder.
func (g *group) loadKeys(t *testing.T) {
	t.Helper()
	pgpFile, ageFile := filepath.Join(g.dir, "keys", "ingest.pgp"), filepath.Join(g.dir, "keys", "ingest.age")
	var opts []decrypt.Option
	if b, err := os.ReadFile(pgpFile); err == nil {
		el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		g.pgp = el[0]
		opts = append(opts, decrypt.WithPGPKey(pgpFile, ""))
	}
	if b, err := os.ReadFile(ageFile); err == nil {
		ids, err := age.ParseIdentities(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		g.age = ids[0].(*age.X25519Identity)
		opts = append(opts, decrypt.WithAgeIdentity(ageFile))
	}
	k, err := decrypt.Load(opts...)
	if err != nil {
		t.Fatal(err)
	}
	g.keys = k
}

func (g *group) hospital(id string) *contract.Hospital {
	for _, h := range g.hs {
		if h.ID == id {
			return h
		}
	}
	panic("no hospital " + id)
}

func (g *group) summary(id string) synth.HospitalSummary {
	for _, h := range g.sum.Hospitals {
		if h.ID == id {
			return h
		}
	}
	panic("no hospital " + id)
}

// inbound is a hospital's folder in the drop box.
func (g *group) inbound(id string) string {
	return filepath.Join(g.sum.SFTP, g.hospital(id).Inbound.Folder)
}

// rig is one database and one staging folder that runs share.
type rig struct {
	t     *testing.T
	url   string
	stage *staging.Store
}

func newRig(t *testing.T, url string) *rig {
	st, err := staging.Open(filepath.Join(t.TempDir(), "staging"))
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, url: url, stage: st}
}

// run ingests hs from src, settling quickly.
func (r *rig) run(g *group, src fetch.Source, hs []*contract.Hospital, opts ...ingest.Option) *ingest.Summary {
	r.t.Helper()
	st, err := store.Open(context.Background(), r.url)
	if err != nil {
		r.t.Fatal(err)
	}
	defer st.Close()
	opts = append([]ingest.Option{ingest.WithSettle(50 * time.Millisecond)}, opts...)
	return ingest.Run(context.Background(), hs, src, st, r.stage, g.keys, opts...)
}

// db opens the database itself, to look at what the pipeline left.
func (r *rig) db() *sql.DB {
	r.t.Helper()
	driver, dsn := "pgx", r.url
	if p, ok := strings.CutPrefix(r.url, "sqlite:"); ok {
		driver, dsn = "sqlite", p
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { db.Close() })
	return db
}

// count runs a count(*) query.
func count(t *testing.T, db *sql.DB, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// rows counts a hospital's table.
func rows(t *testing.T, db *sql.DB, hospital, table string) int64 {
	t.Helper()
	return count(t, db, "SELECT count(*) FROM "+store.TableName(hospital, table))
}

// startSFTPD serves root with ward's in-process server and dials it.
func startSFTPD(t *testing.T, root string, opts ...fetch.DialOption) *fetch.SFTP {
	t.Helper()
	s := sftptest.Start(t, root)
	return dial(t, fetch.SFTPConfig{URL: s.URL, Key: s.Key, KnownHosts: s.KnownHosts}, opts...)
}

func dial(t *testing.T, cfg fetch.SFTPConfig, opts ...fetch.DialOption) *fetch.SFTP {
	t.Helper()
	c, err := fetch.Dial(context.Background(), cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// file returns the result of the file named name.
func file(t *testing.T, sum *ingest.Summary, name string) ingest.FileResult {
	t.Helper()
	for _, h := range sum.Hospitals {
		for _, f := range h.Files {
			if f.Name == name {
				return f
			}
		}
	}
	t.Fatalf("no result for %s in %+v", name, sum)
	return ingest.FileResult{}
}

func mustRead(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
