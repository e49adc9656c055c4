package serving

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
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
	b = at.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
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
// one is set. One request's lines go out in one write, so lines from
// concurrent requests never interleave.
type predLog struct {
	mu     sync.Mutex
	stdout io.Writer
	file   *rotatingFile
	// key, when set, hashes the inputs instead of logging them.
	key    []byte
	hashes sync.Pool
}

func newPredLog(stdout io.Writer, cfg Config) (*predLog, error) {
	l := &predLog{stdout: stdout, key: cfg.HashKey}
	if cfg.PredictionLog != "" {
		f, err := openRotating(cfg.PredictionLog, cfg.LogMaxSize, cfg.LogKeep)
		if err != nil {
			return nil, err
		}
		l.file = f
	}
	l.hashes.New = func() any { return hmac.New(sha256.New, l.key) }
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

// write writes lines to every destination; a failed destination does not
// keep the others from theirs.
func (l *predLog) write(lines []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := l.stdout.Write(lines)
	if l.file != nil {
		_, ferr := l.file.Write(lines)
		err = errors.Join(err, ferr)
	}
	return err
}

func (l *predLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file == nil {
		return nil
	}
	return l.file.Close()
}
