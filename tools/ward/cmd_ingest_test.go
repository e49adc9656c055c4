package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	"golang.org/x/crypto/ssh/knownhosts"
	_ "modernc.org/sqlite"

	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/pipelines/ingest"
	"github.com/wardml/ward/pipelines/store"
	"github.com/wardml/ward/pipelines/synth"
)

// asWard makes the test binary act as ward, so that tests can run real
// ward processes side by side.
const asWard = "WARD_TEST_AS_WARD"

func TestMain(m *testing.M) {
	if os.Getenv(asWard) == "1" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Environ()))
	}
	testenv.Main(m)
}

// ingestGroup writes a synthetic group and returns it with the
// environment that points ward ingest at it.
func ingestGroup(t *testing.T, db string, opts ...synth.Option) (*synth.Summary, []string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "group")
	sum, err := synth.Generate(context.Background(), dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{
		"WARD_HOSPITALS=" + sum.Contracts,
		"WARD_DATABASE=" + db,
		"WARD_STAGING=" + filepath.Join(t.TempDir(), "staging"),
	}
	for key, file := range map[string]string{"WARD_PGP_KEY": "ingest.pgp", "WARD_AGE_IDENTITY": "ingest.age"} {
		if file = filepath.Join(dir, "keys", file); fileExists(file) {
			env = append(env, key+"="+file)
		}
	}
	return sum, env
}

func fileExists(file string) bool {
	_, err := os.Stat(file)
	return err == nil
}

type ingestOutput struct {
	ingest.Summary
	Total ingest.HospitalResult `json:"total"`
}

func ingestJSON(t *testing.T, out []byte) ingestOutput {
	t.Helper()
	var o ingestOutput
	if err := json.Unmarshal(out, &o); err != nil {
		t.Fatalf("--output json: %v\n%s", err, out)
	}
	return o
}

func openDB(t *testing.T, url string) *sql.DB {
	driver, dsn := "pgx", url
	if p, ok := strings.CutPrefix(url, "sqlite:"); ok {
		driver, dsn = "sqlite", p
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Two ward ingest processes at once on one database never load a file
// twice: the second waits for each hospital's lock, then finds the files
// loaded; between them every file is loaded once.
func TestIngestTwoProcessesAtOnce(t *testing.T) {
	for _, engine := range []string{"postgres", "sqlite"} {
		t.Run(engine, func(t *testing.T) {
			url := "sqlite:" + filepath.Join(t.TempDir(), "ward.db")
			if engine == "postgres" {
				url = testenv.Postgres(t)
			}
			sum, env := ingestGroup(t, url, synth.WithMonths(6))
			var cmds [2]*exec.Cmd
			var outs, errs [2]bytes.Buffer
			for i := range cmds {
				cmds[i] = exec.Command(os.Args[0], "ingest", "--all", "--from", sum.SFTP, "--settle", "10ms", "--output", "json", "--log-format", "json")
				cmds[i].Env = append(append(os.Environ(), asWard+"=1"), env...)
				cmds[i].Stdout, cmds[i].Stderr = &outs[i], &errs[i]
				if err := cmds[i].Start(); err != nil {
					t.Fatal(err)
				}
			}
			loaded, skipped := 0, 0
			for i, c := range cmds {
				if err := c.Wait(); err != nil {
					t.Fatalf("process %d: %v\n%s", i, err, errs[i].String())
				}
				o := ingestJSON(t, outs[i].Bytes())
				loaded += o.Total.Loaded
				skipped += o.Total.Skipped
			}
			if loaded != sum.Files || skipped != sum.Files {
				t.Fatalf("between them: %d loaded, %d skipped; want each of the %d files loaded once and skipped once", loaded, skipped, sum.Files)
			}
			db := openDB(t, url)
			var n int
			if err := db.QueryRow("SELECT count(*) FROM ward_files WHERE state = 'loaded'").Scan(&n); err != nil || n != sum.Files {
				t.Fatalf("ledger: %d loaded, %v", n, err)
			}
			for _, h := range sum.Hospitals {
				if err := db.QueryRow("SELECT count(*) FROM " + store.TableName(h.ID, "doctors")).Scan(&n); err != nil || n != h.Doctors {
					t.Errorf("%s doctors: %d, %v; want %d", h.ID, n, err, h.Doctors)
				}
			}
			waited := strings.Contains(errs[0].String()+errs[1].String(), "waiting up to 30m0s for it to finish")
			t.Logf("one process waited for the other's lock: %v", waited)
		})
	}
}

// The exit codes, the summary and --strict; a quarantined file is listed
// with its report.
func TestIngestCommand(t *testing.T) {
	url := "sqlite:" + filepath.Join(t.TempDir(), "ward.db")
	sum, env := ingestGroup(t, url, synth.WithHospitals(2), synth.WithMonths(2), synth.WithEncryption("age"), synth.WithDirt(0))
	bad := filepath.Join(sum.SFTP, "riverside", "inbound", "cases_2024-03.csv.age")
	if err := os.WriteFile(bad, []byte("not age at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	ingestCmd := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append([]string{"ingest", "--from", sum.SFTP, "--settle", "10ms", "--log-format", "json"}, args...), &stdout, &stderr, env)
		return code, stdout.String(), stderr.String()
	}
	code, out, logs := ingestCmd("--all")
	if code != exit.OK {
		t.Fatalf("exit %d\n%s\n%s", code, out, logs)
	}
	for _, want := range []string{"hospital  fetched  loaded  skipped  duplicate  quarantined", "riverside", "total",
		"ingest riverside/cases_2024-03.csv.age: not an age file (no age-encryption.org header, binary or armored); file quarantined, nothing loaded",
		"riverside: validation reports of the quarantined files:", "cases_2024-03.csv.age.validation.txt"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(logs, `"event.action":"ingest.file","event.outcome":"success","ward.hospital":"st-olaf","ward.file":"patients_2024-01.csv.age"`) ||
		!strings.Contains(logs, `"file.hash.sha256":"`) {
		t.Errorf("no ECS line per file:\n%s", logs)
	}

	code, out, _ = ingestCmd("--all", "--strict", "--output", "json")
	o := ingestJSON(t, []byte(out))
	if code != exit.Failure || o.Total.Quarantined != 1 || o.Total.Skipped != sum.Files || len(o.Total.Reports) != 1 {
		t.Fatalf("--strict: exit %d, total %+v", code, o.Total)
	}

	code, _, logs = ingestCmd("--hospital", "nowhere")
	if code != exit.Config || !strings.Contains(logs, `hospital "nowhere": no nowhere/hospital.yaml`) {
		t.Fatalf("unknown hospital: exit %d\n%s", code, logs)
	}
	code, _, logs = ingestCmd()
	if code != exit.Config || !strings.Contains(logs, "name a hospital with --hospital ID, or pass --all") {
		t.Fatalf("no hospital: exit %d\n%s", code, logs)
	}
}

// The SFTP server's host key changed: ward refuses to connect, says so
// and what to do, exits 2 and changes nothing.
func TestIngestChangedHostKey(t *testing.T) {
	s := testenv.StartSSHD(t)
	url := "sqlite:" + filepath.Join(t.TempDir(), "ward.db")
	sum, env := ingestGroup(t, url, synth.WithHospitals(1), synth.WithMonths(1))
	if out, err := exec.Command("cp", "-a", sum.SFTP+"/.", s.Root).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	// known_hosts holds another key for the server's address.
	other := testenv.StartSSHD(t)
	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(knownHosts, []byte(knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, other.HostKey)+"\n"), 0o600)
	env = append(env, "WARD_SFTP="+s.URL(s.Root), "WARD_SFTP_KEY="+s.ClientKey, "WARD_KNOWN_HOSTS="+knownHosts)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"ingest", "--all", "--settle", "10ms"}, &stdout, &stderr, env)
	if code != exit.Config || !strings.Contains(stderr.String(), fmt.Sprintf("the host key of the SFTP server %s has CHANGED", s.Addr)) {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	if _, err := os.Stat(strings.TrimPrefix(url, "sqlite:")); err == nil {
		var n int
		if err := openDB(t, url).QueryRow("SELECT count(*) FROM ward_files").Scan(&n); err == nil && n > 0 {
			t.Fatalf("%d files in the ledger", n)
		}
	}
	// With the right known_hosts, the same command loads everything.
	env = append(env, "WARD_KNOWN_HOSTS="+s.KnownHosts)
	stdout.Reset()
	if code := run(context.Background(), []string{"ingest", "--all", "--settle", "10ms", "--output", "json"}, &stdout, &stderr, env); code != exit.OK {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	if o := ingestJSON(t, stdout.Bytes()); o.Total.Loaded != sum.Files {
		t.Fatalf("loaded %d of %d", o.Total.Loaded, sum.Files)
	}
}
