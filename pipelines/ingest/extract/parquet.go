package extract

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
)

// parquetDecoder reads a Parquet file's flat columns by name, and maps
// their physical and logical types to the contract's column types.
type parquetDecoder struct {
	f     *parquet.File
	rows  *parquet.Reader
	buf   []parquet.Row
	i, n  int
	done  bool
	row   parquet.Row
	types []parquet.Type
	names []string
	spool *sealedSpool
}

// randomAccess is a plaintext that can be read anywhere: a staged file on
// disk, or a binary age file decrypted with random access.
type randomAccess interface {
	io.ReaderAt
	Size() int64
}

func newParquet(r io.Reader, lim contract.Limits) (d *parquetDecoder, err error) {
	var ra io.ReaderAt
	var size int64
	var sp *sealedSpool
	switch f := r.(type) {
	case randomAccess:
		ra, size = f, f.Size()
	case *os.File:
		fi, err := f.Stat()
		if err != nil {
			return nil, err
		}
		ra, size = f, fi.Size()
	default:
		// An OpenPGP stream has no random access: it is spooled, sealed,
		// to local disk. A file that does not even begin like Parquet is
		// refused before a byte of it is spooled.
		br := bufio.NewReader(r)
		if head, _ := br.Peek(len(parquetMagic)); !bytes.Equal(head, parquetMagic) {
			return nil, quarantine("not a valid Parquet file: it does not begin with PAR1")
		}
		if sp, err = spool(br, lim.MaxPlaintextBytes); err != nil {
			return nil, err
		}
		ra, size = sp, sp.Size()
	}
	d = &parquetDecoder{spool: sp, buf: make([]parquet.Row, 256)}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	if size > int64(lim.MaxPlaintextBytes) {
		return d, overLimit(fmt.Sprintf("a Parquet file of %s,", contract.ByteSize(size)), lim.MaxPlaintextBytes, "max_plaintext_bytes")
	}
	if err := checkFooter(ra, size, lim.MaxPageBytes); err != nil {
		return d, err
	}
	defer recoverCorrupt(&err)
	f, err := parquet.OpenFile(ra, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return d, quarantine("not a valid Parquet file: %v", err)
	}
	if err := checkPages(f, ra, size, lim.MaxPageBytes); err != nil {
		return d, err
	}
	d.f = f
	return d, nil
}

// close releases the spool of a streamed plaintext.
func (d *parquetDecoder) close() {
	if d.spool != nil {
		d.spool.Close()
	}
}

// recoverCorrupt turns a panic inside parquet-go, which a corrupt file can
// cause, into a quarantine: bad input never crashes ingest.
func recoverCorrupt(err *error) {
	if p := recover(); p != nil {
		*err = quarantine("corrupt Parquet file: %v", p)
	}
}

func (d *parquetDecoder) header() (names []string, err error) {
	defer recoverCorrupt(&err)
	schema := d.f.Schema()
	for _, p := range schema.Columns() {
		leaf, _ := schema.Lookup(p...)
		if len(p) != 1 || leaf.MaxRepetitionLevel > 0 {
			return nil, quarantine("Parquet column %s is nested or repeated: ward reads flat columns only", strings.Join(p, "."))
		}
		names = append(names, p[0])
		d.types = append(d.types, leaf.Node.Type())
	}
	d.names = names
	d.rows = parquet.NewReader(d.f)
	return names, nil
}

func (d *parquetDecoder) next() (rowErr error, err error) {
	defer recoverCorrupt(&err)
	if d.i == d.n {
		if d.done {
			return nil, io.EOF
		}
		n, err := d.rows.ReadRows(d.buf)
		if err == io.EOF {
			d.done = true
		} else if err != nil {
			return nil, quarantine("corrupt Parquet file: %v", err)
		}
		if n == 0 {
			return nil, io.EOF
		}
		d.i, d.n = 0, n
	}
	d.row = d.buf[d.i]
	d.i++
	if len(d.row) != len(d.names) {
		return fmt.Errorf("%d values, want one per column (%d)", len(d.row), len(d.names)), nil
	}
	return nil, nil
}

func (d *parquetDecoder) line() int64 { return 0 }

func (d *parquetDecoder) width() int { return len(d.row) }

func (d *parquetDecoder) cellSize(i int) int {
	switch v := d.row[i]; v.Kind() {
	case parquet.ByteArray, parquet.FixedLenByteArray:
		return len(v.ByteArray())
	}
	return 8
}

func (d *parquetDecoder) raw() []string {
	out := make([]string, len(d.row))
	for i, v := range d.row {
		if !v.IsNull() {
			out[i] = v.String()
		}
	}
	return out
}

func (d *parquetDecoder) parse(i int, c *contract.Column) (models.Value, *models.FieldError) {
	v := d.row[i]
	if v.IsNull() {
		return models.Missing, c.Check(models.Missing)
	}
	typ := d.types[i]
	var lt format.LogicalTypeValue
	if l := typ.LogicalType(); l != nil {
		lt = l.Value
	}
	fail := func(reason string) (models.Value, *models.FieldError) {
		return models.Missing, &models.FieldError{Column: c.Name, Value: v.String(), Reason: reason}
	}
	var num float64
	switch v.Kind() {
	case parquet.ByteArray, parquet.FixedLenByteArray:
		// Text in the file: parsed and checked like a CSV cell.
		return c.ParseText(string(v.ByteArray()))
	case parquet.Boolean:
		if c.Type != models.Bool && c.Type != models.String {
			return fail("a boolean in the file, want " + string(c.Type))
		}
		if v.Boolean() {
			num = 1
		}
		if c.Type == models.String {
			return checked(c, models.Text(strconv.FormatBool(v.Boolean())))
		}
		return checked(c, models.Number(num))
	case parquet.Int32, parquet.Int64:
		n := v.Int64()
		if v.Kind() == parquet.Int32 {
			n = int64(v.Int32())
		}
		switch t := lt.(type) {
		case *format.DateType:
			return timeValue(c, time.Unix(n*86400, 0).UTC(), fail)
		case *format.TimestampType:
			unit := t.Unit.Value.Duration()
			return timeValue(c, time.Unix(0, 0).Add(time.Duration(n)*unit).UTC(), fail)
		case *format.DecimalType:
			num = float64(n) / math.Pow10(int(t.Scale))
		default:
			num = float64(n)
		}
	case parquet.Float:
		num = float64(v.Float())
	case parquet.Double:
		num = v.Double()
	default:
		return fail(fmt.Sprintf("Parquet type %s is not supported", v.Kind()))
	}
	switch c.Type {
	case models.Int:
		if num != math.Trunc(num) {
			return fail("not a whole number")
		}
		return checked(c, models.Number(num))
	case models.Float:
		return checked(c, models.Number(num))
	case models.String:
		return checked(c, models.Text(strconv.FormatFloat(num, 'f', -1, 64)))
	}
	return fail("a number in the file, want " + string(c.Type))
}

func checked(c *contract.Column, v models.Value) (models.Value, *models.FieldError) {
	if ferr := c.Check(v); ferr != nil {
		return models.Missing, ferr
	}
	return v, nil
}

// timeValue maps a Parquet DATE or TIMESTAMP to a date or timestamp column.
func timeValue(c *contract.Column, t time.Time, fail func(string) (models.Value, *models.FieldError)) (models.Value, *models.FieldError) {
	switch c.Type {
	case models.Date:
		return checked(c, models.DateValue(t))
	case models.Timestamp:
		return checked(c, models.Value{Num: float64(t.UnixNano()) / 1e9})
	}
	return fail("a date or time in the file, want " + string(c.Type))
}
