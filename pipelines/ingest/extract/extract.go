// Package extract parses one extract (CSV or Parquet) and validates it
// against its contract table, as a stream: plaintext in (from decrypt),
// good rows out (to the store's Load), failures collected with their row,
// column, value and reason. It is the pure middle of ingest: it reads a
// reader and writes to the writers it is given, and never touches a file
// or a database itself.
//
// # The handshake with the loader
//
// Whether a file is loaded at all is only known at its end (the share of
// rejected rows, the row count, freshness, a signature checked at EOF), but
// rows are loaded while they stream. So:
//
//   - Rows yields every good row as it is read, then, when the stream ends,
//     runs the file-level checks. If the file fails one (or the stream
//     fails: a bad signature, a truncated ciphertext, a line over the
//     limit), the last thing Rows yields is a non-nil error, usually a
//     *QuarantineError.
//   - A loader must load in one transaction and commit only if the
//     iteration ended without an error; on an error it rolls back, so a
//     quarantined file leaves nothing behind. The store's Load does this.
//   - After the iteration, Report says what happened (counts, failures,
//     verdict) for the validation report.
//
// Rows are []models.Value aligned with the table's columns (contract
// order), each a fresh slice that the loader may keep.
package extract

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"iter"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/ingest/decrypt"
)

// DefaultMaxLineBytes is the longest CSV record read by default: a longer
// one (a file without line ends, an unclosed quote) quarantines the file
// instead of filling memory.
const DefaultMaxLineBytes = 1 << 20

// earlyStopRows is the fewest rows after which a file whose rejected rows
// already exceed max_rejected_rows of the rows read so far stops being
// read: a file of ten million bad rows is refused at once, not after
// writing ten million rejected rows.
const earlyStopRows = 10_000

type config struct {
	maxLine  int
	rejects  io.Writer
	previous int64
	newest   *time.Time
}

// Option changes how a file is read and judged.
type Option func(*config)

// WithMaxLineBytes sets the longest CSV record accepted.
func WithMaxLineBytes(n int) Option { return func(c *config) { c.maxLine = n } }

// WithRejects writes each rejected row to w as CSV: the file's own cells
// (as text), then ward_row and ward_reason. The header is written with the
// first rejected row, so nothing is written for a clean file. The rows are
// patient data: give a writer that encrypts (decrypt.Keys.Seal) or a file
// in a private folder (RejectsFile does both).
func WithRejects(w io.Writer) Option { return func(c *config) { c.rejects = w } }

// WithPreviousRows gives the row count of the previous extract of the same
// table, for the contract's row_count_ratio check (the store knows it).
func WithPreviousRows(n int64) Option { return func(c *config) { c.previous = n } }

// WithNewestLoaded gives the newest time_column value already loaded for
// the table, for the contract's max_staleness check (the store knows it).
func WithNewestLoaded(t time.Time) Option { return func(c *config) { c.newest = &t } }

// Extractor reads one file. Its Rows may be ranged over once.
type Extractor struct {
	r     io.Reader
	h     *contract.Hospital
	t     *contract.Table
	cfg   config
	rep   Report
	used  bool
	first *Failure

	keys    *keySet
	keyBuf  []byte
	keyCols []int
	timeCol int
	newest  float64
	rej     *rejectWriter
	// order maps the good rows, in the order Rows yields them, back to
	// their rows in the file (RowOf).
	order []rowRun
}

// rowRun is a run of good rows yielded in file order: the ord-th to the
// (ord+n-1)-th yielded are the file's rows row to row+n-1.
type rowRun struct{ ord, row, n int64 }

// New prepares to read r, the plaintext of the file name of hospital h,
// as table t (nil: the table whose pattern matches name).
func New(r io.Reader, h *contract.Hospital, t *contract.Table, name string, opts ...Option) *Extractor {
	if t == nil {
		t = h.TableFor(name)
	}
	x := &Extractor{r: r, h: h, t: t, cfg: config{maxLine: DefaultMaxLineBytes}, timeCol: -1}
	for _, o := range opts {
		o(&x.cfg)
	}
	x.rep = Report{Hospital: h.ID, File: name, Failures: []Failure{}, ShowValues: h.Reports.ShowValues}
	if t == nil {
		return x
	}
	x.rep.Table, x.rep.Format = t.Name, formatOf(t, name)
	for _, k := range t.Key {
		for j := range t.Columns {
			if t.Columns[j].Name == k {
				x.keyCols = append(x.keyCols, j)
			}
		}
	}
	for j := range t.Columns {
		if t.Columns[j].Name == t.TimeColumn {
			x.timeCol = j
		}
	}
	return x
}

// formatOf is the contract's format, or the one the name says.
func formatOf(t *contract.Table, name string) string {
	if t.Format != "" {
		return t.Format
	}
	switch strings.ToLower(path.Ext(decrypt.Plain(name))) {
	case ".csv", ".txt", ".tsv":
		return "csv"
	case ".parquet", ".pq":
		return "parquet"
	}
	return ""
}

// QuarantineError is a file that fails its contract as a whole: nothing of
// it may be loaded. Reason says why, for a person.
type QuarantineError struct {
	Reason string
}

func (e *QuarantineError) Error() string {
	return e.Reason + "; file quarantined, nothing loaded"
}

func quarantine(format string, args ...any) *QuarantineError {
	return &QuarantineError{Reason: fmt.Sprintf(format, args...)}
}

// errStopped ends a run whose consumer stopped ranging.
var errStopped = errors.New("stopped")

// Rows yields the good rows, then a final error if the file fails (see the
// package comment for the handshake).
func (x *Extractor) Rows() iter.Seq2[[]models.Value, error] {
	return func(yield func([]models.Value, error) bool) {
		if x.used {
			yield(nil, errors.New("extract: Rows ranged over twice"))
			return
		}
		x.used = true
		err := x.run(yield)
		// The rejected rows of a quarantined file are written out too:
		// they show why.
		if x.rej != nil {
			if ferr := x.rej.flush(); err == nil {
				err = ferr
			}
		}
		if err == errStopped {
			x.rep.Verdict, x.rep.Reason = Failed, "the loader stopped reading before the end of the file"
			return
		}
		if err != nil {
			var q *QuarantineError
			if errors.As(err, &q) {
				x.rep.Verdict, x.rep.Reason = Quarantined, q.Reason
			} else {
				x.rep.Verdict, x.rep.Reason = Failed, err.Error()
			}
			yield(nil, err)
			return
		}
		x.rep.Verdict = Loaded
		if x.rep.Rejected > 0 {
			x.rep.Verdict = Partial
		}
	}
}

// Report says what the run found. Call it after ranging over Rows.
func (x *Extractor) Report() *Report { return &x.rep }

func (x *Extractor) run(yield func([]models.Value, error) bool) error {
	if x.t == nil {
		return quarantine("no table of the contract matches the name %s", x.rep.File)
	}
	var dec decoder
	lim := x.h.Inbound.Limits
	switch x.rep.Format {
	case "csv":
		dec = newCSV(&plainLimit{r: x.r, max: lim.MaxPlaintextBytes}, []rune(x.t.Delimiter)[0], x.cfg.maxLine)
	case "parquet":
		pq, err := newParquet(x.r, lim)
		if err != nil {
			return x.fatal(err)
		}
		defer pq.close()
		dec = pq
	default:
		return quarantine("cannot tell the format of %s: name it .csv or .parquet, or set format: in the contract's table %s", x.rep.File, x.t.Name)
	}
	hdr, err := dec.header()
	if err != nil {
		return x.fatal(err)
	}
	idx, err := x.mapHeader(hdr)
	if err != nil {
		return err
	}
	if x.cfg.rejects != nil {
		x.rej = newRejectWriter(x.cfg.rejects, hdr)
	}
	if x.keys, err = newKeySet(""); err != nil {
		return err
	}
	defer x.keys.close()

	// Reading and parsing cells (the bulk of the work) runs in a goroutine
	// of its own, a batch ahead of the checks that need file order (keys)
	// and of the loader: two stages, on two cores.
	batches := make(chan batch, 4)
	done := make(chan struct{})
	go parse(dec, hdr, idx, x.t.Columns, lim.MaxCellBytes, batches, done)
	defer func() {
		close(done)
		for range batches {
		}
	}()
	// accept passes a good row to the loader.
	accept := func(row []models.Value, num int64) error {
		if x.timeCol >= 0 && !row[x.timeCol].Null && (x.rep.Good == 0 || row[x.timeCol].Num > x.newest) {
			x.newest = row[x.timeCol].Num
		}
		x.rep.Good++
		x.noteOrder(num)
		if !yield(row, nil) {
			return errStopped
		}
		return nil
	}
	// reject keeps a row that failed, with its reasons.
	reject := func(raw []string, rowNum int64, reasons []string) error {
		x.rep.Rejected++
		if x.rej != nil {
			if err := x.rej.write(raw, rowNum, reasons); err != nil {
				return fmt.Errorf("rejected rows: %w", err)
			}
		}
		if th := x.h.Thresholds.MaxRejected(); x.rep.Rows >= earlyStopRows && float64(x.rep.Rejected) > th*float64(x.rep.Rows) {
			r := &x.rep
			return quarantine("%d of the first %d rows rejected (%.1f%%, over max_rejected_rows %g%%): stopped reading the file there; first: %s",
				r.Rejected, r.Rows, 100*float64(r.Rejected)/float64(r.Rows), 100*th, x.first)
		}
		return nil
	}
	// duplicate rejects a row whose key row first has already.
	duplicate := func(row []models.Value, num, line, first int64) error {
		f := x.dupFailure(row, num, line, first)
		return reject(fileOrder(row, idx, len(hdr), x.t.Columns), num, []string{x.fail(*f)})
	}
	// settle decides the rows the key check held back.
	settle := func() error {
		return x.keys.settle(func(w waitingRow, first int64) error {
			if first == w.num {
				return accept(w.row, w.num)
			}
			return duplicate(w.row, w.num, w.line, first)
		})
	}
	var reasons []string
	for b := range batches {
		for i := range b.rows {
			p := &b.rows[i]
			x.rep.Rows++
			rowNum := x.rep.Rows
			reasons = reasons[:0]
			for _, f := range p.fails {
				f.Row = rowNum
				reasons = append(reasons, x.fail(f))
			}
			if len(reasons) > 0 {
				if err := reject(p.raw, rowNum, reasons); err != nil {
					return err
				}
				continue
			}
			h := x.keyHash(p.row)
			cleared, err := x.keys.add(h, rowNum)
			if err != nil {
				return err
			}
			if !cleared {
				if first, ok := x.keys.repeated(h); ok {
					if err := duplicate(p.row, rowNum, p.line, first); err != nil {
						return err
					}
					continue
				}
				if x.keys.wait(h, p.row, rowNum, p.line) {
					if err := settle(); err != nil {
						return err
					}
				}
				continue
			}
			if err := accept(p.row, rowNum); err != nil {
				return err
			}
		}
		if b.err == io.EOF {
			break
		}
		if b.err != nil {
			return x.fatal(b.err)
		}
	}
	if err := settle(); err != nil {
		return err
	}
	return x.fileChecks()
}

// parsed is one row as the parse stage leaves it.
type parsed struct {
	row   []models.Value
	fails []Failure
	// raw keeps the file's cells of a row that failed, for the rejected
	// rows file.
	raw  []string
	line int64
}

// fileOrder puts a parsed row back in the file's column order, as text:
// the cells of a row rejected after parsing (a duplicate key), whose
// original text the parse stage no longer holds.
func fileOrder(row []models.Value, idx []int, n int, cols []contract.Column) []string {
	out := make([]string, n)
	for j, i := range idx {
		out[i] = row[j].Format(cols[j].Type)
	}
	return out
}

// batch is a run of parsed rows; err (io.EOF at the end) follows them.
type batch struct {
	rows []parsed
	err  error
}

const batchRows = 256

// parse is the first stage: it reads rows and parses their cells until the
// file ends, fails, or done is closed. A cell over maxCell stops the file.
func parse(dec decoder, hdr []string, idx []int, cols []contract.Column, maxCell contract.ByteSize, out chan<- batch, done <-chan struct{}) {
	defer close(out)
	var slab []models.Value
	for {
		b := batch{rows: make([]parsed, 0, batchRows)}
		for len(b.rows) < batchRows {
			rowErr, err := dec.next()
			if err == nil {
				err = checkCells(dec, hdr, maxCell)
			}
			if err != nil {
				b.err = err
				break
			}
			// Rows are carved from a shared slab, so that a million rows
			// do not cost a million allocations; each stays the loader's.
			if len(slab) < len(cols) {
				slab = make([]models.Value, len(cols)*batchRows)
			}
			p := parsed{row: slab[:len(cols):len(cols)], line: dec.line()}
			slab = slab[len(cols):]
			if rowErr != nil {
				p.fails = append(p.fails, Failure{Line: p.line, Reason: rowErr.Error()})
			} else {
				for j := range cols {
					v, ferr := dec.parse(idx[j], &cols[j])
					if ferr == nil && cols[j].Type == models.String && strings.IndexByte(v.Str, 0) >= 0 {
						// PostgreSQL cannot store it in text, and SQLite
						// would: refused alike on both.
						v, ferr = models.Missing, &models.FieldError{Column: cols[j].Name, Value: v.Str, Reason: "contains a NUL byte (0x00), which a text column cannot hold"}
					}
					if ferr != nil {
						p.fails = append(p.fails, Failure{Line: p.line, Column: ferr.Column, Value: ferr.Value, Reason: ferr.Reason})
					}
					p.row[j] = v
				}
			}
			if len(p.fails) > 0 {
				p.raw = dec.raw()
			}
			b.rows = append(b.rows, p)
		}
		select {
		case out <- b:
		case <-done:
			return
		}
		if b.err != nil {
			return
		}
	}
}

// checkCells refuses a row with a cell over the limit, before any of its
// cells is parsed, copied or written to a report.
func checkCells(dec decoder, hdr []string, maxCell contract.ByteSize) error {
	for i := range dec.width() {
		if n := dec.cellSize(i); n > int(maxCell) {
			name := strconv.Itoa(i + 1)
			if i < len(hdr) {
				name = strconv.Quote(hdr[i])
			}
			e := overLimit(fmt.Sprintf("column %s: a cell of %s,", name, contract.ByteSize(n)), maxCell, "max_cell_bytes")
			e.row = true
			return e
		}
	}
	return nil
}

// fatal classifies an error that stops the file: what comes from the
// file's content quarantines it; anything else (a disk error) is only a
// failure of this run, and the next run tries again.
func (x *Extractor) fatal(err error) error {
	var q *QuarantineError
	var d *decrypt.Error
	var c *contentError
	switch {
	case errors.As(err, &q):
		return err
	case errors.As(err, &d):
		return &QuarantineError{Reason: d.Error()}
	case errors.As(err, &c):
		if c.row {
			return quarantine("row %d: %s", x.rep.Rows+1, c.msg)
		}
		return &QuarantineError{Reason: c.msg}
	}
	return fmt.Errorf("read: %w", err)
}

// contentError is a problem with the file's bytes that stops reading it:
// row says that it belongs to the next row.
type contentError struct {
	msg string
	row bool
}

func (e *contentError) Error() string { return e.msg }

func (x *Extractor) fail(f Failure) string {
	// Cell values are patient data: by default only the encrypted
	// rejected-rows file holds them.
	f.Value = shownValue(f.Value, x.h.Reports.ShowValues)
	x.rep.FailuresTotal++
	if len(x.rep.Failures) < x.h.Thresholds.MaxErrors {
		x.rep.Failures = append(x.rep.Failures, f)
	}
	if x.first == nil {
		x.first = &f
	}
	return f.cell()
}

// mapHeader finds each contract column in the file's header.
func (x *Extractor) mapHeader(hdr []string) ([]int, error) {
	want := make(map[string]int, len(x.t.Columns))
	for j := range x.t.Columns {
		want[x.t.Columns[j].FileHeader()] = j
	}
	idx := make([]int, len(x.t.Columns))
	for j := range idx {
		idx[j] = -1
	}
	seen := map[string]int{}
	var unexpected []string
	for i, name := range hdr {
		if !utf8.ValidString(name) {
			return nil, quarantine("header: column %d is not valid UTF-8", i+1)
		}
		if prev, dup := seen[name]; dup {
			return nil, quarantine("header: column %q appears twice (columns %d and %d)", name, prev+1, i+1)
		}
		seen[name] = i
		if j, ok := want[name]; ok {
			idx[j] = i
		} else {
			unexpected = append(unexpected, strconv.Quote(name))
		}
	}
	var missing []string
	for j, i := range idx {
		if i < 0 {
			missing = append(missing, strconv.Quote(x.t.Columns[j].FileHeader()))
		}
	}
	var problems []string
	if len(missing) > 0 {
		problems = append(problems, "missing "+plural(len(missing), "column")+" "+strings.Join(missing, ", "))
	}
	if len(unexpected) > 0 && x.t.IsStrict() {
		problems = append(problems, "unexpected "+plural(len(unexpected), "column")+" "+strings.Join(unexpected, ", ")+" (the table is strict; set strict: false in the contract to ignore extra columns)")
	}
	if len(problems) > 0 {
		return nil, quarantine("header does not match the contract's table %s: %s", x.t.Name, strings.Join(problems, "; "))
	}
	return idx, nil
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// keyHash is the key of a row, as a 128-bit hash: the database upserts by
// key, so two rows of one file with one key would silently lose one, and
// the key check (keySet) remembers every key of the file by its hash. Two
// different keys share a hash with a probability of about 2^-128 per pair
// (1e-27 for a million rows), far below any hardware error rate.
func (x *Extractor) keyHash(row []models.Value) [2]uint64 {
	b := x.keyBuf[:0]
	for _, j := range x.keyCols {
		if x.t.Columns[j].Type == models.String {
			b = binary.AppendUvarint(b, uint64(len(row[j].Str)))
			b = append(b, row[j].Str...)
		} else {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(row[j].Num))
		}
	}
	x.keyBuf = b
	return [2]uint64{maphash.Bytes(keySeeds[0], b), maphash.Bytes(keySeeds[1], b)}
}

// dupFailure is the failure of a row whose key row first has already.
func (x *Extractor) dupFailure(row []models.Value, rowNum, line, first int64) *Failure {
	vals := make([]string, len(x.keyCols))
	for i, j := range x.keyCols {
		vals[i] = row[j].Format(x.t.Columns[j].Type)
	}
	return &Failure{Row: rowNum, Line: line, Column: strings.Join(x.t.Key, ","), Value: strings.Join(vals, ","), Reason: fmt.Sprintf("duplicate key: first seen in row %d", first)}
}

var keySeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

func (x *Extractor) noteOrder(row int64) {
	ord := x.rep.Good
	if n := len(x.order); n > 0 {
		if last := &x.order[n-1]; last.ord+last.n == ord && last.row+last.n == row {
			last.n++
			return
		}
	}
	x.order = append(x.order, rowRun{ord: ord, row: row, n: 1})
}

// RowOf is the row in the file (from 1) of the ord-th row that Rows
// yielded (from 1), or 0 if it yielded fewer: a loader that refuses a
// row it was given (a newer row of its key is in the database) names it
// by its row.
func (x *Extractor) RowOf(ord int64) int64 {
	i, _ := slices.BinarySearchFunc(x.order, ord, func(r rowRun, ord int64) int {
		switch {
		case r.ord+r.n <= ord:
			return -1
		case r.ord > ord:
			return 1
		}
		return 0
	})
	if i == len(x.order) || x.order[i].ord > ord {
		return 0
	}
	return x.order[i].row + ord - x.order[i].ord
}

// fileChecks are the contract's file-level thresholds, run at the end.
func (x *Extractor) fileChecks() error {
	th := x.h.Thresholds
	r := &x.rep
	correction := th.Corrections != "" && matches(th.Corrections, r.File)
	if r.Rows > 0 && float64(r.Rejected)/float64(r.Rows) > th.MaxRejected() {
		return quarantine("%d of %d rows rejected (%.1f%%, over max_rejected_rows %g%%); first: %s",
			r.Rejected, r.Rows, 100*float64(r.Rejected)/float64(r.Rows), 100*th.MaxRejected(), x.first)
	}
	if ratio := th.RowCountRatio; ratio > 0 && x.cfg.previous > 0 && !correction {
		prev, n := float64(x.cfg.previous), float64(r.Rows)
		r.Checks = append(r.Checks, fmt.Sprintf("row count %d against %d in the previous extract (row_count_ratio %g)", r.Rows, x.cfg.previous, ratio))
		if n > prev*ratio || n*ratio < prev {
			return quarantine("%d rows, against %d in the previous extract of %s: off by more than row_count_ratio %gx", r.Rows, x.cfg.previous, x.t.Name, ratio)
		}
	}
	if st := th.MaxStaleness; !st.IsZero() && x.cfg.newest != nil && x.timeCol >= 0 && r.Good > 0 && !correction {
		c := &x.t.Columns[x.timeCol]
		loaded := x.cfg.newest.UTC()
		limit := loaded.AddDate(0, -st.Months, -st.Days)
		newest := models.Value{Num: x.newest}.Time(c.Type)
		r.Checks = append(r.Checks, fmt.Sprintf("newest %s %s against %s already loaded (max_staleness %s)", c.Name, newest.Format(time.DateOnly), loaded.Format(time.DateOnly), st))
		if newest.Before(limit) {
			return quarantine("stale: the newest %s is %s, older than the newest already loaded (%s) by more than max_staleness %s",
				c.Name, newest.Format(time.DateOnly), loaded.Format(time.DateOnly), st)
		}
	}
	return nil
}

func matches(pattern, name string) bool {
	ok, _ := path.Match(pattern, name)
	return ok
}
