package staging

import "os"

// writebackChunk is how much a staged file grows before its disk writes
// are started.
const writebackChunk = 8 << 20

// writeback writes to a file and, every writebackChunk bytes, starts the
// disk writes of the chunk it just wrote, without waiting for them: the
// fsync that makes a staged file durable then has less left to wait for
// (it took a third of the time of a 200 MB download, with no writes
// started before it).
type writeback struct {
	f            *os.File
	off, started int64
}

func (w *writeback) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if w.off-w.started >= writebackChunk {
		startWriteback(w.f, w.started, w.off-w.started)
		w.started = w.off
	}
	return n, err
}
