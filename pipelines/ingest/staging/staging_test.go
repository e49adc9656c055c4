package staging

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var fixed = time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)

func open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), WithClock(func() time.Time { return fixed }))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func meta(name string, size int) Meta {
	return Meta{Hospital: "st-olaf", Name: name, Size: int64(size), Source: "sftp://ward@h:22/st-olaf/inbound/" + name, Table: "cases"}
}

func shaOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// The layout is a pure function of the content, and the sidecar of the
// metadata: two stores given the same file hold the same bytes at the same
// relative paths.
func TestLayoutIsDeterministic(t *testing.T) {
	body := []byte("-----BEGIN PGP MESSAGE-----\nnot really\n")
	sha := shaOf(body)
	var trees [2]map[string]string
	for i := range trees {
		s := open(t)
		e, err := s.Put(context.Background(), bytes.NewReader(body), meta("cases_2026-11.csv.gpg", len(body)))
		if err != nil {
			t.Fatal(err)
		}
		if e.SHA256 != sha || e.Path != filepath.Join(s.Dir(), sha[:2], sha) || e.Existed {
			t.Fatalf("entry = %+v", e)
		}
		trees[i] = tree(t, s.Dir())
	}
	if len(trees[0]) != 2 {
		t.Fatalf("staged files: %v", trees[0])
	}
	for k, v := range trees[0] {
		if trees[1][k] != v {
			t.Fatalf("%s differs between two stores:\n%s\n%s", k, v, trees[1][k])
		}
	}
	side := trees[0][filepath.Join(sha[:2], sha+".json")]
	want := `{
  "sha256": "` + sha + `",
  "size": 39,
  "hospital": "st-olaf",
  "name": "cases_2026-11.csv.gpg",
  "table": "cases",
  "source": "sftp://ward@h:22/st-olaf/inbound/cases_2026-11.csv.gpg",
  "fetched_at": "2026-12-01T06:00:00Z"
}
`
	if side != want {
		t.Fatalf("sidecar:\n%s\nwant:\n%s", side, want)
	}
}

// tree maps every regular file under dir (but tmp/) to its content.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if strings.HasPrefix(rel, "tmp") {
			t.Errorf("temporary file left: %s", rel)
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[rel] = string(b)
		return nil
	})
	return out
}

func TestStagedFilesAreReadOnly(t *testing.T) {
	s := open(t)
	body := []byte("x")
	e, err := s.Put(context.Background(), bytes.NewReader(body), meta("a.csv", 1))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{e.Path, e.Path + ".json"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o222 != 0 {
			t.Errorf("%s is writable: %v", p, fi.Mode())
		}
	}
	f, err := s.Open(e.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != "x" {
		t.Fatalf("read back %q", b)
	}
	got, err := s.Entry(e.SHA256)
	if err != nil || got.Name != "a.csv" || got.Size != 1 || !got.FetchedAt.Equal(fixed) {
		t.Fatalf("Entry = %+v, %v", got, err)
	}
	if _, err := s.Open("../../etc/passwd"); err == nil {
		t.Fatal("opened a path that is not a hash")
	}
}

// The same content under another name is stored once; the sidecar keeps
// the first arrival and Put says the content existed.
func TestSameContentTwiceIsStoredOnce(t *testing.T) {
	s := open(t)
	body := []byte("same bytes")
	a, err := s.Put(context.Background(), bytes.NewReader(body), meta("cases_2026-10.csv", len(body)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Put(context.Background(), bytes.NewReader(body), meta("cases_2026-10-resent.csv", len(body)))
	if err != nil {
		t.Fatal(err)
	}
	if a.SHA256 != b.SHA256 || a.Existed || !b.Existed || b.Name != "cases_2026-10-resent.csv" {
		t.Fatalf("a = %+v\nb = %+v", a, b)
	}
	side, _ := s.Entry(a.SHA256)
	if side.Name != "cases_2026-10.csv" {
		t.Fatalf("sidecar name = %q, want the first arrival", side.Name)
	}
	if n := len(tree(t, s.Dir())); n != 2 {
		t.Fatalf("%d files staged, want 2 (file + sidecar)", n)
	}
}

// Many writers staging the same bytes at once all succeed, with one file
// and one sidecar as the result.
func TestConcurrentPutsOfTheSameFile(t *testing.T) {
	s := open(t)
	body := bytes.Repeat([]byte("0123456789"), 100_000)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	existed := make(chan bool, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Two separate stores on one folder: as two processes would.
			st := s
			if i%2 == 1 {
				var err error
				if st, err = Open(s.Dir()); err != nil {
					errs <- err
					return
				}
			}
			e, err := st.Put(context.Background(), bytes.NewReader(body), meta("big.csv", len(body)))
			if err != nil {
				errs <- err
				return
			}
			existed <- e.Existed
		}()
	}
	wg.Wait()
	close(errs)
	close(existed)
	for err := range errs {
		t.Fatal(err)
	}
	firsts := 0
	for e := range existed {
		if !e {
			firsts++
		}
	}
	if firsts != 1 {
		t.Fatalf("%d puts claim to be first, want 1", firsts)
	}
	files := tree(t, s.Dir())
	if len(files) != 2 || files[filepath.Join(shaOf(body)[:2], shaOf(body))] != string(body) {
		t.Fatalf("staged %d files", len(files))
	}
}

func TestShortOrFailedTransferStagesNothing(t *testing.T) {
	s := open(t)
	body := []byte("0123456789")
	_, err := s.Put(context.Background(), bytes.NewReader(body), meta("a.csv", 20))
	if err == nil || !strings.Contains(err.Error(), "got 10 bytes, but the server listed 20 bytes: the file changed or the transfer was cut") {
		t.Fatalf("short file: %v", err)
	}
	cut := io.MultiReader(bytes.NewReader(body), errReader{errors.New("connection lost")})
	_, err = s.Put(context.Background(), cut, meta("a.csv", 20))
	if err == nil || !strings.Contains(err.Error(), "got 10 bytes of 20 bytes, then: connection lost") {
		t.Fatalf("cut transfer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	go func() {
		pw.Write(body)
		cancel()
		time.Sleep(50 * time.Millisecond)
		pw.Write(body)
		pw.Close()
	}()
	if _, err := s.Put(ctx, pr, meta("a.csv", 20)); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled transfer: %v", err)
	}
	if files := tree(t, s.Dir()); len(files) != 0 {
		t.Fatalf("staged after failures: %v", files)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestOpenRemovesStaleTemporaryFiles(t *testing.T) {
	s := open(t)
	stale := filepath.Join(s.Dir(), "tmp", "put-123")
	fresh := filepath.Join(s.Dir(), "tmp", "put-456")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(stale, old, old)
	if _, err := Open(s.Dir()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary file kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a download in progress was removed: %v", err)
	}
}

func TestReportDirIsPrivate(t *testing.T) {
	s := open(t)
	dir, err := s.ReportDir("st-olaf")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, filepath.Dir(dir)} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("%s: %v %v", p, fi.Mode(), err)
		}
	}
	if _, err := s.ReportDir("../x"); err == nil {
		t.Fatal("hospital id with .. accepted")
	}
}

// A disk that fails mid-download fails the download, soon: the writing
// goroutine's error reaches the next Write.
func TestAsyncWriterReportsWriteErrors(t *testing.T) {
	full := &failAfter{n: 3 << 20}
	a := newAsyncWriter(full)
	piece := bytes.Repeat([]byte("x"), 32<<10)
	var err error
	written := 0
	for written < 64<<20 && err == nil {
		var n int
		n, err = a.Write(piece)
		written += n
	}
	cerr := a.Close()
	if err == nil || cerr == nil || !strings.Contains(err.Error(), "no space left") || written > 16<<20 {
		t.Fatalf("write error %v after %d bytes, close %v", err, written, cerr)
	}
	ok := &bytes.Buffer{}
	a = newAsyncWriter(ok)
	for range 100 {
		a.Write(piece)
	}
	if err := a.Close(); err != nil || ok.Len() != 100*len(piece) {
		t.Fatalf("wrote %d bytes, %v", ok.Len(), err)
	}
}

type failAfter struct{ n int }

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, errors.New("write /staging/tmp/put-1: no space left on device")
	}
	return len(p), nil
}

// A file larger than a few flush chunks is flushed in the background as it
// arrives: it is staged whole, and a transfer cut while a background fsync
// runs stages nothing.
func TestLargeFileStagesWhole(t *testing.T) {
	s := open(t)
	size := 3*flushChunk + 12345
	body := make([]byte, size)
	rand.NewChaCha8([32]byte{1}).Read(body)
	e, err := s.Put(context.Background(), bytes.NewReader(body), meta("big.csv", size))
	if err != nil {
		t.Fatal(err)
	}
	if e.SHA256 != shaOf(body) || e.Size != int64(size) {
		t.Fatalf("entry %s %d, want %s %d", e.SHA256, e.Size, shaOf(body), size)
	}
	got, err := os.ReadFile(e.Path)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("staged bytes differ (%d read, %v)", len(got), err)
	}

	s = open(t)
	cut := io.MultiReader(bytes.NewReader(body[:2*flushChunk+1]), errReader{errors.New("connection lost")})
	if _, err := s.Put(context.Background(), cut, meta("big.csv", size)); err == nil || !strings.Contains(err.Error(), "connection lost") {
		t.Fatalf("cut transfer: %v", err)
	}
	if files := tree(t, s.Dir()); len(files) != 0 {
		t.Fatalf("staged after a cut transfer: %v", files)
	}
}
