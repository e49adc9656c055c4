package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/models"
)

// A connection killed mid-COPY leaves nothing of the file, and the next
// run loads it exactly once.
func TestConnectionKilledMidCopy(t *testing.T) {
	ctx := context.Background()
	url := testenv.Postgres(t)
	s := open(t, url)
	h := hospital(t)
	cases := h.Table("cases")
	const total, stall = 50_000, 20_000
	rowAt := func(i int) []models.Value {
		return row(t, cases, fmt.Sprintf("C%06d", i), fmt.Sprintf("P%d", i%97), "2026-01-01", "", "30", "true", "12.5")
	}
	all := make([][]models.Value, total)
	for i := range all {
		all[i] = rowAt(i)
	}
	f := file(h.ID, "cases_2026-01.csv", "january")

	reached, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := s.Load(ctx, f, cases, func(yield func([]models.Value, error) bool) {
			for i, r := range all {
				if i == stall {
					close(reached)
					<-release
				}
				if !yield(r, nil) {
					return
				}
			}
		})
		done <- err
	}()
	<-reached

	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	// The COPY has started on the server (20,000 rows are several of its
	// 64 KiB messages): find its backend and kill it.
	var pid int
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := admin.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
			WHERE datname = current_database() AND query LIKE 'COPY %' AND pid <> pg_backend_pid()`).Scan(&pid)
		if err == nil {
			break
		}
		if !errors.Is(err, pgx.ErrNoRows) || time.Now().After(deadline) {
			t.Fatalf("no COPY in pg_stat_activity: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var killed bool
	if err := admin.QueryRow(ctx, "SELECT pg_terminate_backend($1, 10000)", pid).Scan(&killed); err != nil || !killed {
		t.Fatalf("pg_terminate_backend(%d): %v, %v", pid, killed, err)
	}
	close(release)
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Load succeeded on a killed connection")
		}
		t.Logf("load on a killed connection: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("Load did not return after its connection was killed")
	}

	var n int64
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM test_hospital__cases").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d rows after the killed load (%v), want 0", n, err)
	}
	if e, err := s.Files(ctx, FileQuery{Hospital: h.ID}); err != nil || len(e) != 0 {
		t.Fatalf("ledger after the killed load: %+v, %v", e, err)
	}

	// The next run, and the same store too, go on.
	for i, st := range []*Store{open(t, url), s} {
		c, err := st.Load(ctx, f, cases, stream(all...))
		if i == 0 && (err != nil || c.Inserted != total || c.Updated != 0) {
			t.Fatalf("retry: %+v, %v; want %d inserted", c, err, total)
		}
		if i == 1 && !errors.Is(err, ErrAlreadyLoaded) {
			t.Fatalf("load after the retry: %v, want ErrAlreadyLoaded", err)
		}
	}
	var rows, keys int64
	if err := admin.QueryRow(ctx, "SELECT count(*), count(DISTINCT case_id) FROM test_hospital__cases").Scan(&rows, &keys); err != nil || rows != total || keys != total {
		t.Fatalf("after the retry: %d rows, %d keys (%v); want %d of each", rows, keys, err, total)
	}
	got := tableRows(t, s, h.ID, cases)
	for i := range all {
		if !equalRows(got[i], all[i]) {
			t.Fatalf("row %d: %v, want %v", i, got[i], all[i])
		}
	}
}
