package extract

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
)

// decoder reads one file format; extract validates what it yields.
type decoder interface {
	// header returns the file's column names.
	header() ([]string, error)
	// next reads the next row. rowErr is a problem of that row alone (it
	// is rejected); err stops the file; io.EOF ends it.
	next() (rowErr error, err error)
	// parse reads the file's column i of the current row as column c.
	parse(i int, c *contract.Column) (models.Value, *models.FieldError)
	// raw is the current row's cells as text, for the rejected-rows file;
	// the caller may keep it.
	raw() []string
	// line is the current row's first line in the file (0 if none).
	line() int64
	// width is the current row's number of cells, and cellSize the
	// bytes of its cell i.
	width() int
	cellSize(i int) int
}

const csvBuffer = 64 << 10

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// csvDecoder reads RFC 4180 CSV with encoding/csv: quoted fields, CRLF or
// LF, a byte-order mark, the contract's delimiter.
type csvDecoder struct {
	lim  *limitReader
	cr   *csv.Reader
	bom  int64
	rec  []string
	ln   int64
	cols int
	max  int
}

func newCSV(r io.Reader, delim rune, max int) *csvDecoder {
	lim := &limitReader{r: r, max: int64(max) + csvBuffer}
	br := bufio.NewReaderSize(lim, csvBuffer)
	d := &csvDecoder{lim: lim, max: max}
	if b, _ := br.Peek(3); bytes.Equal(b, utf8BOM) {
		br.Discard(3)
		d.bom = 3
	}
	// encoding/csv keeps br (it is already a large enough bufio.Reader),
	// so the limit reader sees every byte that csv reads ahead.
	d.cr = csv.NewReader(br)
	d.cr.Comma = delim
	d.cr.ReuseRecord = true
	return d
}

func (d *csvDecoder) header() ([]string, error) {
	rec, err := d.read()
	if err == io.EOF {
		return nil, quarantine("empty file: no header row")
	}
	if err != nil {
		var pe *csv.ParseError
		var ce *contentError
		switch {
		case errors.As(err, &pe):
			return nil, quarantine("header (line %d): %v", pe.Line, pe.Err)
		case errors.As(err, &ce):
			return nil, quarantine("header: %s", ce.msg)
		}
		return nil, err
	}
	d.cols = len(rec)
	return append([]string(nil), rec...), nil
}

// read reads a record and moves the limit's mark to its end.
func (d *csvDecoder) read() ([]string, error) {
	rec, err := d.cr.Read()
	d.lim.mark = d.bom + d.cr.InputOffset()
	if errors.Is(err, errTooLong) {
		return nil, &contentError{msg: fmt.Sprintf("longer than %s without a line end (a line that never ends, or a quote that is never closed?)", byteCount(d.max)), row: true}
	}
	return rec, err
}

func (d *csvDecoder) next() (error, error) {
	rec, err := d.read()
	if err == nil {
		d.rec = rec
		l, _ := d.cr.FieldPos(0)
		d.ln = int64(l)
		if len(rec) != d.cols {
			return fmt.Errorf("%d fields, want %d as in the header", len(rec), d.cols), nil
		}
		return nil, nil
	}
	var pe *csv.ParseError
	if !errors.As(err, &pe) {
		return nil, err
	}
	d.rec, d.ln = rec, int64(pe.StartLine)
	if pe.StartLine != pe.Line {
		// A quote left open swallowed the lines after it: what follows
		// cannot be trusted to be the rows the hospital meant.
		return nil, &contentError{msg: fmt.Sprintf("line %d: a quoted field opened here is still open at line %d (%v)", pe.StartLine, pe.Line, pe.Err)}
	}
	if errors.Is(pe.Err, csv.ErrFieldCount) {
		return fmt.Errorf("%d fields, want %d as in the header", len(rec), d.cols), nil
	}
	return fmt.Errorf("%v (at byte %d of the line)", pe.Err, pe.Column), nil
}

func (d *csvDecoder) parse(i int, c *contract.Column) (models.Value, *models.FieldError) {
	return c.ParseText(d.rec[i])
}

func (d *csvDecoder) raw() []string { return slices.Clone(d.rec) }

func (d *csvDecoder) line() int64 { return d.ln }

func (d *csvDecoder) width() int { return len(d.rec) }

func (d *csvDecoder) cellSize(i int) int { return len(d.rec[i]) }

var errTooLong = errors.New("record too long")

// limitReader fails once it has been read more than max bytes past mark,
// the end of the last complete record: a record can never grow past the
// limit (plus one read-ahead buffer) in memory.
type limitReader struct {
	r       io.Reader
	n, mark int64
	max     int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n-l.mark > l.max {
		return 0, errTooLong
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	return n, err
}

func byteCount(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
