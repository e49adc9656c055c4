package ingest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"strconv"
	"strings"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models/predlog"
	"github.com/wardml/ward/pipelines/ingest/extract"
	"github.com/wardml/ward/pipelines/store"
)

// predictionReader reads a prediction log as extract reads an extract:
// the good predictions stream out to the loader, a malformed line is
// rejected with its line number (and kept in the rejected rows), a
// prediction repeated within the log is counted and loaded once, and the
// file is quarantined when it rejects more lines than the contract's
// max_rejected_rows allows. Its report counts lines as rows.
type predictionReader struct {
	r     io.Reader
	h     *contract.Hospital
	known map[string]bool // nil: versions not checked
	rej   io.Writer
	rep   extract.Report
	first *extract.Failure

	unknown    map[string]int64
	duplicates int64
}

// predictionLog reads a prediction log (the contract's
// inbound.predictions) with a predictionReader and loads it with
// store.LoadPredictions.
type predictionLog struct {
	p  *pipeline
	hs *hospitalState
}

func (predictionLog) rejectsExt() string { return ".jsonl" }

func (l predictionLog) load(ctx context.Context, plain io.Reader, entry store.File, rejects io.Writer, res *FileResult) (*extract.Report, store.Counts, error) {
	h := l.hs.h
	pr := newPredictionReader(extract.LimitPlaintext(plain, h), h, entry.Name, rejects, l.hs.knownModels(ctx, l.p))
	c, err := l.p.st.LoadPredictions(ctx, entry, pr.Rows(), store.WithRejected(func() int64 { return pr.rep.Rejected }))
	res.UnknownModels, res.Duplicates = pr.unknown, pr.duplicates
	return pr.Report(), c, err
}

func newPredictionReader(r io.Reader, h *contract.Hospital, name string, rejects io.Writer, known map[string]bool) *predictionReader {
	return &predictionReader{r: r, h: h, known: known, rej: rejects,
		rep: extract.Report{Hospital: h.ID, File: name, Table: store.PredictionsTable, Format: "jsonl", Failures: []extract.Failure{}}}
}

// Report says what the read found; final once Rows has ended.
func (p *predictionReader) Report() *extract.Report { return &p.rep }

// Rows yields the good predictions, then an error if the file fails.
func (p *predictionReader) Rows() iter.Seq2[store.Prediction, error] {
	return func(yield func(store.Prediction, error) bool) {
		err := p.run(yield)
		var q *extract.QuarantineError
		switch {
		case errors.Is(err, errStopped):
			p.rep.Verdict, p.rep.Reason = extract.Failed, "the loader stopped reading before the end of the file"
		case errors.As(err, &q):
			p.rep.Verdict, p.rep.Reason = extract.Quarantined, q.Reason
			yield(store.Prediction{}, err)
		case err != nil:
			p.rep.Verdict, p.rep.Reason = extract.Failed, err.Error()
			yield(store.Prediction{}, err)
		case p.rep.Rejected > 0:
			p.rep.Verdict = extract.Partial
		default:
			p.rep.Verdict = extract.Loaded
		}
	}
}

var errStopped = errors.New("stopped")

func (p *predictionReader) run(yield func(store.Prediction, error) bool) error {
	br := bufio.NewReaderSize(p.r, 64<<10)
	seen := map[string]bool{}
	var line []byte
	for n := int64(1); ; n++ {
		var tooLong bool
		var err error
		line, tooLong, err = readLine(br, line[:0], extract.DefaultMaxLineBytes)
		if err != nil && err != io.EOF {
			return readError(err)
		}
		if len(bytes.TrimSpace(line)) > 0 || tooLong {
			p.rep.Rows++
			pred, f := p.parse(line, tooLong)
			switch key := pred.Key() + "\x00" + strconv.Itoa(pred.Item); {
			case f != nil:
				f.Row = n
				if err := p.reject(*f, line); err != nil {
					return fmt.Errorf("rejected rows: %w", err)
				}
			case seen[key]:
				p.duplicates++
			default:
				seen[key] = true
				if p.known != nil && !p.known[pred.ModelVersion] {
					if p.unknown == nil {
						p.unknown = map[string]int64{}
					}
					p.unknown[pred.ModelVersion]++
				}
				p.rep.Good++
				if !yield(pred, nil) {
					return errStopped
				}
			}
		}
		if err == io.EOF {
			break
		}
	}
	if r := &p.rep; r.Rows > 0 && float64(r.Rejected)/float64(r.Rows) > p.h.Thresholds.MaxRejected() {
		return &extract.QuarantineError{Reason: fmt.Sprintf("%d of %d lines rejected (%.1f%%, over max_rejected_rows %g%%); first: line %d: %s",
			r.Rejected, r.Rows, 100*float64(r.Rejected)/float64(r.Rows), 100*p.h.Thresholds.MaxRejected(), p.first.Row, cell(*p.first))}
	}
	return nil
}

// readError makes a decryption failure at the end of the stream (a bad
// signature, a truncated ciphertext) a quarantine, as extract does.
func readError(err error) error {
	var q *extract.QuarantineError
	if errors.As(err, &q) {
		return err
	}
	rep := extract.NewReport("", "", err)
	if rep.Verdict == extract.Quarantined {
		return &extract.QuarantineError{Reason: rep.Reason}
	}
	return fmt.Errorf("read: %w", err)
}

// readLine reads one line into buf, without its line end; a line longer
// than max is read to its end but not kept (tooLong).
func readLine(br *bufio.Reader, buf []byte, max int) (line []byte, tooLong bool, err error) {
	for {
		part, err := br.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(part) > max+1 {
				tooLong, buf = true, buf[:0]
			} else {
				buf = append(buf, part...)
			}
		}
		switch err {
		case bufio.ErrBufferFull:
			continue
		case nil:
			return bytes.TrimRight(buf, "\r\n"), tooLong, nil
		}
		return bytes.TrimRight(buf, "\r\n"), tooLong, err
	}
}

func (p *predictionReader) reject(f extract.Failure, raw []byte) error {
	p.rep.Rejected++
	p.rep.FailuresTotal++
	if len(p.rep.Failures) < p.h.Thresholds.MaxErrors {
		p.rep.Failures = append(p.rep.Failures, f)
	}
	if p.first == nil {
		p.first = &f
	}
	rec, err := json.Marshal(struct {
		Line   int64  `json:"ward_line"`
		Reason string `json:"ward_reason"`
		Text   string `json:"line"`
	}{f.Row, cell(f), strings.ToValidUTF8(string(raw), "\uFFFD")})
	if err != nil {
		return err
	}
	_, err = p.rej.Write(append(rec, '\n'))
	return err
}

// cell is a failure without its line number.
func cell(f extract.Failure) string {
	if f.Column == "" {
		return f.Reason
	}
	if f.Value == "" {
		return f.Column + ": " + f.Reason
	}
	return f.Column + " " + strconv.Quote(f.Value) + ": " + f.Reason
}

// parse reads one line into a prediction (models/predlog defines the
// line), or says why it cannot.
func (p *predictionReader) parse(line []byte, tooLong bool) (store.Prediction, *extract.Failure) {
	if tooLong {
		return store.Prediction{}, &extract.Failure{Reason: fmt.Sprintf("longer than %d MiB", extract.DefaultMaxLineBytes>>20)}
	}
	pred, err := predlog.Parse(line)
	if fe, ok := errors.AsType[*predlog.FieldError](err); ok {
		return store.Prediction{}, &extract.Failure{Column: fe.Field, Value: fe.Value, Reason: fe.Reason}
	} else if err != nil {
		return store.Prediction{}, &extract.Failure{Reason: err.Error()}
	}
	if pred.Hospital != p.h.ID {
		v := pred.Hospital
		if len(v) > 64 {
			v = v[:64] + "..."
		}
		return store.Prediction{}, &extract.Failure{Column: "ward.hospital", Value: v, Reason: "a prediction of another hospital, in the folder of " + p.h.ID}
	}
	return pred, nil
}
