package store

import (
	"bufio"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sync"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
)

// PostgreSQL's binary COPY format: the stream's framing (signature, flags,
// header extension length; end-of-data marker) and each field as its
// length (-1 for null) and its value in the type's binary form.
const (
	copyHeader  = "PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00"
	copyTrailer = "\xff\xff"
)

// PostgreSQL's dates and timestamps count from 2000-01-01.
const (
	pgEpochDays   = 10957
	pgEpochMicros = 946684800 * 1_000_000
)

// appendField appends one field of a binary COPY tuple for a column of
// type t (held as postgres.sqlType says).
func appendField(buf []byte, t models.Type, v models.Value) []byte {
	if v.Null {
		return binary.BigEndian.AppendUint32(buf, math.MaxUint32)
	}
	switch t {
	case models.String:
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(v.Str)))
		return append(buf, v.Str...)
	case models.Int:
		buf = binary.BigEndian.AppendUint32(buf, 8)
		return binary.BigEndian.AppendUint64(buf, uint64(int64(v.Num)))
	case models.Bool:
		buf = binary.BigEndian.AppendUint32(buf, 1)
		if v.Num != 0 {
			return append(buf, 1)
		}
		return append(buf, 0)
	case models.Date:
		buf = binary.BigEndian.AppendUint32(buf, 4)
		return binary.BigEndian.AppendUint32(buf, uint32(int32(int64(v.Num)-pgEpochDays)))
	case models.Timestamp:
		buf = binary.BigEndian.AppendUint32(buf, 8)
		return binary.BigEndian.AppendUint64(buf, uint64(timestamp(v).UnixMicro()-pgEpochMicros))
	}
	buf = binary.BigEndian.AppendUint32(buf, 8)
	return binary.BigEndian.AppendUint64(buf, math.Float64bits(v.Num))
}

// copyEncoder turns a file's rows into a binary COPY stream of the table's
// columns followed by ward's (their fields the same for every row, so
// encoded once), and writes each row to a spool as well: the rows on disk
// in the same format, and their keys beside them, so that the load can
// start over after a COPY that the table's key refused, however large the
// file, without keeping it in memory.
type copyEncoder struct {
	ctx    context.Context
	next   func() ([]models.Value, error, bool)
	cols   []contract.Column
	keyIdx []int
	ward   []byte
	rows   *spoolFile
	keys   *spoolFile

	mu       sync.Mutex // held by Read
	detached bool
	tuple    []byte
	pending  []byte // encoded, not yet read
	done     bool
	n        int64
	err      error
}

// Read gives COPY the next part of the stream.
func (e *copyEncoder) Read(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.detached {
		return 0, io.ErrClosedPipe
	}
	for len(e.pending) < len(p) && !e.done {
		e.encodeNext(true)
	}
	n := copy(p, e.pending)
	e.pending = e.pending[:copy(e.pending, e.pending[n:])]
	if n == 0 && e.done {
		if e.err != nil {
			return 0, e.err
		}
		return 0, io.EOF
	}
	return n, nil
}

// encodeNext encodes the next row into the spools and, when send is set,
// into the stream.
func (e *copyEncoder) encodeNext(send bool) {
	if e.pending == nil && send {
		e.pending = append(e.pending, copyHeader...)
	}
	if e.n%1024 == 0 {
		if e.err = e.ctx.Err(); e.err != nil {
			e.done = true
			return
		}
	}
	row, err, ok := e.next()
	if !ok {
		e.done = true
		if send {
			e.pending = append(e.pending, copyTrailer...)
		}
		return
	}
	if e.err = checkRow(e.n, row, err, e.cols); e.err != nil {
		e.done = true
		return
	}
	e.tuple = binary.BigEndian.AppendUint16(e.tuple[:0], uint16(len(e.cols)+3)) // and ward's: file, loaded at, period
	for i, c := range e.cols {
		e.tuple = appendField(e.tuple, c.Type, row[i])
	}
	e.tuple = append(e.tuple, e.ward...)
	if send {
		e.pending = append(e.pending, e.tuple...)
	}
	e.rows.write(e.tuple)
	e.tuple = binary.BigEndian.AppendUint16(e.tuple[:0], uint16(len(e.keyIdx)+1))
	for _, k := range e.keyIdx {
		e.tuple = appendField(e.tuple, e.cols[k].Type, row[k])
	}
	e.tuple = appendField(e.tuple, models.Int, models.Number(float64(e.n+1)))
	e.keys.write(e.tuple)
	e.n++
}

// tupleFilter passes a binary COPY stream on without the tuples whose
// place in it (from 1) skip holds: the rows a load refused.
type tupleFilter struct {
	r    *bufio.Reader
	skip map[int64]bool
	n    int64
	buf  []byte
	head bool
	done bool
	err  error
}

func (f *tupleFilter) Read(p []byte) (int, error) {
	for len(f.buf) == 0 && !f.done && f.err == nil {
		f.err = f.next()
	}
	if len(f.buf) == 0 {
		if f.err != nil {
			return 0, f.err
		}
		return 0, io.EOF
	}
	n := copy(p, f.buf)
	f.buf = f.buf[n:]
	return n, nil
}

// next reads the next tuple (or the header, or the trailer) into buf,
// leaving buf empty for a tuple it skips.
func (f *tupleFilter) next() error {
	f.buf = f.buf[:0]
	if !f.head {
		f.head = true
		f.buf = append(f.buf, copyHeader...)
		_, err := io.ReadFull(f.r, f.buf)
		return err
	}
	var b [4]byte
	if _, err := io.ReadFull(f.r, b[:2]); err != nil {
		return err
	}
	f.buf = append(f.buf, b[:2]...)
	fields := int16(binary.BigEndian.Uint16(b[:2]))
	if fields < 0 {
		f.done = true
		return nil
	}
	for range fields {
		if _, err := io.ReadFull(f.r, b[:4]); err != nil {
			return err
		}
		f.buf = append(f.buf, b[:4]...)
		if n := int32(binary.BigEndian.Uint32(b[:4])); n > 0 {
			start := len(f.buf)
			f.buf = slices.Grow(f.buf, int(n))[:start+int(n)]
			if _, err := io.ReadFull(f.r, f.buf[start:]); err != nil {
				return err
			}
		}
	}
	f.n++
	if f.skip[f.n] {
		f.buf = f.buf[:0]
	}
	return nil
}

// detach takes the rows back from COPY. When the connection dies, COPY
// returns while its reader goroutine may still be in Read; detach waits
// for that Read, and makes any later one fail.
func (e *copyEncoder) detach() {
	e.mu.Lock()
	e.detached = true
	e.mu.Unlock()
}

// drain reads the rest of the file into the spools, after a COPY that
// stopped part of the way.
func (e *copyEncoder) drain() error {
	for !e.done {
		e.encodeNext(false)
	}
	return e.err
}

// spoolFile is a binary COPY stream on local disk. The rows are patient
// data, so what reaches the disk is encrypted (AES-256-CTR under a key
// made for the spool and held in memory only), and the file is unlinked
// as soon as it is created: it dies with the process, whatever happens,
// and what it held cannot be read back from the disk.
type spoolFile struct {
	f     *os.File
	name  string
	w     *bufio.Writer
	block cipher.Block
	iv    []byte
	err   error
}

func newSpoolFile() (*spoolFile, error) {
	key, iv := make([]byte, 32), make([]byte, aes.BlockSize)
	rand.Read(key)
	rand.Read(iv)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	f, err := os.CreateTemp("", "ward-load-*.pgcopy")
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	os.Remove(f.Name())
	s := &spoolFile{f: f, name: f.Name(), block: block, iv: iv}
	s.w = bufio.NewWriterSize(&sealer{stream: cipher.NewCTR(block, iv), w: f}, 1<<20)
	s.write([]byte(copyHeader))
	return s, nil
}

// sealer encrypts what it writes on, through one buffer.
type sealer struct {
	stream cipher.Stream
	w      io.Writer
	buf    []byte
}

func (s *sealer) Write(p []byte) (int, error) {
	s.buf = slices.Grow(s.buf[:0], len(p))[:len(p)]
	s.stream.XORKeyStream(s.buf, p)
	return s.w.Write(s.buf)
}

func (s *spoolFile) write(b []byte) {
	if s.err == nil {
		_, s.err = s.w.Write(b)
	}
}

// reader ends the stream and returns it, decrypted, from its start.
func (s *spoolFile) reader() (io.Reader, error) {
	s.write([]byte(copyTrailer))
	if s.err == nil {
		s.err = s.w.Flush()
	}
	if s.err == nil {
		_, s.err = s.f.Seek(0, io.SeekStart)
	}
	if s.err != nil {
		return nil, fmt.Errorf("spool %s: %w", s.name, s.err)
	}
	return bufio.NewReaderSize(cipher.StreamReader{S: cipher.NewCTR(s.block, s.iv), R: s.f}, 1<<20), nil
}

func (s *spoolFile) remove() error { return s.f.Close() }
