package ingest_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/sftpd"
	"github.com/wardml/ward/internal/sftpd/sftptest"
	"github.com/wardml/ward/pipelines/ingest"
	"github.com/wardml/ward/pipelines/ingest/decrypt"
	"github.com/wardml/ward/pipelines/ingest/fetch"
	"github.com/wardml/ward/pipelines/store"
	"github.com/wardml/ward/pipelines/synth"
)

// cleanGroup is two hospitals, two months, no dirt: st-olaf sends OpenPGP
// extracts signed with its own key (inbound.signed_by), riverside sends
// age. Every row of it loads.
func cleanGroup(t *testing.T) *group {
	return newGroup(t, synth.WithHospitals(2), synth.WithMonths(2), synth.WithDirt(0), synth.WithSigning(true))
}

// dropBox copies the group's drop box to a new folder, where a test adds
// its files.
func dropBox(t *testing.T, g *group) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "sftp")
	if out, err := exec.Command("cp", "-a", g.sum.SFTP, dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	return dir
}

const casesHeader = "case_id,patient_id,doctor_id,admitted_at,admission_type,ward_class,age,planned_los,comorbidities,status,total_bill\n"

// casesCSV is a cases extract of n good rows, each passed through edit
// (which may spoil it) before it is written.
func casesCSV(n int, edit func(i int, cells []string) []string) []byte {
	var b bytes.Buffer
	b.WriteString(casesHeader)
	for i := 1; i <= n; i++ {
		cells := []string{fmt.Sprintf("C99-%07d", i), fmt.Sprintf("P99-%06d", i), "D99-0001", "2024-03-05", "elective", "A", "40", "3", "1", "completed", "1234.5"}
		if edit != nil {
			cells = edit(i, cells)
		}
		b.WriteString(strings.Join(cells, ",") + "\n")
	}
	return b.Bytes()
}

func ageSeal(t *testing.T, g *group, plain []byte) []byte {
	var b bytes.Buffer
	w, err := age.Encrypt(&b, g.age.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plain)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func pgpSeal(t *testing.T, to, signer *openpgp.Entity, plain []byte) []byte {
	var b bytes.Buffer
	w, err := openpgp.Encrypt(&b, openpgp.EntityList{to}, signer, &openpgp.FileHints{IsBinary: true}, &packet.Config{})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plain)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func newEntity(t *testing.T, name string) *openpgp.Entity {
	e, err := openpgp.NewEntity(name, "", name+"@example.invalid", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Each bad input of the issue, end to end through the pipeline on both
// engines: the file gets a message that names what is wrong, nothing of
// it is in the database, its report and ledger entry say why, and every
// good file of the same run is loaded.
func TestBadInputs(t *testing.T) {
	g := cleanGroup(t)
	random := make([]byte, 4096)
	rand.Read(random)
	good := casesCSV(200, nil)
	cases := []struct {
		name, hospital, file string
		content              func() []byte
		want                 string
		key                  bool
	}{
		{"wrong key", "st-olaf", "cases_2024-03.csv.gpg",
			func() []byte { return pgpSeal(t, newEntity(t, "someone else"), nil, good) },
			"wrong key: the file is encrypted to OpenPGP key", true},
		{"truncated ciphertext", "riverside", "cases_2024-03.csv.age",
			func() []byte { c := ageSeal(t, g, good); return c[:len(c)/2] },
			"not a valid age file, or a corrupt or truncated one", false},
		{"random bytes", "riverside", "cases_2024-03.csv.age",
			func() []byte { return random },
			"not an age file (no age-encryption.org header, binary or armored)", false},
		{"bad signature", "st-olaf", "cases_2024-03.csv.gpg",
			func() []byte { return pgpSeal(t, g.pgp, newEntity(t, "impostor"), good) },
			"bad signature: signed by key", false},
		{"wrong header", "riverside", "cases_2024-03.csv.age",
			func() []byte {
				return ageSeal(t, g, bytes.Replace(good, []byte("admitted_at"), []byte("admited_at"), 1))
			},
			`header does not match the contract's table cases: missing column "admitted_at"; unexpected column "admited_at"`, false},
		{"unparseable date", "riverside", "cases_2024-03.csv.age",
			func() []byte {
				return ageSeal(t, g, casesCSV(10, func(i int, c []string) []string {
					if i == 3 {
						c[3] = "2024-13-01"
					}
					return c
				}))
			},
			`1 of 10 rows rejected (10.0%, over max_rejected_rows 5%); first: row 3: admitted_at: not a date (want YYYY-MM-DD)`, false},
		{"out-of-range value", "riverside", "cases_2024-03.csv.age",
			func() []byte {
				return ageSeal(t, g, casesCSV(10, func(i int, c []string) []string {
					if i == 7 {
						c[6] = "150"
					}
					return c
				}))
			},
			`first: row 7: age: above the maximum 110`, false},
		{"duplicate keys", "riverside", "cases_2024-03.csv.age",
			func() []byte {
				return ageSeal(t, g, casesCSV(10, func(i int, c []string) []string {
					if i == 5 {
						c[0] = "C99-0000001"
					}
					return c
				}))
			},
			`first: row 5: case_id: duplicate key: first seen in row 1`, false},
		{"empty file", "riverside", "cases_2024-03.csv.age",
			func() []byte { return nil },
			"empty file (0 bytes): not an age file", false},
		{"line of 10 MB", "riverside", "cases_2024-03.csv.age",
			func() []byte {
				return ageSeal(t, g, casesCSV(3, func(i int, c []string) []string {
					if i == 2 {
						c[9] = strings.Repeat("x", 10<<20)
					}
					return c
				}))
			},
			"row 2: longer than 1 MiB without a line end", false},
		{"invalid UTF-8", "riverside", "cases_2024-03.csv.age",
			func() []byte {
				return ageSeal(t, g, casesCSV(10, func(i int, c []string) []string {
					if i == 4 {
						c[5] = "B\xff"
					}
					return c
				}))
			},
			"first: row 4: ward_class: not valid UTF-8", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			engines(t, func(t *testing.T, url string) {
				box := dropBox(t, g)
				bad := filepath.Join(box, tc.hospital, "inbound", tc.file)
				if err := os.WriteFile(bad, tc.content(), 0o644); err != nil {
					t.Fatal(err)
				}
				r := newRig(t, url)
				sum := r.run(g, fetch.Dir(box), g.hs)
				f := file(t, sum, tc.file)
				if f.Outcome != ingest.Quarantined || !strings.Contains(f.Reason, tc.want) || f.KeyError != tc.key {
					t.Fatalf("%s: %s (key error %v)\nwant it quarantined with %q", tc.file, f.Message(), f.KeyError, tc.want)
				}
				if !strings.HasSuffix(f.Message(), "; file quarantined, nothing loaded") || !strings.HasPrefix(f.Message(), "ingest "+tc.hospital+"/"+tc.file+": ") {
					t.Errorf("message %q", f.Message())
				}
				checkGoodLoaded(t, r, g, sum, 0, 1)
				db := r.db()
				if n := count(t, db, "SELECT count(*) FROM "+store.TableName(tc.hospital, "cases")+" WHERE _ward_file = $1", f.SHA256); n != 0 {
					t.Errorf("%d rows of the quarantined file in the database", n)
				}
				var state, reason string
				if err := db.QueryRow("SELECT state, reason FROM ward_files WHERE name = $1", tc.file).Scan(&state, &reason); err != nil || state != "quarantined" || reason != f.Reason {
					t.Errorf("ledger: %s %q %v", state, reason, err)
				}
				report, err := os.ReadFile(f.Report)
				if err != nil || !strings.Contains(string(report), tc.want) {
					t.Errorf("report %s: %v\n%s", f.Report, err, report)
				}
			})
		})
	}
}

// checkGoodLoaded checks that every file of the clean group loaded, with
// all its rows, beside quarantined bad ones.
func checkGoodLoaded(t *testing.T, r *rig, g *group, sum *ingest.Summary, more, quarantined int) {
	t.Helper()
	total := sum.Total()
	if total.Loaded != g.sum.Files+more || total.Quarantined != quarantined || total.Failed != 0 {
		t.Fatalf("%+v: want the %d good files and %d more loaded, %d quarantined\n%s", total, g.sum.Files, more, quarantined, messages(sum))
	}
	db := r.db()
	for _, h := range g.sum.Hospitals {
		for table, want := range map[string]int{"cases": h.Cases, "patients": h.Patients, "doctors": h.Doctors} {
			if got := rows(t, db, h.ID, table); got != int64(want) {
				t.Errorf("%s.%s: %d rows, want %d", h.ID, table, got, want)
			}
		}
	}
}

// A wrong WARD_PGP_KEY quarantines every file of the hospitals it should
// decrypt, and the summary says that the key, not the files, is likely at
// fault; the age hospital loads. With the right key the next run loads
// them all.
func TestMisconfiguredKey(t *testing.T) {
	g := cleanGroup(t)
	r := newRig(t, "sqlite:"+filepath.Join(t.TempDir(), "ward.db"))
	right := g.keys
	wrong := newEntity(t, "not ward")
	keyFile := filepath.Join(t.TempDir(), "wrong.pgp")
	var b bytes.Buffer
	if err := wrong.SerializePrivate(&b, nil); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(keyFile, b.Bytes(), 0o600)
	k, err := decrypt.Load(decrypt.WithPGPKey(keyFile, ""), decrypt.WithAgeIdentity(filepath.Join(g.dir, "keys", "ingest.age")))
	if err != nil {
		t.Fatal(err)
	}
	g.keys = k
	sum := r.run(g, fetch.Dir(g.sum.SFTP), g.hs)
	olaf, river := hospitalResult(t, sum, "st-olaf"), hospitalResult(t, sum, "riverside")
	if olaf.Quarantined != g.summary("st-olaf").Files || olaf.Loaded != 0 || !strings.Contains(olaf.KeyProblem, "WARD_PGP_KEY is likely the wrong key") {
		t.Fatalf("st-olaf: %+v", olaf)
	}
	if river.Loaded != g.summary("riverside").Files || river.KeyProblem != "" {
		t.Fatalf("riverside: %+v", river)
	}
	g.keys = right
	sum = r.run(g, fetch.Dir(g.sum.SFTP), g.hs)
	if olaf = hospitalResult(t, sum, "st-olaf"); olaf.Loaded != g.summary("st-olaf").Files || olaf.KeyProblem != "" {
		t.Fatalf("st-olaf with the right key: %+v", olaf)
	}
	if river = hospitalResult(t, sum, "riverside"); river.Skipped != g.summary("riverside").Files {
		t.Fatalf("riverside again: %+v", river)
	}
}

// A file still being written waits for a later run; the rest loads.
func TestGrowingFileWaits(t *testing.T) {
	g := cleanGroup(t)
	box := dropBox(t, g)
	grow := filepath.Join(box, "riverside", "inbound", "cases_2024-03.csv.age")
	f, err := os.Create(grow)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
				f.Write([]byte("age-encryption.org/v1\n"))
			}
		}
	}()
	r := newRig(t, "sqlite:"+filepath.Join(t.TempDir(), "ward.db"))
	sum := r.run(g, fetch.Dir(box), g.hs, ingest.WithSettle(300*time.Millisecond))
	close(stop)
	<-done
	w := file(t, sum, "cases_2024-03.csv.age")
	if w.Outcome != ingest.Waiting || !strings.Contains(w.Reason, "still being written") {
		t.Fatalf("growing file: %s", w.Message())
	}
	checkGoodLoaded(t, r, g, sum, 0, 0)
	if n := count(t, r.db(), "SELECT count(*) FROM ward_files WHERE name = 'cases_2024-03.csv.age'"); n != 0 {
		t.Fatalf("the growing file is in the ledger")
	}
}

// A server that lists names that would climb out of the hospital's
// folder: pkg/sftp's client keeps only the last element of a listed name
// ("../../x" is "x", asked for inside the folder, where the server has no
// such file), and ward refuses what is left of a path (..\x). Nothing
// outside the folder is read, and the rest loads.
func TestPathInNameIsRefused(t *testing.T) {
	g := cleanGroup(t)
	box := dropBox(t, g)
	// What the climbing name points at: a file the server must not serve.
	if err := os.WriteFile(filepath.Join(box, "cases_2024-03.csv.age"), ageSeal(t, g, casesCSV(10, nil)), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := &sftptest.Hostile{Root: box, Extra: []string{"../../cases_2024-03.csv.age", `..\cases_2024-04.csv.age`}}
	s := sftptest.Start(t, box, sftpd.WithHandlers(srv.Handlers()))
	src := dial(t, fetch.SFTPConfig{URL: s.URL, Key: s.Key, KnownHosts: s.KnownHosts})
	r := newRig(t, "sqlite:"+filepath.Join(t.TempDir(), "ward.db"))
	sum := r.run(g, src, []*contract.Hospital{g.hospital("riverside")})
	river := hospitalResult(t, sum, "riverside")
	if river.Refused != 1 || !strings.Contains(river.Files[0].Message(), `file name "..\\cases_2024-04.csv.age" contains a path separator; refused`) {
		t.Fatalf("riverside: %s", messages(sum))
	}
	climbed := file(t, sum, "cases_2024-03.csv.age")
	if climbed.Outcome != ingest.Failed || !strings.Contains(climbed.Reason, "/riverside/inbound/cases_2024-03.csv.age: file does not exist") {
		t.Fatalf("the climbing name: %s", climbed.Message())
	}
	if river.Loaded != g.summary("riverside").Files {
		t.Fatalf("riverside: %d files loaded, want %d", river.Loaded, g.summary("riverside").Files)
	}
	if n := count(t, r.db(), "SELECT count(*) FROM riverside__cases WHERE case_id LIKE 'C99-%'"); n != 0 {
		t.Fatalf("%d rows from outside the folder", n)
	}
	for _, p := range srv.Opened() {
		if !strings.HasPrefix(p, "/riverside/inbound/") || strings.Contains(p, "..") {
			t.Fatalf("the server was asked for %s", p)
		}
	}
}

// The same content under another name is recognised: recorded as a
// duplicate, not loaded again, and skipped by the next run.
func TestSameContentUnderAnotherName(t *testing.T) {
	g := cleanGroup(t)
	engines(t, func(t *testing.T, url string) {
		box := dropBox(t, g)
		inbound := filepath.Join(box, "riverside", "inbound")
		if err := os.WriteFile(filepath.Join(inbound, "cases_2024-02b.csv.age"), mustRead(t, filepath.Join(inbound, "cases_2024-02.csv.age")), 0o644); err != nil {
			t.Fatal(err)
		}
		r := newRig(t, url)
		sum := r.run(g, fetch.Dir(box), g.hs)
		f := file(t, sum, "cases_2024-02b.csv.age")
		if f.Outcome != ingest.Duplicate || !strings.Contains(f.Reason, "was loaded as cases_2024-02.csv.age on ") {
			t.Fatalf("%s", f.Message())
		}
		checkGoodLoaded(t, r, g, sum, 0, 0)
		var state string
		if err := r.db().QueryRow("SELECT state FROM ward_files WHERE name = 'cases_2024-02b.csv.age'").Scan(&state); err != nil || state != "duplicate" {
			t.Fatalf("ledger: %q %v", state, err)
		}
		sum = r.run(g, fetch.Dir(box), g.hs)
		if f = file(t, sum, "cases_2024-02b.csv.age"); f.Outcome != ingest.Skipped {
			t.Fatalf("next run: %s", f.Message())
		}
	})
}
