// Package fetch brings a hospital's extracts from its drop box into
// staging: the first stage of ward ingest. A Source lists a hospital's
// inbound folder and opens its files; there are two: an SFTP server (Dial:
// pkg/sftp over x/crypto/ssh, key login, the host key checked against
// WARD_KNOWN_HOSTS) and a local folder of the same layout (Dir, for
// `ward ingest --from DIR` backfills).
//
// List says which files are ready: complete by a NAME.done marker, or by a
// size and mtime that did not change between two listings (the contract's
// inbound.ready), matched to a contract table or the prediction logs, and
// with a name that is safe (names come from the server and are not
// trusted). Fetch downloads the ready files, a few at a time, into the
// staging store; a download that fails leaves nothing staged, so the next
// run simply fetches the file again.
package fetch

import (
	"context"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/pipelines/ingest/staging"
)

// Source is a drop box: the hospitals' inbound folders.
type Source interface {
	// List returns the regular files of folder (relative to the source's
	// base), with names exactly as the server gave them.
	List(ctx context.Context, folder string) ([]Entry, error)
	// Open opens a file of folder for reading.
	Open(ctx context.Context, folder, name string) (io.ReadCloser, error)
	// URL names a file (or, with name "", a folder) for messages and the
	// staging sidecar.
	URL(folder, name string) string
}

// Entry is one listed file.
type Entry struct {
	Name    string
	Size    int64
	ModTime time.Time
}

// File is a file that List matched to the contract.
type File struct {
	Entry
	// Table is the contract table whose pattern the name matches, or ""
	// for a prediction log (inbound.predictions).
	Table string
}

// Waiting is a file that is not complete yet; a later run takes it.
type Waiting struct {
	File
	Reason string
}

// Listing is what a hospital's inbound folder holds.
type Listing struct {
	// Folder is the folder's URL.
	Folder string
	// Ready files can be fetched.
	Ready []File
	// Waiting files are still being written.
	Waiting []Waiting
	// Refused are names that are not safe to handle (errors that name
	// them and say why).
	Refused []error
	// Ignored are names that match no table and no prediction pattern.
	Ignored []string
}

type options struct {
	jobs   int
	settle time.Duration
}

// Option changes List or Fetch.
type Option func(*options)

// WithJobs sets how many files Fetch downloads at once (default 4).
func WithJobs(n int) Option { return func(o *options) { o.jobs = max(n, 1) } }

// WithSettle sets the time between the two listings that tell a complete
// file (same size and mtime) from one still being written (default 5s).
func WithSettle(d time.Duration) Option { return func(o *options) { o.settle = d } }

func newOptions(opts []Option) options {
	o := options{jobs: 4, settle: 5 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// markerSuffix marks a file as complete: NAME.done beside NAME.
const markerSuffix = ".done"

// List lists h's inbound folder and sorts its files into ready, waiting,
// refused and ignored. When files without a marker may be ready by being
// stable (inbound.ready: stable or either), it lists a second time after
// the settle time and compares.
func List(ctx context.Context, src Source, h *contract.Hospital, opts ...Option) (*Listing, error) {
	o := newOptions(opts)
	folder := h.Inbound.Folder
	first, err := src.List(ctx, folder)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", src.URL(folder, ""), err)
	}
	l := &Listing{Folder: src.URL(folder, "")}
	markers := map[string]bool{}
	var candidates []File
	for _, e := range first {
		if err := CheckName(e.Name); err != nil {
			l.Refused = append(l.Refused, fmt.Errorf("%s: %w; refused (rename it on the server)", l.Folder, err))
			continue
		}
		if base, ok := strings.CutSuffix(e.Name, markerSuffix); ok {
			markers[base] = true
			continue
		}
		f := File{Entry: e}
		switch t := h.TableFor(e.Name); {
		case t != nil:
			f.Table = t.Name
		case h.Inbound.Predictions != "" && matches(h.Inbound.Predictions, e.Name):
		default:
			l.Ignored = append(l.Ignored, e.Name)
			continue
		}
		candidates = append(candidates, f)
	}
	var unsure []File
	for _, f := range candidates {
		switch {
		case markers[f.Name] && h.Inbound.Ready != "stable":
			l.Ready = append(l.Ready, f)
		case h.Inbound.Ready == "marker":
			l.Waiting = append(l.Waiting, Waiting{f, fmt.Sprintf("no %s%s marker yet (inbound.ready: marker)", f.Name, markerSuffix)})
		default:
			unsure = append(unsure, f)
		}
	}
	if len(unsure) == 0 {
		return l, nil
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(o.settle):
	}
	second, err := src.List(ctx, folder)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", src.URL(folder, ""), err)
	}
	now := make(map[string]Entry, len(second))
	for _, e := range second {
		now[e.Name] = e
	}
	for _, f := range unsure {
		e, ok := now[f.Name]
		switch {
		case !ok:
			l.Waiting = append(l.Waiting, Waiting{f, "gone between two listings"})
		case e.Size != f.Size || !e.ModTime.Equal(f.ModTime):
			l.Waiting = append(l.Waiting, Waiting{f, fmt.Sprintf("still being written: %d bytes then %d bytes, %s apart", f.Size, e.Size, o.settle)})
		default:
			l.Ready = append(l.Ready, f)
		}
	}
	return l, nil
}

func matches(pattern, name string) bool {
	ok, _ := path.Match(pattern, name)
	return ok
}

// CheckName refuses a file name that is not a plain name: one that could
// address another folder (/, \, ..), or hide in a terminal or a log
// (control characters, invalid UTF-8).
func CheckName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("file name %q is not a file name", name)
	case !utf8.ValidString(name):
		return fmt.Errorf("file name %q is not valid UTF-8", name)
	case strings.ContainsAny(name, `/\`):
		return fmt.Errorf("file name %q contains a path separator", name)
	case strings.Contains(name, ".."):
		return fmt.Errorf("file name %q contains ..", name)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("file name %q contains a control character", name)
	}
	return nil
}

// Fetched is the outcome of one download.
type Fetched struct {
	File File
	// Entry is the staged file; nil when Err is set.
	Entry *staging.Entry
	Err   error
}

// Fetch downloads files of h from src into st, several at once (WithJobs),
// and returns one outcome per file, in the order given. A failed download
// stages nothing.
func Fetch(ctx context.Context, src Source, st *staging.Store, h *contract.Hospital, files []File, opts ...Option) []Fetched {
	o := newOptions(opts)
	out := make([]Fetched, len(files))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(o.jobs, len(files)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i] = fetchOne(ctx, src, st, h, files[i])
			}
		}()
	}
	for i := range files {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

func fetchOne(ctx context.Context, src Source, st *staging.Store, h *contract.Hospital, f File) Fetched {
	url := src.URL(h.Inbound.Folder, f.Name)
	fail := func(err error) Fetched {
		return Fetched{File: f, Err: fmt.Errorf("download %s: %w; nothing staged, the next run fetches it again", url, err)}
	}
	if err := CheckName(f.Name); err != nil {
		return Fetched{File: f, Err: fmt.Errorf("%s: %w; refused", url, err)}
	}
	r, err := src.Open(ctx, h.Inbound.Folder, f.Name)
	if err != nil {
		return fail(err)
	}
	defer r.Close()
	e, err := st.Put(ctx, r, staging.Meta{Hospital: h.ID, Name: f.Name, Size: f.Size, Source: url, Table: f.Table})
	if err != nil {
		return fail(err)
	}
	return Fetched{File: f, Entry: e}
}
