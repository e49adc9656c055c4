// Package staging keeps every extract that ward ingest receives, exactly as
// it arrived (still encrypted), immutable and addressed by its SHA-256:
//
//	WARD_STAGING/<sha256[:2]>/<sha256>        the received bytes, read-only
//	WARD_STAGING/<sha256[:2]>/<sha256>.json   the sidecar: hospital, name, size, source, time
//	WARD_STAGING/tmp/                         downloads in progress
//	WARD_STAGING/reports/<hospital>/          validation reports and rejected rows (0700)
//
// It sits between fetch (which streams each download into Put) and the
// decrypt and extract stages (which read the staged file back). Because the
// address is the content, the same bytes under two names are stored once,
// a model's lineage can name its inputs by hash, and two processes that
// stage the same file at once both succeed with the same result.
package staging

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sync/atomic"
	"time"
)

// Store is a staging folder.
type Store struct {
	dir      string
	now      func() time.Time
	staleTmp time.Duration
}

// Option changes a Store.
type Option func(*Store)

// WithClock sets the clock that stamps FetchedAt (tests fix it).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// WithStaleTemp sets the age after which Open removes a temporary file
// left by a download that died with its process (default 1h: a live
// download writes its file continuously, so its mtime stays recent).
func WithStaleTemp(d time.Duration) Option { return func(s *Store) { s.staleTmp = d } }

// Open opens (creating if needed) the staging folder dir, and removes
// temporary files that a killed download left behind.
func Open(dir string, opts ...Option) (*Store, error) {
	s := &Store{dir: dir, now: time.Now, staleTmp: time.Hour}
	for _, o := range opts {
		o(s)
	}
	if err := os.MkdirAll(s.tmpDir(), 0o750); err != nil {
		return nil, fmt.Errorf("staging %s: %w", dir, err)
	}
	entries, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return nil, fmt.Errorf("staging %s: %w", dir, err)
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && s.now().Sub(fi.ModTime()) > s.staleTmp {
			os.Remove(filepath.Join(s.tmpDir(), e.Name()))
		}
	}
	return s, nil
}

// Dir is the staging folder.
func (s *Store) Dir() string { return s.dir }

func (s *Store) tmpDir() string { return filepath.Join(s.dir, "tmp") }

// Meta is what the caller knows of a file before staging it.
type Meta struct {
	Hospital string
	// Name is the file's name on the server.
	Name string
	// Size is the size the server listed: the staged bytes must match it.
	Size int64
	// Source is where the file came from (sftp://... or file://...).
	Source string
	// Table is the contract table the name matched ("" for other files,
	// such as prediction logs).
	Table string
}

// Entry is one staged file: its sidecar, and where it lies.
type Entry struct {
	SHA256    string    `json:"sha256"`
	Size      int64     `json:"size"`
	Hospital  string    `json:"hospital"`
	Name      string    `json:"name"`
	Table     string    `json:"table,omitempty"`
	Source    string    `json:"source"`
	FetchedAt time.Time `json:"fetched_at"`

	// Path is the staged file.
	Path string `json:"-"`
	// Existed says that the same content was already staged (under this
	// name or another): the sidecar then describes its first arrival,
	// while this Entry describes this one.
	Existed bool `json:"-"`
}

// Put streams r into the store: to a temporary file, hashing on the way,
// then fsync, a check of the size against m.Size, and an atomic move into
// place. On any error nothing is staged and the temporary file is gone;
// the caller can simply try again.
func (s *Store) Put(ctx context.Context, r io.Reader, m Meta) (*Entry, error) {
	tmp, err := os.CreateTemp(s.tmpDir(), "put-*")
	if err != nil {
		return nil, fmt.Errorf("staging: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	// ctx cancels a stalled copy by failing the next write.
	stop := context.AfterFunc(ctx, func() { tmp.Close() })
	defer stop()
	h := sha256.New()
	wb := &writeback{f: tmp}
	defer wb.wait() // on the error paths, before the file is closed and removed
	aw := newAsyncWriter(io.MultiWriter(wb, h))
	// A server that sends more than it listed (without end, say) is cut
	// off one byte past the listed size: staging never holds more.
	cw := &capWriter{w: aw, left: m.Size + 1}
	n, err := io.Copy(cw, r)
	if cerr := aw.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, errOverListed) {
		return nil, fmt.Errorf("the server sent more than the %s it listed: the file changed or the server misbehaves; stopped there", byteSize(m.Size))
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("got %s of %s, then: %w", byteSize(n), byteSize(m.Size), err)
	}
	if n != m.Size {
		return nil, fmt.Errorf("got %s, but the server listed %s: the file changed or the transfer was cut", byteSize(n), byteSize(m.Size))
	}
	if err := tmp.Chmod(0o444); err != nil {
		return nil, fmt.Errorf("staging: %w", err)
	}
	if err := wb.wait(); err != nil {
		return nil, fmt.Errorf("staging: fsync: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("staging: fsync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("staging: %w", err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	e := &Entry{
		SHA256:    sum,
		Size:      n,
		Hospital:  m.Hospital,
		Name:      m.Name,
		Table:     m.Table,
		Source:    m.Source,
		FetchedAt: s.now().UTC(),
		Path:      s.Path(sum),
	}
	if err := os.MkdirAll(filepath.Dir(e.Path), 0o750); err != nil {
		return nil, fmt.Errorf("staging: %w", err)
	}
	// A link never replaces: if another run staged the same bytes first,
	// theirs stays and ours is dropped (they are equal by hash).
	e.Existed, err = place(tmp.Name(), e.Path)
	if err != nil {
		return nil, fmt.Errorf("staging: %w", err)
	}
	side, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeOnce(s.tmpDir(), e.Path+".json", append(side, '\n')); err != nil {
		return nil, fmt.Errorf("staging: sidecar: %w", err)
	}
	if err := syncDir(filepath.Dir(e.Path)); err != nil {
		return nil, fmt.Errorf("staging: %w", err)
	}
	return e, nil
}

var errOverListed = errors.New("more bytes than listed")

// capWriter takes at most left bytes, then fails. An SFTP file's WriteTo
// (many reads in flight) stops at its first failed write.
type capWriter struct {
	w    io.Writer
	left int64
}

func (c *capWriter) Write(p []byte) (int, error) {
	over := int64(len(p)) > c.left
	if over {
		p = p[:c.left]
	}
	n, err := c.w.Write(p)
	c.left -= int64(n)
	if err == nil && over {
		err = errOverListed
	}
	return n, err
}

// asyncWriter hands what is written to it, in 1 MiB pieces, to a
// goroutine that writes them on: the download keeps receiving while the
// disk and the hash work (an SFTP download arrives in 32 KiB pieces and
// would otherwise wait for each write).
type asyncWriter struct {
	buf  []byte
	full chan []byte
	free chan []byte
	done chan struct{}
	err  atomic.Pointer[error]
}

func newAsyncWriter(w io.Writer) *asyncWriter {
	const pieces, size = 4, 1 << 20
	a := &asyncWriter{full: make(chan []byte, pieces), free: make(chan []byte, pieces), done: make(chan struct{})}
	for range pieces - 1 {
		a.free <- make([]byte, 0, size)
	}
	a.buf = make([]byte, 0, size)
	go func() {
		defer close(a.done)
		for b := range a.full {
			// After a failure, keep returning pieces so Write never blocks.
			if a.err.Load() == nil {
				if _, err := w.Write(b); err != nil {
					a.err.Store(&err)
				}
			}
			a.free <- b[:0]
		}
	}()
	return a
}

func (a *asyncWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if err := a.err.Load(); err != nil {
			return n, *err
		}
		k := copy(a.buf[len(a.buf):cap(a.buf)], p)
		a.buf = a.buf[:len(a.buf)+k]
		p, n = p[k:], n+k
		if len(a.buf) == cap(a.buf) {
			a.full <- a.buf
			a.buf = <-a.free
		}
	}
	return n, nil
}

// Close writes what is left, waits for the goroutine, and returns the
// first write error.
func (a *asyncWriter) Close() error {
	if len(a.buf) > 0 {
		a.full <- a.buf
	}
	close(a.full)
	<-a.done
	if err := a.err.Load(); err != nil {
		return *err
	}
	return nil
}

// place links tmp to final unless final exists; existed reports the latter.
func place(tmp, final string) (existed bool, err error) {
	err = os.Link(tmp, final)
	if errors.Is(err, fs.ErrExist) {
		return true, nil
	}
	return false, err
}

// writeOnce creates file with data unless it exists, atomically.
func writeOnce(tmpDir, file string, data []byte) error {
	f, err := os.CreateTemp(tmpDir, "side-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o444)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	_, err = place(f.Name(), file)
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

var shaPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Path is where the file with this SHA-256 is (or would be) staged.
func (s *Store) Path(sha string) string {
	if !shaPattern.MatchString(sha) {
		// Never build a path from something that is not a hash.
		return filepath.Join(s.dir, "invalid-sha256")
	}
	return filepath.Join(s.dir, sha[:2], sha)
}

// Open opens a staged file for reading.
func (s *Store) Open(sha string) (*os.File, error) {
	if !shaPattern.MatchString(sha) {
		return nil, fmt.Errorf("staging: %q is not a SHA-256", sha)
	}
	f, err := os.Open(s.Path(sha))
	if err != nil {
		return nil, fmt.Errorf("staging: %w", err)
	}
	return f, nil
}

// Entry reads the sidecar of a staged file.
func (s *Store) Entry(sha string) (*Entry, error) {
	if !shaPattern.MatchString(sha) {
		return nil, fmt.Errorf("staging: %q is not a SHA-256", sha)
	}
	b, err := os.ReadFile(s.Path(sha) + ".json")
	if err != nil {
		return nil, fmt.Errorf("staging: %w", err)
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("staging: sidecar of %s: %w", sha, err)
	}
	e.Path = s.Path(sha)
	e.Existed = true
	return &e, nil
}

// ReportDir returns (creating it, 0700) the folder of a hospital's
// validation reports and rejected rows. Reports quote the cells that
// failed, which is patient data: the folder is for the people who run
// ingest, and for no one else.
func (s *Store) ReportDir(hospital string) (string, error) {
	if hospital == "" || filepath.Base(hospital) != hospital || hospital == "." || hospital == ".." {
		return "", fmt.Errorf("staging: bad hospital id %q", hospital)
	}
	dir := filepath.Join(s.dir, "reports", hospital)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("staging: %w", err)
	}
	if err := os.Chmod(filepath.Join(s.dir, "reports"), 0o700); err != nil {
		return "", fmt.Errorf("staging: %w", err)
	}
	return dir, nil
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
