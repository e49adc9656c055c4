package serving

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"sync"
	"time"

	"github.com/wardml/ward/models/predlog"
)

// record is one prediction as the server builds it: the record of the
// log and the database, and what the answer says of it.
type record struct {
	predlog.Record
	calibrated float64
	// unseen lists the fields whose value the model did not know, with
	// the value.
	unseen []UnseenValue
}

// predLog writes the prediction log: to stdout, and to a rotated file when
// one is set. Requests append their lines to a buffer and go on; one
// writer writes out whatever has gathered while it wrote the last batch,
// so that under load a write carries many requests' lines (one system
// call per request would cost the server a tenth of its throughput), and
// waits a millisecond after each write for more to gather. Lines
// keep the order of the answers, and one request's lines are never split
// from each other. A request waits when the lines not yet written pass
// maxPending (a stuck stdout slows the server rather than losing lines);
// close writes out everything before it returns, so a drain loses none.
type predLog struct {
	stdout io.Writer
	file   *rotatingFile
	// key, when set, hashes the inputs instead of logging them.
	key    []byte
	hashes sync.Pool
	// failed is told of each failed write; the writer goes on.
	failed func(error)

	mu      sync.Mutex
	cond    *sync.Cond // the buffer has lines, or room, or the log closed
	pending []byte
	spare   []byte
	closed  bool
	done    chan struct{}
}

const (
	maxPending = 4 << 20
	logLinger  = time.Millisecond
)

func newPredLog(stdout io.Writer, cfg Config, failed func(error)) (*predLog, error) {
	l := &predLog{stdout: stdout, key: cfg.HashKey, failed: failed, done: make(chan struct{})}
	if cfg.PredictionLog != "" {
		f, err := openRotating(cfg.PredictionLog, cfg.LogMaxSize, cfg.LogKeep)
		if err != nil {
			return nil, err
		}
		l.file = f
	}
	l.hashes.New = func() any { return hmac.New(sha256.New, l.key) }
	l.cond = sync.NewCond(&l.mu)
	go l.run()
	return l, nil
}

// hash returns the hex HMAC-SHA256 of canonical inputs under the key.
func (l *predLog) hash(inputs []byte) string {
	h := l.hashes.Get().(hash.Hash)
	h.Reset()
	h.Write(inputs)
	var sum [sha256.Size]byte
	s := hex.EncodeToString(h.Sum(sum[:0]))
	l.hashes.Put(h)
	return s
}

// write queues one request's lines.
func (l *predLog) write(lines []byte) {
	l.mu.Lock()
	for len(l.pending) > maxPending && !l.closed {
		l.cond.Wait()
	}
	l.pending = append(l.pending, lines...)
	l.mu.Unlock()
	l.cond.Broadcast()
}

func (l *predLog) run() {
	defer close(l.done)
	l.mu.Lock()
	for {
		for len(l.pending) == 0 && !l.closed {
			l.cond.Wait()
		}
		if len(l.pending) == 0 {
			l.mu.Unlock()
			return
		}
		out := l.pending
		l.pending = l.spare[:0]
		l.mu.Unlock()
		l.cond.Broadcast()
		// A failed destination does not keep the other from its lines.
		if _, err := l.stdout.Write(out); err != nil {
			l.failed(err)
		}
		if l.file != nil {
			if _, err := l.file.Write(out); err != nil {
				l.failed(err)
			}
		}
		// Let lines gather for the next write: under load, a write of
		// tens of requests' lines costs what a write of one does.
		time.Sleep(logLinger)
		l.mu.Lock()
		l.spare = out[:0]
	}
}

// close writes out the lines queued, then closes the file.
func (l *predLog) close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.cond.Broadcast()
	<-l.done
	if l.file == nil {
		return nil
	}
	return l.file.Close()
}
