package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/sftpd"
	"github.com/wardml/ward/internal/sftpd/sftptest"
	"github.com/wardml/ward/pipelines/ingest"
	"github.com/wardml/ward/pipelines/ingest/decrypt"
	"github.com/wardml/ward/pipelines/ingest/fetch"
	"github.com/wardml/ward/pipelines/ingest/staging"
	"github.com/wardml/ward/pipelines/store"
)

// The hostile inputs of issue 14, each end to end through the pipeline,
// each asserting its bound: peak memory (the child's rusage: the ingest
// runs in a child process of the test binary), and the bytes that staging
// and the reports folder hold.

// hostileContract is one OpenPGP hospital with one table, patients.
const hostileContract = `
id: hostile
inbound: {encryption: openpgp}
tables:
  - name: patients
    pattern: "patients_*"
    key: [patient_id]
    columns:
      - {name: patient_id, type: string, required: true}
      - {name: birth_date, type: date}
      - {name: note, type: string}
      - {name: weight, type: float}
training: {table: patients, target: weight, features: [{name: note, kind: categorical}]}
`

const patientsHeader = "patient_id,birth_date,note,weight\n"

// childEnv names the folder of a child's ingest (hostileRig's layout).
const childEnv = "WARD_HOSTILE_CHILD"

// hostileRig is a drop box, a staging folder, a SQLite database, keys and
// a contract in one folder, which a child process can ingest.
type hostileRig struct {
	dir  string
	ent  *openpgp.Entity
	keys *decrypt.Keys
	hs   []*contract.Hospital
}

func newHostile(t *testing.T, extra string) *hostileRig {
	t.Helper()
	// A key that prefers compressed messages, as gpg's do: the files are
	// as small as a hospital's would be.
	ent, err := openpgp.NewEntity("ward ingest", "", "ingest@example.invalid",
		&packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, DefaultCompressionAlgo: packet.CompressionZLIB})
	if err != nil {
		t.Fatal(err)
	}
	r := &hostileRig{dir: t.TempDir(), ent: ent}
	hdir := filepath.Join(r.dir, "hospitals", "hostile")
	for _, d := range []string{hdir, r.inbound(), filepath.Join(r.dir, "keys")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(hdir, "hospital.yaml"), []byte(hostileContract+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	var key bytes.Buffer
	w, _ := armor.Encode(&key, openpgp.PrivateKeyType, nil)
	if err := r.ent.SerializePrivate(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := os.WriteFile(r.keyFile(), key.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if r.hs, r.keys, err = loadRig(r.dir); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *hostileRig) inbound() string { return filepath.Join(r.dir, "box", "hostile", "inbound") }
func (r *hostileRig) keyFile() string { return filepath.Join(r.dir, "keys", "ingest.pgp") }
func (r *hostileRig) reports() string { return filepath.Join(r.dir, "staging", "reports") }

func loadRig(dir string) ([]*contract.Hospital, *decrypt.Keys, error) {
	hs, err := contract.LoadAll(filepath.Join(dir, "hospitals"))
	if err != nil {
		return nil, nil, err
	}
	keys, err := decrypt.Load(decrypt.WithPGPKey(filepath.Join(dir, "keys", "ingest.pgp"), ""))
	return hs, keys, err
}

// put drops a file, encrypted to ward's key (compressed, as gpg does), in
// the inbound folder; write writes its plaintext.
func (r *hostileRig) put(t *testing.T, name string, write func(w io.Writer) error) int64 {
	t.Helper()
	f, err := os.Create(filepath.Join(r.inbound(), name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg := &packet.Config{DefaultCompressionAlgo: packet.CompressionZLIB, CompressionConfig: &packet.CompressionConfig{Level: 9}}
	w, err := openpgp.Encrypt(f, openpgp.EntityList{r.ent}, nil, &openpgp.FileHints{IsBinary: true}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := write(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	return fi.Size()
}

func (r *hostileRig) putText(t *testing.T, name, text string) {
	r.put(t, name, func(w io.Writer) error { _, err := io.WriteString(w, text); return err })
}

// run ingests the drop box in this process, into the database at url.
func (r *hostileRig) run(t *testing.T, url string, opts ...ingest.Option) *ingest.Summary {
	t.Helper()
	st, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stage, err := staging.Open(filepath.Join(r.dir, "staging"))
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]ingest.Option{ingest.WithSettle(10 * time.Millisecond)}, opts...)
	return ingest.Run(context.Background(), r.hs, fetch.Dir(filepath.Join(r.dir, "box")), st, stage, r.keys, opts...)
}

// child ingests the drop box in a child process, into SQLite, and returns
// its summary and peak resident memory (the child's VmHWM: its rusage
// would count the parent's memory, which a vfork-ed child shares until
// exec).
func (r *hostileRig) child(t *testing.T) (*ingest.Summary, int64) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+r.dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child ingest: %v\n%s", err, out)
	}
	hwm, err := os.ReadFile(filepath.Join(r.dir, "peak"))
	if err != nil {
		t.Fatal(err)
	}
	rss, err := strconv.ParseInt(string(hwm), 10, 64)
	if err != nil || rss <= 0 {
		t.Fatalf("the child's peak memory: %q, %v", hwm, err)
	}
	b, err := os.ReadFile(filepath.Join(r.dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sum ingest.Summary
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	return &sum, rss
}

func childIngest(dir string) int {
	hs, keys, err := loadRig(dir)
	if err == nil {
		var st *store.Store
		var stage *staging.Store
		if st, err = store.Open(context.Background(), "sqlite:"+filepath.Join(dir, "ward.db")); err == nil {
			defer st.Close()
			if stage, err = staging.Open(filepath.Join(dir, "staging")); err == nil {
				sum := ingest.Run(context.Background(), hs, fetch.Dir(filepath.Join(dir, "box")), st, stage, keys, ingest.WithSettle(10*time.Millisecond))
				var b []byte
				if b, err = json.Marshal(sum); err == nil {
					err = os.WriteFile(filepath.Join(dir, "summary.json"), b, 0o600)
				}
				if err == nil {
					err = os.WriteFile(filepath.Join(dir, "peak"), []byte(strconv.FormatInt(peakRSS(), 10)), 0o600)
				}
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// peakRSS is this process's peak resident memory, VmHWM.
func peakRSS() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return -1
}

// du is the bytes of the files under dir.
func du(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

const mib = 1 << 20

// The memory bound every hostile file must stay under: the test binary's
// own runtime, SQLite and the parsers take about 60 MiB of it.
const maxRSS = 256 * mib

func single(t *testing.T, sum *ingest.Summary) ingest.FileResult {
	t.Helper()
	if len(sum.Hospitals) != 1 || len(sum.Hospitals[0].Files) != 1 {
		t.Fatalf("want one file: %+v", sum)
	}
	return sum.Hospitals[0].Files[0]
}

// Issue 14.1: a 92 KB zstd Parquet file of 4 rows, each with a 200 MB
// patient_id, encrypted. Today: 5.7 GB of memory, an 839 MB rejected-rows
// file and an 839 MB validation.json. Refused by its page size, before a
// page is decompressed.
func TestHostileParquetHugeCells(t *testing.T) {
	r := newHostile(t, "")
	type patient struct {
		PatientID string  `parquet:"patient_id"`
		BirthDate *int32  `parquet:"birth_date,date,optional"`
		Note      *string `parquet:"note,optional"`
		Weight    float64 `parquet:"weight"`
	}
	big := strings.Repeat("P", 200e6)
	rows := make([]patient, 4)
	for i := range rows {
		rows[i] = patient{PatientID: big[:len(big)-i], Weight: 70}
	}
	size := r.put(t, "patients_2024-03.parquet.gpg", func(w io.Writer) error {
		// A page (and row group) per row keeps the writer's memory to
		// about one cell's worth.
		// No statistics (they would quote the cells in the footer), as a
		// writer that truncates or skips them leaves it.
		pw := parquet.NewGenericWriter[patient](w, parquet.Compression(&zstd.Codec{}),
			parquet.DataPageStatistics(false), parquet.SkipPageBounds("patient_id"))
		for _, row := range rows {
			if _, err := pw.Write([]patient{row}); err != nil {
				return err
			}
			if err := pw.Flush(); err != nil {
				return err
			}
		}
		return pw.Close()
	})
	big, rows = "", nil
	sum, rss := r.child(t)
	f := single(t, sum)
	t.Logf("file %d KB; peak RSS %d MiB; reports %d bytes; %s", size>>10, rss/mib, du(r.reports()), f.Message())
	if f.Outcome != ingest.Quarantined || !strings.Contains(f.Reason, "max_page_bytes") {
		t.Fatalf("%s: want it quarantined over max_page_bytes", f.Message())
	}
	if rss > maxRSS {
		t.Errorf("peak memory %d MiB, over %d MiB", rss/mib, maxRSS/mib)
	}
	if n := du(r.reports()); n > 64<<10 {
		t.Errorf("reports and rejected rows hold %d bytes", n)
	}
}

// Issue 14.1: a 1.2 MB OpenPGP file that decompresses to 1 GB of zeros
// (after Parquet's magic), named .parquet.gpg. Today: 2.1 GB of memory.
// The plaintext is spooled, sealed, to disk, in constant memory; with a
// max_plaintext_bytes below it, refused at the limit.
func TestHostileDecompressionBomb(t *testing.T) {
	bomb := func(w io.Writer) error {
		if _, err := w.Write([]byte("PAR1")); err != nil {
			return err
		}
		zeros := make([]byte, mib)
		for range 1000 {
			if _, err := w.Write(zeros[:1e6]); err != nil {
				return err
			}
		}
		return nil
	}
	for _, tc := range []struct {
		name, contract, want string
	}{
		{"default limits", "", "not a valid Parquet file"},
		{"max_plaintext_bytes", "  limits: {max_plaintext_bytes: 256MiB}\n", "plaintext over 256 MiB (the contract's inbound.limits.max_plaintext_bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var extra string
			if tc.contract != "" {
				extra = "  # limits\n"
			}
			r := newHostile(t, extra)
			if tc.contract != "" {
				// inbound is a flow mapping in hostileContract: restate it.
				file := filepath.Join(r.dir, "hospitals", "hostile", "hospital.yaml")
				c := strings.Replace(hostileContract, "inbound: {encryption: openpgp}", "inbound:\n  encryption: openpgp\n"+tc.contract, 1)
				if err := os.WriteFile(file, []byte(c), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			size := r.put(t, "patients_2024-03.parquet.gpg", bomb)
			sum, rss := r.child(t)
			f := single(t, sum)
			t.Logf("file %d KB; peak RSS %d MiB; reports %d bytes; %s", size>>10, rss/mib, du(r.reports()), f.Message())
			if f.Outcome != ingest.Quarantined || !strings.Contains(f.Reason, tc.want) {
				t.Fatalf("%s: want it quarantined with %q", f.Message(), tc.want)
			}
			if rss > maxRSS {
				t.Errorf("peak memory %d MiB, over %d MiB", rss/mib, maxRSS/mib)
			}
		})
	}
}

// Issue 14.2: an SFTP server that lists a 100-byte file and then sends
// bytes without end. Today it fills staging at about 60 MB/s. Staging
// takes at most the listed size plus one byte, and the file fails (the
// next run retries it).
func TestHostileEndlessSFTP(t *testing.T) {
	r := newHostile(t, "")
	srv := &sftptest.Hostile{Extra: []string{"patients_2024-03.csv.gpg"}, Endless: true, Size: 100}
	s := sftptest.Start(t, t.TempDir(), sftpd.WithHandlers(srv.Handlers()))
	src := dial(t, fetch.SFTPConfig{URL: s.URL, Key: s.Key, KnownHosts: s.KnownHosts})
	st, err := store.Open(context.Background(), "sqlite:"+filepath.Join(r.dir, "ward.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stageDir := filepath.Join(r.dir, "staging")
	stage, err := staging.Open(stageDir)
	if err != nil {
		t.Fatal(err)
	}
	var peak atomic.Int64
	stop := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			if n := du(stageDir); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	// The bound of the loop: a run that never stops is cut after 5 s.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sum := ingest.Run(ctx, r.hs, src, st, stage, r.keys, ingest.WithSettle(10*time.Millisecond))
	close(stop)
	<-polled
	f := single(t, sum)
	t.Logf("peak staging %d bytes; server sent %d bytes; %s", peak.Load(), srv.Served(), f.Message())
	if f.Outcome != ingest.Failed || !strings.Contains(f.Reason, "sent more than the 100 bytes it listed") {
		t.Fatalf("%s: want it failed for sending more than it listed", f.Message())
	}
	if p := peak.Load(); p > 4096 {
		t.Errorf("staging peaked at %d bytes for a file listed at 100", p)
	}
	if n := du(stageDir); n != 0 {
		t.Errorf("staging holds %d bytes after the failed download", n)
	}
}

// Issue 14.3: a small compressed CSV of 10M copies of one row. Today: 70 s
// and a 1 GB rejected-rows file, every run. The file stops being read as
// soon as its rejected rows pass max_rejected_rows of the rows so far.
func TestHostileRepeatedRows(t *testing.T) {
	r := newHostile(t, "")
	line := []byte("P00-000001,1980-01-01,a note of some length to make the row longer,70.5\n")
	size := r.put(t, "patients_2024-03.csv.gpg", func(w io.Writer) error {
		io.WriteString(w, patientsHeader)
		chunk := bytes.Repeat(line, 10_000)
		for range 1000 {
			if _, err := w.Write(chunk); err != nil {
				return err
			}
		}
		return nil
	})
	start := time.Now()
	sum, rss := r.child(t)
	f := single(t, sum)
	t.Logf("file %d KB (%d MB of plaintext); %s; peak RSS %d MiB; reports %d bytes; %s", size>>10, int64(len(line))*10_000_000/1e6,
		time.Since(start).Round(time.Millisecond), rss/mib, du(r.reports()), f.Message())
	if f.Outcome != ingest.Quarantined || !strings.Contains(f.Reason, "stopped reading the file there") {
		t.Fatalf("%s: want it quarantined early", f.Message())
	}
	if f.Rows > 100_000 {
		t.Errorf("read %d rows before stopping", f.Rows)
	}
	if n := du(r.reports()); n > 16*mib {
		t.Errorf("reports and rejected rows hold %d bytes", n)
	}
	if rss > maxRSS {
		t.Errorf("peak memory %d MiB, over %d MiB", rss/mib, maxRSS/mib)
	}
}

// Issue 14.6: a NUL byte in a text cell. Today PostgreSQL refuses the
// whole COPY on every run, naming no row, while SQLite loads it. Now the
// row is rejected at validation, naming the file, row and column, alike
// on both; the rest of the file loads.
func TestHostileNULByte(t *testing.T) {
	engines(t, func(t *testing.T, url string) {
		r := newHostile(t, "  # every row but one\n")
		var b strings.Builder
		b.WriteString(patientsHeader)
		for i := 1; i <= 30; i++ {
			note := "fine"
			if i == 4 {
				note = "half\x00way"
			}
			fmt.Fprintf(&b, "P00-%06d,1980-01-%02d,%s,70\n", i, 1+i%28, note)
		}
		r.putText(t, "patients_2024-03.csv.gpg", b.String())
		f := single(t, r.run(t, url))
		if f.Outcome != ingest.Loaded || f.Loaded != 29 || f.Rejected != 1 {
			t.Fatalf("%s: want 29 loaded and 1 rejected", f.Message())
		}
		report := string(mustRead(t, f.Report))
		if want := "row 4: note: contains a NUL byte (0x00)"; !strings.Contains(report, want) || !strings.Contains(report, "patients_2024-03.csv.gpg") {
			t.Fatalf("report of %s does not say %q:\n%s", f.Name, want, report)
		}
	})
}

// Issue 14.7: validation reports (plaintext) and quarantine log lines (for
// ELK) quoted the failing cells. By default they name the row, column and
// rule, and the values are only in the encrypted rejected-rows file;
// reports: {show_values: true} brings them back, capped.
func TestHostileReportsShowNoValues(t *testing.T) {
	secret := "1980-13-" + strings.Repeat("9", 300)
	for _, show := range []bool{false, true} {
		t.Run(fmt.Sprintf("show_values=%v", show), func(t *testing.T) {
			extra := ""
			if show {
				extra = "reports: {show_values: true}\n"
			}
			r := newHostile(t, extra)
			r.putText(t, "patients_2024-03.csv.gpg", patientsHeader+"P00-000001,"+secret+",n,70\nP00-000002,1980-01-01,n,70\n")
			var logs bytes.Buffer
			f := single(t, r.run(t, "sqlite:"+filepath.Join(r.dir, "ward.db"), ingest.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil)))))
			if f.Outcome != ingest.Quarantined || f.Rejects == "" {
				t.Fatalf("%s: want it quarantined, with its rejected rows kept", f.Message())
			}
			text := mustRead(t, f.Report)
			js := mustRead(t, strings.TrimSuffix(f.Report, ".txt")+".json")
			shown := secret[:contract.MaxShownValue]
			for what, b := range map[string][]byte{"text report": text, "JSON report": js, "log": logs.Bytes(), "ledger reason": []byte(f.Reason)} {
				if !bytes.Contains(b, []byte("birth_date")) {
					t.Errorf("%s does not name the column:\n%s", what, b)
				}
				if bytes.Contains(b, []byte(secret[:20])) != show && what != "ledger reason" && what != "log" {
					t.Errorf("%s: value shown %v, want %v:\n%s", what, !show, show, b)
				}
				if !show && bytes.Contains(b, []byte(secret[:20])) {
					t.Errorf("%s quotes the value:\n%s", what, b)
				}
				if bytes.Contains(b, []byte(secret[:contract.MaxShownValue+20])) {
					t.Errorf("%s quotes more than %d bytes of the value:\n%s", what, contract.MaxShownValue, b)
				}
			}
			if show && !bytes.Contains(text, []byte(shown)) {
				t.Errorf("text report does not show the value's first %d bytes:\n%s", contract.MaxShownValue, text)
			}
			// The values are in the rejected-rows file, encrypted.
			sealed := mustRead(t, f.Rejects)
			if bytes.Contains(sealed, []byte("P00-000001")) {
				t.Fatal("rejected rows on disk in plaintext")
			}
			plain, err := r.keys.Open(bytes.NewReader(sealed), r.hs[0], "x.csv.gpg")
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := io.ReadAll(plain); !bytes.Contains(b, []byte(secret)) {
				t.Fatalf("rejected rows do not hold the value:\n%s", b)
			}
		})
	}
}

// Issue 14.9: a late extract of an older month (patients_2023-12 after
// patients_2024-02) overwrote the newer rows (birth dates back to 1900),
// reported as replaced: 1. Now the newer rows are kept, and each refused
// row is reported with its reason; a correction file still replaces.
// Both engines.
func TestHostileLateExtract(t *testing.T) {
	engines(t, func(t *testing.T, url string) {
		r := newHostile(t, "  # late\n")
		r.putText(t, "patients_2024-02.csv.gpg", patientsHeader+"P00-000001,1980-05-01,n,70\nP00-000002,1981-05-01,n,71\n")
		if f := single(t, r.run(t, url)); f.Outcome != ingest.Loaded || f.Loaded != 2 {
			t.Fatalf("%s", f.Message())
		}
		os.Remove(filepath.Join(r.inbound(), "patients_2024-02.csv.gpg"))
		r.putText(t, "patients_2023-12.csv.gpg", patientsHeader+"P00-000003,1982-05-01,n,72\nP00-000001,1900-01-01,n,70\n")
		f := single(t, r.run(t, url))
		if f.Outcome != ingest.Loaded || f.Loaded != 1 || f.Replaced != 0 || f.Refused != 1 {
			t.Fatalf("%s: want 1 loaded, 1 refused", f.Message())
		}
		db := (&rig{t: t, url: url}).db()
		born := func() string {
			var b string
			if err := db.QueryRow("SELECT CAST(birth_date AS TEXT) FROM " + store.TableName("hostile", "patients") + " WHERE patient_id = 'P00-000001'").Scan(&b); err != nil {
				t.Fatal(err)
			}
			return b
		}
		if b := born(); b != "1980-05-01" {
			t.Fatalf("P00-000001 born %s after the late extract, want the newer 1980-05-01", b)
		}
		report := string(mustRead(t, f.Report))
		if want := "row 2: patient_id: refused: the database holds a newer row of this key, from patients_2024-02.csv.gpg (period 2024-02)"; !strings.Contains(report, want) {
			t.Fatalf("report does not say %q:\n%s", want, report)
		}
		os.Remove(filepath.Join(r.inbound(), "patients_2023-12.csv.gpg"))
		r.putText(t, "patients_2023-12_correction.csv.gpg", patientsHeader+"P00-000001,1900-01-01,n,70\n")
		if f := single(t, r.run(t, url)); f.Outcome != ingest.Loaded || f.Replaced != 1 || f.Refused != 0 {
			t.Fatalf("correction: %s", f.Message())
		}
		if b := born(); b != "1900-01-01" {
			t.Fatalf("P00-000001 born %s after the correction", b)
		}
	})
}
