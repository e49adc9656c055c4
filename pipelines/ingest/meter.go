package ingest

import (
	"context"
	"io"
	"os"

	"github.com/wardml/ward/pipelines/ingest/fetch"
)

// Progress is told what a run is doing, to draw progress bars.
type Progress interface {
	// Add announces files to process, and their bytes.
	Add(files int, bytes int64)
	// Downloaded reports bytes downloaded; Loaded bytes of the staged
	// files read into the database.
	Downloaded(n int64)
	Loaded(n int64)
	// Done reports a finished file.
	Done(f FileResult)
}

type noProgress struct{}

func (noProgress) Add(int, int64)   {}
func (noProgress) Downloaded(int64) {}
func (noProgress) Loaded(int64)     {}
func (noProgress) Done(FileResult)  {}

// meteredSource reports the bytes downloaded.
type meteredSource struct {
	fetch.Source
	progress Progress
}

func (m *meteredSource) Open(ctx context.Context, folder, name string) (io.ReadCloser, error) {
	rc, err := m.Source.Open(ctx, folder, name)
	if err != nil {
		return nil, err
	}
	return &meteredReader{ReadCloser: rc, progress: m.progress}, nil
}

// meteredReader counts what is read; it passes WriteTo on, which an SFTP
// file uses to keep many requests in flight.
type meteredReader struct {
	io.ReadCloser
	progress Progress
}

func (m *meteredReader) Read(p []byte) (int, error) {
	n, err := m.ReadCloser.Read(p)
	m.progress.Downloaded(int64(n))
	return n, err
}

func (m *meteredReader) WriteTo(w io.Writer) (int64, error) {
	if wt, ok := m.ReadCloser.(io.WriterTo); ok {
		return wt.WriteTo(&meteredWriter{w: w, progress: m.progress})
	}
	return io.Copy(w, struct{ io.Reader }{m})
}

type meteredWriter struct {
	w        io.Writer
	progress Progress
}

func (m *meteredWriter) Write(p []byte) (int, error) {
	n, err := m.w.Write(p)
	m.progress.Downloaded(int64(n))
	return n, err
}

// meteredFile counts the bytes of a staged file that decrypt reads, and
// keeps the random access that decrypt and extract use for age and
// Parquet files.
type meteredFile struct {
	*os.File
	progress Progress
}

func (m *meteredFile) Read(p []byte) (int, error) {
	n, err := m.File.Read(p)
	m.progress.Loaded(int64(n))
	return n, err
}

func (m *meteredFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := m.File.ReadAt(p, off)
	m.progress.Loaded(int64(n))
	return n, err
}

// Size is the file's size (extract's random access needs it).
func (m *meteredFile) Size() int64 {
	fi, err := m.File.Stat()
	if err != nil {
		return 0
	}
	return fi.Size()
}
