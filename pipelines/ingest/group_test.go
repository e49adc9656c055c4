package ingest_test

import (
	"context"
	"database/sql"
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/pipelines/ingest"
	"github.com/wardml/ward/pipelines/ingest/fetch"
	"github.com/wardml/ward/pipelines/store"
	"github.com/wardml/ward/pipelines/synth"
)

// The whole group, as hospitals send it: `ward synth` (5 hospitals x 24
// months, with its dirt and correction files) in plaintext, encrypted by
// the real gpg and age command-line tools, dropped on the real OpenSSH
// sshd and loaded into PostgreSQL, and on ward's in-process SFTP server
// and loaded into SQLite. The tables hold exactly the good rows of the
// files, the rows rejected are the dirt synth put in, a correction file
// replaced the bills it re-sent, and a second run loads nothing.
func TestGroupEndToEnd(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("the whole group takes a while; it runs without -short and -race")
	}
	gpg := testenv.LookPath(t, "gpg", "gnupg")
	ageCLI := testenv.LookPath(t, "age", "age")
	// The contracts and keys of a mixed group (they do not depend on the
	// months), and the group's data in plaintext.
	g := newGroup(t, synth.WithMonths(1))
	plainDir := filepath.Join(t.TempDir(), "plain")
	plain, err := synth.Generate(context.Background(), plainDir, synth.WithEncryption("none"))
	if err != nil {
		t.Fatal(err)
	}
	encryptWithCLIs(t, g, plain, gpg, ageCLI)

	var want map[string]map[string]map[string]bool
	var wantRejected map[string]int
	want, wantRejected = oracle(t, g, plain)
	// Synth counts each kind of dirt; a row that two kinds hit (a bad age
	// and a bad date) is one rejected row.
	for _, h := range plain.Hospitals {
		if n, dirt := wantRejected[h.ID], h.Dirt.Rejected(); n > dirt || n < dirt*95/100 || n == 0 {
			t.Fatalf("%s: the oracle rejects %d rows, synth put in %d pieces of dirt that reject a row", h.ID, n, dirt)
		}
	}

	check := func(t *testing.T, r *rig, src fetch.Source) {
		sum := r.run(g, src, g.hs)
		total := sum.Total()
		if total.Loaded != plain.Files || total.Quarantined+total.Failed+total.Waiting+total.Refused+total.Duplicate != 0 || len(sum.Errors()) > 0 {
			t.Fatalf("first run: %+v (want %d files loaded)\n%s", total, plain.Files, messages(sum))
		}
		db := r.db()
		for _, h := range g.hs {
			res := hospitalResult(t, sum, h.ID)
			if res.Rejected != int64(wantRejected[h.ID]) {
				t.Errorf("%s: %d rows rejected, want %d (synth's dirt)", h.ID, res.Rejected, wantRejected[h.ID])
			}
			if n := count(t, db, "SELECT coalesce(sum(rejected), 0) FROM ward_files WHERE hospital = $1 AND state = 'loaded'", h.ID); n != int64(wantRejected[h.ID]) {
				t.Errorf("%s: the ledger counts %d rejected rows, want %d", h.ID, n, wantRejected[h.ID])
			}
			for _, tb := range h.Tables {
				if got, w := rows(t, db, h.ID, tb.Name), int64(len(want[h.ID][tb.Name])); got != w {
					t.Errorf("%s.%s: %d rows, want %d", h.ID, tb.Name, got, w)
				}
			}
			if res.Replaced == 0 {
				t.Errorf("%s: nothing replaced, but synth sent corrections", h.ID)
			}
		}
		checkCorrection(t, db, g, plain)
		if t.Failed() {
			return
		}

		again := r.run(g, src, g.hs)
		total = again.Total()
		if total.Skipped != plain.Files || total.Loaded+total.Fetched != 0 {
			t.Fatalf("second run: %+v, want all %d files skipped, none fetched", total, plain.Files)
		}
		if n := count(t, db, "SELECT count(*) FROM ward_files"); n != int64(plain.Files) {
			t.Fatalf("%d ledger entries after the second run, want %d", n, plain.Files)
		}
	}

	t.Run("sshd+postgres", func(t *testing.T) {
		s := testenv.StartSSHD(t)
		if out, err := exec.Command("cp", "-a", g.sum.SFTP+"/.", s.Root).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v\n%s", err, out)
		}
		src := dial(t, fetch.SFTPConfig{URL: s.URL(s.Root), Key: s.ClientKey, KnownHosts: s.KnownHosts})
		check(t, newRig(t, testenv.Postgres(t)), src)
	})
	t.Run("sftpd+sqlite", func(t *testing.T) {
		check(t, newRig(t, "sqlite:"+filepath.Join(t.TempDir(), "ward.db")), startSFTPD(t, g.sum.SFTP))
	})
}

// encryptWithCLIs replaces g's drop box with plain's files, each encrypted
// by gpg or age as its hospital's contract says.
func encryptWithCLIs(t *testing.T, g *group, plain *synth.Summary, gpg, ageCLI string) {
	home := t.TempDir()
	pgpPub, agePub := filepath.Join(g.dir, "keys", "ingest.pgp.pub"), filepath.Join(g.dir, "keys", "ingest.age.pub")
	type job struct{ in, out, kind string }
	var jobs []job
	for _, h := range g.hs {
		inbound := g.inbound(h.ID)
		if err := os.RemoveAll(inbound); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(inbound, 0o755); err != nil {
			t.Fatal(err)
		}
		src := filepath.Join(plain.SFTP, h.Inbound.Folder)
		names, err := os.ReadDir(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			suffix := map[string]string{"openpgp": ".gpg", "age": ".age"}[h.Inbound.Encryption]
			jobs = append(jobs, job{filepath.Join(src, n.Name()), filepath.Join(inbound, n.Name()+suffix), h.Inbound.Encryption})
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(jobs))
	next := make(chan job)
	for range 4 {
		wg.Go(func() {
			for j := range next {
				var cmd *exec.Cmd
				if j.kind == "openpgp" {
					cmd = exec.Command(gpg, "--homedir", home, "--batch", "--quiet", "--yes", "--trust-model", "always",
						"--recipient-file", pgpPub, "--output", j.out, "--encrypt", j.in)
				} else {
					cmd = exec.Command(ageCLI, "-R", agePub, "-o", j.out, j.in)
				}
				if out, err := cmd.CombinedOutput(); err != nil {
					errs <- fmt.Errorf("%s: %v\n%s", cmd, err, out)
				}
			}
		})
	}
	for _, j := range jobs {
		next <- j
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// oracle reads the plaintext files as a person would check them against
// the synthetic contracts: a row is bad when its age is out of range, a
// date does not parse, or its key came earlier in the same file (the
// kinds of dirt synth puts in). It returns each table's good keys and
// each hospital's count of bad rows.
func oracle(t *testing.T, g *group, plain *synth.Summary) (map[string]map[string]map[string]bool, map[string]int) {
	keys := map[string]map[string]map[string]bool{}
	rejected := map[string]int{}
	for _, h := range g.hs {
		keys[h.ID] = map[string]map[string]bool{}
		dir := filepath.Join(plain.SFTP, h.Inbound.Folder)
		names, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			tb := h.TableFor(n.Name())
			if keys[h.ID][tb.Name] == nil {
				keys[h.ID][tb.Name] = map[string]bool{}
			}
			recs := readCSV(t, filepath.Join(dir, n.Name()), tb.Delimiter)
			col := map[string]int{}
			for i, c := range recs[0] {
				col[c] = i
			}
			seen := map[string]bool{}
			for _, rec := range recs[1:] {
				bad := false
				if i, ok := col["age"]; ok && rec[i] != "" {
					a, err := strconv.Atoi(rec[i])
					bad = err != nil || a < 0 || a > 110
				}
				for _, c := range []string{"admitted_at", "birth_date"} {
					if i, ok := col[c]; ok && rec[i] != "" {
						if _, err := time.Parse(time.DateOnly, rec[i]); err != nil {
							bad = true
						}
					}
				}
				key := rec[col[tb.Key[0]]]
				if !bad && seen[key] {
					bad = true
				}
				if bad {
					rejected[h.ID]++
					continue
				}
				seen[key] = true
				keys[h.ID][tb.Name][key] = true
			}
		}
	}
	return keys, rejected
}

func readCSV(t *testing.T, file, delim string) [][]string {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cr := csv.NewReader(f)
	cr.Comma = []rune(delim)[0]
	recs, err := cr.ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return recs
}

// checkCorrection checks, for the first correction file of each
// hospital, that the bill in the database is the corrected one, and not
// the one its month's file sent.
func checkCorrection(t *testing.T, db *sql.DB, g *group, plain *synth.Summary) {
	for _, h := range g.hs {
		dir := filepath.Join(plain.SFTP, h.Inbound.Folder)
		fixes, _ := filepath.Glob(filepath.Join(dir, "cases_*_correction.csv"))
		if len(fixes) == 0 {
			t.Errorf("%s: synth sent no correction file", h.ID)
			continue
		}
		sort.Strings(fixes)
		recs := readCSV(t, fixes[0], h.Table("cases").Delimiter)
		id, bill := recs[1][0], recs[1][len(recs[1])-1]
		want, _ := strconv.ParseFloat(bill, 64)
		var got float64
		if err := db.QueryRow("SELECT total_bill FROM "+store.TableName(h.ID, "cases")+" WHERE case_id = $1", id).Scan(&got); err != nil {
			t.Fatalf("%s case %s: %v", h.ID, id, err)
		}
		if got != want {
			t.Errorf("%s case %s: bill %v, want the corrected %v", h.ID, id, got, want)
		}
		// The month's file sent another bill for it.
		months, _ := filepath.Glob(filepath.Join(dir, "cases_????-??.csv"))
		sent := math.NaN()
		for _, m := range months {
			for _, rec := range readCSV(t, m, h.Table("cases").Delimiter)[1:] {
				if rec[0] == id {
					sent, _ = strconv.ParseFloat(rec[len(rec)-1], 64)
				}
			}
		}
		if math.IsNaN(sent) || sent == want {
			t.Errorf("%s case %s: the month's file sent %v, the correction %v: not a correction", h.ID, id, sent, want)
		}
	}
}

func hospitalResult(t *testing.T, sum *ingest.Summary, id string) ingest.HospitalResult {
	for _, h := range sum.Hospitals {
		if h.Hospital == id {
			return h
		}
	}
	t.Fatalf("no result for %s", id)
	return ingest.HospitalResult{}
}

// messages lists what did not load, for a failure message.
func messages(sum *ingest.Summary) string {
	var b strings.Builder
	for _, h := range sum.Hospitals {
		if h.Error != "" {
			fmt.Fprintf(&b, "%s: %s\n", h.Hospital, h.Error)
		}
		for _, f := range h.Files {
			if f.Outcome != ingest.Loaded && f.Outcome != ingest.Skipped {
				fmt.Fprintln(&b, f.Message())
			}
		}
	}
	return b.String()
}
