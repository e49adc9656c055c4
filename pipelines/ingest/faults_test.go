package ingest_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/sftpd/sftptest"
	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/pipelines/ingest"
	"github.com/wardml/ward/pipelines/ingest/fetch"
)

// PostgreSQL's connection is killed (pg_terminate_backend, from another
// connection) while a large file is in its COPY: that file fails (not
// loaded, not quarantined: the next run takes it), the other files load,
// nothing of it is in the database, and the next run loads every row of
// it exactly once.
func TestPostgresKilledMidCopy(t *testing.T) {
	g := cleanGroup(t)
	box := dropBox(t, g)
	const big = 300_000
	name := "cases_2024-03.csv.age"
	if err := os.WriteFile(filepath.Join(box, "riverside", "inbound", name), ageSeal(t, g, casesCSV(big, nil)), 0o644); err != nil {
		t.Fatal(err)
	}
	dbURL := testenv.Postgres(t)
	u, _ := url.Parse(dbURL)
	dbName := strings.TrimPrefix(u.Path, "/")
	admin, err := pgx.Connect(context.Background(), testenv.SharedPostgres(t).Admin)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())

	// The killer: the first COPY into the cases table that has run for a
	// while is the large file's (the monthly files take milliseconds).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	killed := make(chan int, 1)
	go func() {
		for ctx.Err() == nil {
			var pid int
			err := admin.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'COPY "riverside__cases"%'
				AND state = 'active' AND query_start < now() - interval '200 milliseconds'`, dbName).Scan(&pid)
			if err == nil {
				var ok bool
				admin.QueryRow(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&ok)
				killed <- pid
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	r := newRig(t, dbURL)
	// The large file is far larger than the monthly ones: a contract
	// without the row-count check takes it.
	h := *g.hospital("riverside")
	h.Thresholds.RowCountRatio = 0
	river := []*contract.Hospital{&h}
	sum := r.run(g, fetch.Dir(box), river)
	cancel()
	select {
	case <-killed:
	default:
		t.Fatalf("the COPY was never seen running; the test did not kill it\n%s", messages(sum))
	}
	f := file(t, sum, name)
	if f.Outcome != ingest.Failed || !strings.Contains(f.Message(), "nothing loaded, the next run tries again") {
		t.Fatalf("the killed load: %s", f.Message())
	}
	t.Logf("the killed load: %s", f.Message())
	res := hospitalResult(t, sum, "riverside")
	if res.Loaded != g.summary("riverside").Files || res.Failed != 1 || res.Quarantined != 0 {
		t.Fatalf("first run: %+v", res)
	}
	db := r.db()
	if n := count(t, db, "SELECT count(*) FROM riverside__cases WHERE case_id LIKE 'C99-%'"); n != 0 {
		t.Fatalf("%d rows of the killed load in the table", n)
	}
	if n := count(t, db, "SELECT count(*) FROM ward_files WHERE name = $1 AND state = 'fetched'", name); n != 1 {
		t.Fatalf("the killed file is not 'fetched' in the ledger")
	}

	sum = r.run(g, fetch.Dir(box), river)
	if f = file(t, sum, name); f.Outcome != ingest.Loaded || f.Loaded != big {
		t.Fatalf("next run: %s", f.Message())
	}
	if n := count(t, db, "SELECT count(*) FROM riverside__cases WHERE case_id LIKE 'C99-%'"); n != big {
		t.Fatalf("%d rows, want %d", n, big)
	}
	if n := count(t, db, "SELECT count(*) FROM riverside__cases"); n != int64(g.summary("riverside").Cases+big) {
		t.Fatalf("%d cases, want %d", n, g.summary("riverside").Cases+big)
	}
}

// The SFTP connection dies mid-download: the files it was fetching fail
// and stage nothing, the ones fetched before load, and the next run, on a
// new connection, loads the rest; every row once.
func TestSFTPCutMidDownload(t *testing.T) {
	g := cleanGroup(t)
	river := []*contract.Hospital{g.hospital("riverside")}
	engines(t, func(t *testing.T, url string) {
		r := newRig(t, url)
		cut := startSFTPD(t, g.sum.SFTP, fetch.WithDialer(sftptest.CutAfter(150<<10)))
		sum := r.run(g, cut, river, ingest.WithJobs(1))
		res := hospitalResult(t, sum, "riverside")
		if res.Failed == 0 || res.Loaded == 0 || res.Loaded+res.Failed != g.summary("riverside").Files {
			t.Fatalf("cut run: %+v\n%s", res, messages(sum))
		}
		for _, f := range res.Files {
			if f.Outcome == ingest.Failed && !strings.HasSuffix(f.Reason, "; nothing staged, the next run fetches it again") {
				t.Fatalf("failed download: %s", f.Message())
			}
		}
		sum = r.run(g, startSFTPD(t, g.sum.SFTP), river)
		res = hospitalResult(t, sum, "riverside")
		if res.Loaded+res.Skipped != g.summary("riverside").Files || res.Failed != 0 || res.Loaded == 0 {
			t.Fatalf("next run: %+v", res)
		}
		db := r.db()
		want := g.summary("riverside")
		for table, n := range map[string]int{"cases": want.Cases, "patients": want.Patients, "doctors": want.Doctors} {
			if got := rows(t, db, "riverside", table); got != int64(n) {
				t.Errorf("%s: %d rows, want %d", table, got, n)
			}
		}
		if n := count(t, db, "SELECT count(*) FROM ward_files WHERE state = 'loaded'"); n != int64(want.Files) {
			t.Errorf("%d files loaded in the ledger, want %d", n, want.Files)
		}
	})
}
