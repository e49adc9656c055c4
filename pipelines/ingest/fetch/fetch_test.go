package fetch

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/sftpd"
	"github.com/wardml/ward/internal/sftpd/sftptest"
	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/pipelines/ingest/staging"
)

// server is an SFTP server for a test: its settings, and the local folder
// that is its base path.
type server struct {
	cfg     SFTPConfig
	root    string
	addr    string
	hostKey ssh.PublicKey
}

// The same cases run against OpenSSH's sshd and ward's in-process server.
var servers = map[string]func(t *testing.T) *server{
	"sshd": func(t *testing.T) *server {
		s := testenv.StartSSHD(t)
		return &server{cfg: SFTPConfig{URL: s.URL(s.Root), Key: s.ClientKey, KnownHosts: s.KnownHosts}, root: s.Root, addr: s.Addr, hostKey: s.HostKey}
	},
	"sftpd": func(t *testing.T) *server {
		root := filepath.Join(t.TempDir(), "root")
		os.Mkdir(root, 0o755)
		s := sftptest.Start(t, root)
		return &server{cfg: SFTPConfig{URL: s.URL, Key: s.Key, KnownHosts: s.KnownHosts}, root: root, addr: s.Addr, hostKey: s.HostKey}
	},
}

func eachServer(t *testing.T, test func(t *testing.T, s *server)) {
	for _, name := range []string{"sshd", "sftpd"} {
		t.Run(name, func(t *testing.T) { test(t, servers[name](t)) })
	}
}

func dial(t *testing.T, s *server, opts ...DialOption) *SFTP {
	t.Helper()
	c, err := Dial(context.Background(), s.cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

const hospitalYAML = `
id: st-olaf
inbound:
  folder: st-olaf/inbound
  encryption: openpgp
  ready: %s
  predictions: "predictions_*.jsonl*"
tables:
  - name: patients
    pattern: "patients_*.csv*"
    key: [patient_id]
    columns: [{name: patient_id, type: string, required: true}]
  - name: cases
    pattern: "cases_*.csv*"
    key: [case_id]
    columns:
      - {name: case_id, type: string, required: true}
      - {name: total_bill, type: float}
training: {table: cases, target: total_bill, features: [{name: case_id, kind: categorical}]}
`

func hospital(t *testing.T, ready string) *contract.Hospital {
	t.Helper()
	h, err := contract.Parse([]byte(fmt.Sprintf(hospitalYAML, ready)), "hospital.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// drop writes a file into the hospital's inbound folder under root, with
// a .done marker when marked, and returns its bytes.
func drop(t *testing.T, root, name string, size int, marked bool) []byte {
	t.Helper()
	dir := filepath.Join(root, "st-olaf", "inbound")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, size)
	rand.Read(b)
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if marked {
		if err := os.WriteFile(filepath.Join(dir, name+".done"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func store(t *testing.T) *staging.Store {
	t.Helper()
	st, err := staging.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func names[T any](xs []T, name func(T) string) string {
	var s []string
	for _, x := range xs {
		s = append(s, name(x))
	}
	return strings.Join(s, " ")
}

// staged lists the staged data files (not sidecars, not temporary files).
func staged(t *testing.T, st *staging.Store) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(st.Dir(), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".json") {
			rel, _ := filepath.Rel(st.Dir(), p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func TestListAndFetch(t *testing.T) {
	check := func(t *testing.T, src Source, root string) {
		h := hospital(t, "either")
		cases := drop(t, root, "cases_2026-11.csv.gpg", 300_000, true)
		patients := drop(t, root, "patients_2026-11.csv.gpg", 1000, false)
		preds := drop(t, root, "predictions_2026-11.jsonl", 500, true)
		drop(t, root, "notes.txt", 10, false)
		l, err := List(context.Background(), src, h, WithSettle(200*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		if got := names(l.Ready, func(f File) string { return f.Name + ":" + f.Table }); got != "cases_2026-11.csv.gpg:cases predictions_2026-11.jsonl: patients_2026-11.csv.gpg:patients" {
			t.Fatalf("ready: %s", got)
		}
		if len(l.Waiting) != 0 || len(l.Refused) != 0 || strings.Join(l.Ignored, " ") != "notes.txt" {
			t.Fatalf("listing: %+v", l)
		}
		st := store(t)
		out := Fetch(context.Background(), src, st, h, l.Ready)
		want := [][]byte{cases, preds, patients}
		for i, f := range out {
			if f.Err != nil {
				t.Fatal(f.Err)
			}
			if f.Entry.SHA256 != sha(want[i]) || f.Entry.Hospital != "st-olaf" || f.Entry.Name != f.File.Name || f.Entry.Table != f.File.Table {
				t.Fatalf("entry %d: %+v", i, f.Entry)
			}
			if f.Entry.Source != src.URL("st-olaf/inbound", f.File.Name) {
				t.Fatalf("source %s", f.Entry.Source)
			}
			if got, _ := os.ReadFile(f.Entry.Path); !bytes.Equal(got, want[i]) {
				t.Fatalf("staged bytes of %s differ", f.File.Name)
			}
		}
	}
	eachServer(t, func(t *testing.T, s *server) {
		c := dial(t, s)
		check(t, c, s.root)
		if want := "sftp://"; !strings.HasPrefix(c.URL("st-olaf/inbound", "x"), want) || !strings.HasSuffix(c.URL("st-olaf/inbound", "x"), "/st-olaf/inbound/x") {
			t.Fatalf("URL %s", c.URL("st-olaf/inbound", "x"))
		}
	})
	t.Run("dir", func(t *testing.T) {
		root := t.TempDir()
		check(t, Dir(root), root)
	})
}

// A file still being written is left for a later run, whichever way the
// contract tells complete files.
func TestGrowingFileWaits(t *testing.T) {
	test := func(t *testing.T, src Source, root string) {
		drop(t, root, "cases_2026-11.csv", 1000, false)
		file := filepath.Join(root, "st-olaf", "inbound", "cases_2026-11.csv")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return
			}
			defer f.Close()
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
					f.Write(bytes.Repeat([]byte("x"), 100))
				}
			}
		}()
		l, err := List(context.Background(), src, hospital(t, "stable"), WithSettle(300*time.Millisecond))
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Ready) != 0 || len(l.Waiting) != 1 || !strings.HasPrefix(l.Waiting[0].Reason, "still being written: ") || !strings.HasSuffix(l.Waiting[0].Reason, " apart") {
			t.Fatalf("growing file: %+v", l)
		}
		// Once it stops growing it is ready.
		l, err = List(context.Background(), src, hospital(t, "stable"), WithSettle(1100*time.Millisecond))
		if err != nil || len(l.Ready) != 1 {
			t.Fatalf("stopped file: %+v %v", l, err)
		}
		// Under ready: marker, only the marker counts.
		l, err = List(context.Background(), src, hospital(t, "marker"), WithSettle(time.Hour))
		if err != nil || len(l.Waiting) != 1 || l.Waiting[0].Reason != "no cases_2026-11.csv.done marker yet (inbound.ready: marker)" {
			t.Fatalf("marker: %+v %v", l, err)
		}
		os.WriteFile(file+".done", nil, 0o644)
		// With a marker there is no second listing to wait for.
		start := time.Now()
		l, err = List(context.Background(), src, hospital(t, "either"), WithSettle(time.Hour))
		if err != nil || len(l.Ready) != 1 || time.Since(start) > time.Minute {
			t.Fatalf("marked: %+v %v", l, err)
		}
	}
	eachServer(t, func(t *testing.T, s *server) { test(t, dial(t, s), s.root) })
	t.Run("dir", func(t *testing.T) {
		root := t.TempDir()
		test(t, Dir(root), root)
	})
}

func TestUnsafeNamesAreRefused(t *testing.T) {
	test := func(t *testing.T, src Source, root string) {
		drop(t, root, "cases_2026-11.csv", 10, true)
		drop(t, root, "..cases_2026-10.csv", 10, true)
		drop(t, root, "cases_\x1b[2J2026-09.csv", 10, true)
		l, err := List(context.Background(), src, hospital(t, "either"))
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Ready) != 1 || l.Ready[0].Name != "cases_2026-11.csv" {
			t.Fatalf("ready: %+v", l.Ready)
		}
		got := names(l.Refused, func(e error) string { return e.Error() + "\n" })
		for _, want := range []string{
			`file name "..cases_2026-10.csv" contains ..; refused (rename it on the server)`,
			`file name "cases_\x1b[2J2026-09.csv" contains a control character; refused (rename it on the server)`,
		} {
			if !strings.Contains(got, want) {
				t.Errorf("refused:\n%s\nwant %s", got, want)
			}
		}
		// The marker files of unsafe names are refused too, not fetched.
		if len(l.Refused) != 4 {
			t.Errorf("%d refused, want 4 (two files, two markers)", len(l.Refused))
		}
	}
	eachServer(t, func(t *testing.T, s *server) { test(t, dial(t, s), s.root) })
	t.Run("dir", func(t *testing.T) {
		root := t.TempDir()
		test(t, Dir(root), root)
	})
}

func TestCheckName(t *testing.T) {
	for name, want := range map[string]string{
		"../cases_2026-11.csv":   `file name "../cases_2026-11.csv" contains a path separator`,
		"cases/../../etc/passwd": `file name "cases/../../etc/passwd" contains a path separator`,
		`..\cases.csv`:           `file name "..\\cases.csv" contains a path separator`,
		"..":                     `file name ".." is not a file name`,
		"cases..csv":             `file name "cases..csv" contains ..`,
		"cases\n.csv":            `file name "cases\n.csv" contains a control character`,
		"cases\u0085.csv":        `file name "cases\u0085.csv" contains a control character`,
		"cases\xff.csv":          `file name "cases\xff.csv" is not valid UTF-8`,
	} {
		if err := CheckName(name); err == nil || err.Error() != want {
			t.Errorf("CheckName(%q) = %v, want %s", name, err, want)
		}
	}
	for _, ok := range []string{"cases_2026-11.csv.gpg", "Cases 2026-11 (final).csv", "patients_é.csv.age"} {
		if err := CheckName(ok); err != nil {
			t.Errorf("CheckName(%q) = %v", ok, err)
		}
	}
}

// A server that lists names with ../ in them (OpenSSH cannot: no file
// name holds a /). pkg/sftp keeps only the last element of a listed name;
// the test shows that no request leaves the inbound folder.
func TestHostileServerNames(t *testing.T) {
	hs := &sftptest.Hostile{Extra: []string{"../../../etc/cases_2026-11.csv", "cases_2026-12.csv/../../../x", "..cases_2026-10.csv"}}
	s := sftptest.Start(t, t.TempDir(), sftpd.WithHandlers(hs.Handlers()))
	c := dial(t, &server{cfg: SFTPConfig{URL: s.URL, Key: s.Key, KnownHosts: s.KnownHosts}})
	h := hospital(t, "stable")
	l, err := List(context.Background(), c, h, WithSettle(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Ready) != 1 || l.Ready[0].Name != "cases_2026-11.csv" || len(l.Refused) != 1 || !strings.Contains(l.Refused[0].Error(), `file name "..cases_2026-10.csv" contains ..`) {
		t.Fatalf("listing: ready %+v refused %v ignored %v", l.Ready, l.Refused, l.Ignored)
	}
	out := Fetch(context.Background(), c, store(t), h, l.Ready)
	if out[0].Err != nil {
		t.Fatal(out[0].Err)
	}
	if got := strings.Join(hs.Opened(), " "); got != "/st-olaf/inbound/cases_2026-11.csv" {
		t.Fatalf("the server was asked for %s", got)
	}
}

func TestHostKeyIsChecked(t *testing.T) {
	eachServer(t, func(t *testing.T, s *server) {
		dir := t.TempDir()
		other, _ := sftpd.WriteKey(filepath.Join(dir, "other"))
		host, port, _ := net.SplitHostPort(s.addr)

		changed := filepath.Join(dir, "changed")
		os.WriteFile(changed, []byte(knownhosts.Line([]string{knownhosts.Normalize(s.addr)}, other)+"\n"), 0o600)
		cfg := s.cfg
		cfg.KnownHosts = changed
		_, err := Dial(context.Background(), cfg)
		want := fmt.Sprintf("the host key of the SFTP server %s has CHANGED: it offered ssh-ed25519 %s, but WARD_KNOWN_HOSTS (%s) holds ssh-ed25519 %s (line 1); refusing to connect (someone may be impersonating the server). If the key was changed on purpose, replace those lines with the output of ssh-keyscan -p %s %s",
			s.addr, ssh.FingerprintSHA256(s.hostKey), changed, ssh.FingerprintSHA256(other), port, host)
		if err == nil || err.Error() != want {
			t.Fatalf("changed host key:\n%v\nwant:\n%s", err, want)
		}

		unknown := filepath.Join(dir, "unknown")
		os.WriteFile(unknown, []byte(knownhosts.Line([]string{"sftp.example.org"}, s.hostKey)+"\n"), 0o600)
		cfg.KnownHosts = unknown
		_, err = Dial(context.Background(), cfg)
		want = fmt.Sprintf("the SFTP server %s is not in WARD_KNOWN_HOSTS (%s): refusing to trust its host key ssh-ed25519 %s on first use. If that is the server's key (check the fingerprint with its administrator), add it: ssh-keyscan -p %s %s >> %s",
			s.addr, unknown, ssh.FingerprintSHA256(s.hostKey), port, host, unknown)
		if err == nil || err.Error() != want {
			t.Fatalf("unknown host:\n%v\nwant:\n%s", err, want)
		}

		cfg.KnownHosts = ""
		if _, err = Dial(context.Background(), cfg); err == nil || !strings.HasPrefix(err.Error(), "WARD_KNOWN_HOSTS is not set") {
			t.Fatalf("no known_hosts: %v", err)
		}
	})
}

func TestClientKeyIsChecked(t *testing.T) {
	eachServer(t, func(t *testing.T, s *server) {
		other := filepath.Join(t.TempDir(), "other")
		pub, _ := sftpd.WriteKey(other)
		cfg := s.cfg
		cfg.Key = other
		_, err := Dial(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), "refused the key WARD_SFTP_KEY ("+other+", ssh-ed25519 "+ssh.FingerprintSHA256(pub)+") for user ") {
			t.Fatalf("wrong key: %v", err)
		}
	})
	_, err := Dial(context.Background(), SFTPConfig{URL: "sftp://ward@127.0.0.1:1/", Key: "/nonexistent", KnownHosts: "/nonexistent"})
	if err == nil || !strings.HasPrefix(err.Error(), "WARD_SFTP_KEY: open /nonexistent") {
		t.Fatalf("missing key: %v", err)
	}
}

func TestMissingFolder(t *testing.T) {
	eachServer(t, func(t *testing.T, s *server) {
		c := dial(t, s)
		_, err := List(context.Background(), c, hospital(t, "either"))
		if err == nil || !strings.HasPrefix(err.Error(), "list "+c.URL("st-olaf/inbound", "")+": ") {
			t.Fatalf("missing folder: %v", err)
		}
	})
}

// The connection dies mid-download: nothing is staged, the error says so,
// and the next run completes.
func TestConnectionCutMidDownload(t *testing.T) {
	eachServer(t, func(t *testing.T, s *server) {
		h := hospital(t, "marker")
		body := drop(t, s.root, "cases_2026-11.csv.gpg", 4<<20, true)
		st := store(t)
		cut := dial(t, s, WithDialer(sftptest.CutAfter(1<<20)))
		l, err := List(context.Background(), cut, h)
		if err != nil {
			t.Fatal(err)
		}
		out := Fetch(context.Background(), cut, st, h, l.Ready)
		if out[0].Err == nil || !strings.HasSuffix(out[0].Err.Error(), "; nothing staged, the next run fetches it again") || !strings.HasPrefix(out[0].Err.Error(), "download "+cut.URL("st-olaf/inbound", "cases_2026-11.csv.gpg")+": got ") {
			t.Fatalf("cut download: %v", out[0].Err)
		}
		if got := staged(t, st); len(got) != 0 {
			t.Fatalf("staged after the cut: %v", got)
		}
		// The next run, on a new connection.
		c := dial(t, s)
		out = Fetch(context.Background(), c, st, h, l.Ready)
		if out[0].Err != nil || out[0].Entry.SHA256 != sha(body) {
			t.Fatalf("next run: %+v", out[0])
		}
		if got := staged(t, st); len(got) != 1 {
			t.Fatalf("staged: %v", got)
		}
	})
}

// Many files, a few at a time, all staged intact (run with -race).
func TestConcurrentDownloads(t *testing.T) {
	eachServer(t, func(t *testing.T, s *server) {
		h := hospital(t, "marker")
		want := map[string]string{}
		for i := range 12 {
			name := fmt.Sprintf("cases_2026-%02d.csv.gpg", i+1)
			want[name] = sha(drop(t, s.root, name, 50_000+i*40_000, true))
		}
		c := dial(t, s)
		l, err := List(context.Background(), c, h)
		if err != nil {
			t.Fatal(err)
		}
		st := store(t)
		out := Fetch(context.Background(), c, st, h, l.Ready, WithJobs(4))
		if len(out) != 12 {
			t.Fatalf("%d outcomes", len(out))
		}
		for _, f := range out {
			if f.Err != nil || f.Entry.SHA256 != want[f.File.Name] {
				t.Fatalf("%s: %+v", f.File.Name, f)
			}
		}
		if got := staged(t, st); len(got) != 12 {
			t.Fatalf("%d staged", len(got))
		}
	})
}

func TestCancel(t *testing.T) {
	eachServer(t, func(t *testing.T, s *server) {
		h := hospital(t, "stable")
		drop(t, s.root, "cases_2026-11.csv.gpg", 100, false)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := List(ctx, dial(t, s), h, WithSettle(time.Hour)); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled list: %v", err)
		}
	})
}
