package serving

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/wardml/ward/models"
)

// record is one prediction as the log and the database keep it: one
// instance of a request.
type record struct {
	RequestID string
	Item      int
	CaseID    string
	// Inputs is the instance's canonical inputs (appendInputs), or nil
	// when the log keeps InputsHash instead.
	Inputs     []byte
	InputsHash string
	Prediction models.Prediction
	// Unseen lists the fields whose value the model did not know.
	Unseen []UnseenValue
}

// appendRecord appends the prediction log line of r (see the package
// documentation for the format) to b.
func appendRecord(b []byte, at time.Time, took time.Duration, m *model, r *record) []byte {
	b = append(b, `{"@timestamp":"`...)
	b = appendTimestamp(b, at)
	b = append(b, `","log.level":"info","message":"prediction","service.name":"`...)
	b = append(b, ServiceName...)
	b = append(b, `","event.kind":"event","event.action":"predict","event.outcome":"success","event.duration":`...)
	b = strconv.AppendInt(b, took.Nanoseconds(), 10)
	b = append(b, `,"ward.request_id":`...)
	b = appendString(b, r.RequestID)
	b = append(b, `,"ward.item":`...)
	b = strconv.AppendInt(b, int64(r.Item), 10)
	b = append(b, `,"ward.hospital":`...)
	b = appendString(b, m.Hospital)
	b = append(b, `,"ward.model.version":`...)
	b = appendString(b, m.Version)
	b = append(b, `,"ward.model.digest":`...)
	b = appendString(b, m.Digest)
	if r.CaseID != "" {
		b = append(b, `,"ward.case_id":`...)
		b = appendString(b, r.CaseID)
	}
	if r.Inputs != nil {
		b = append(b, `,"ward.inputs":`...)
		b = append(b, r.Inputs...)
	} else {
		b = append(b, `,"ward.inputs_hash":"`...)
		b = append(b, r.InputsHash...)
		b = append(b, '"')
	}
	b = append(b, `,"ward.prediction":`...)
	b = appendFloat(b, r.Prediction.Value)
	if m.Calibration != nil {
		b = append(b, `,"ward.calibrated":`...)
		b = appendFloat(b, r.Prediction.Calibrated)
	}
	if len(r.Unseen) > 0 {
		b = append(b, `,"ward.unseen":[`...)
		for i, u := range r.Unseen {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, u.Field)
		}
		b = append(b, ']')
	}
	return append(b, "}\n"...)
}

// appendTimestamp appends t in UTC as 2006-01-02T15:04:05.000Z, as
// AppendFormat would, at a fraction of its cost.
func appendTimestamp(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, t.Nanosecond()/1e6, 3)
	return append(b, 'Z')
}

// appendDigits appends n with at least width digits, zero-padded.
func appendDigits(b []byte, n, width int) []byte {
	var buf [8]byte
	i := len(buf)
	for n > 0 || width > 0 {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
		width--
	}
	return append(b, buf[i:]...)
}

// appendInputs appends a row as the canonical JSON object of its inputs:
// every input in the model's order, null when missing, numbers and
// booleans as JSON numbers and booleans, strings, dates and timestamps as
// strings in their canonical form. The same case gives the same bytes
// whatever the order and spelling of the request, so its hash is stable.
func appendInputs(b []byte, inputs []models.Column, row []models.Value) []byte {
	b = append(b, '{')
	for i, c := range inputs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, c.Name)
		b = append(b, ':')
		v := row[i]
		switch {
		case v.Null:
			b = append(b, "null"...)
		case c.Type == models.Int || c.Type == models.Bool:
			b = v.AppendFormat(b, c.Type)
		case c.Type == models.Float:
			b = appendFloat(b, v.Num)
		case c.Type == models.String:
			b = appendString(b, v.Str)
		default:
			b = append(b, '"')
			b = v.AppendFormat(b, c.Type)
			b = append(b, '"')
		}
	}
	return append(b, '}')
}

// appendFloat writes a finite float as encoding/json does: the shortest
// text that reads back to the same bits.
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	if abs == 0 || (abs >= 1e-6 && abs < 1e21) {
		return strconv.AppendFloat(b, f, 'f', -1, 64)
	}
	b = strconv.AppendFloat(b, f, 'e', -1, 64)
	if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
		b[n-2] = b[n-1] // e-07 to e-7
		b = b[:n-1]
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// as encoding/json does.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
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
