package extract

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"

	"github.com/wardml/ward/internal/contract"
)

// The contract's limits (inbound.limits), as a reader of one file meets
// them: each refusal names the limit and the setting that raises it.
func overLimit(what string, limit contract.ByteSize, setting string) *contentError {
	return &contentError{msg: fmt.Sprintf("%s over %s (the contract's inbound.limits.%s; raise it there if the file is genuine)", what, limit, setting)}
}

// plainLimit fails a plaintext stream once it has given more than max
// bytes: a small file that decompresses into gigabytes stops there.
type plainLimit struct {
	r   io.Reader
	n   int64
	max contract.ByteSize
}

func (l *plainLimit) Read(p []byte) (int, error) {
	if l.n > int64(l.max) {
		return 0, l.over()
	}
	if rest := int64(l.max) + 1 - l.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.n > int64(l.max) {
		return n, l.over()
	}
	return n, err
}

func (l *plainLimit) over() error {
	return &QuarantineError{Reason: overLimit("plaintext", l.max, "max_plaintext_bytes").msg}
}

// LimitPlaintext caps a plaintext stream at h's max_plaintext_bytes, for
// a reader other than Extractor (the prediction logs): over it, reading
// fails with a *QuarantineError.
func LimitPlaintext(r io.Reader, h *contract.Hospital) io.Reader {
	return &plainLimit{r: r, max: h.Inbound.Limits.MaxPlaintextBytes}
}

// sealedSpool is a plaintext without random access (an OpenPGP stream)
// spooled to local disk so that a Parquet reader can seek in it, in
// memory that does not grow with the file. What reaches the disk is
// encrypted (AES-256-CTR under a key held in memory only) and the file is
// unlinked at once, so the plaintext never lands on disk in the clear
// and dies with the process.
type sealedSpool struct {
	f     *os.File
	block cipher.Block
	iv    [aes.BlockSize]byte
	size  int64
}

// spool copies r, at most max bytes of it, into a sealed spool.
func spool(r io.Reader, max contract.ByteSize) (*sealedSpool, error) {
	key := make([]byte, 32)
	rand.Read(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp("", "ward-plain-*")
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	os.Remove(f.Name())
	s := &sealedSpool{f: f, block: block}
	rand.Read(s.iv[:])
	bw := bufio.NewWriterSize(f, 1<<20)
	w := cipher.StreamWriter{S: cipher.NewCTR(block, s.iv[:]), W: bw}
	s.size, err = io.CopyBuffer(w, &plainLimit{r: r, max: max}, make([]byte, 1<<20))
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

// ReadAt decrypts from off: CTR's counter for a block is the IV plus the
// block's index.
func (s *sealedSpool) ReadAt(p []byte, off int64) (int, error) {
	n, err := s.f.ReadAt(p, off)
	var ctr [aes.BlockSize]byte
	hi, lo := binary.BigEndian.Uint64(s.iv[:8]), binary.BigEndian.Uint64(s.iv[8:])
	idx := uint64(off / aes.BlockSize)
	if lo+idx < lo {
		hi++
	}
	binary.BigEndian.PutUint64(ctr[:8], hi)
	binary.BigEndian.PutUint64(ctr[8:], lo+idx)
	stream := cipher.NewCTR(s.block, ctr[:])
	var skip [aes.BlockSize]byte
	stream.XORKeyStream(skip[:off%aes.BlockSize], skip[:off%aes.BlockSize])
	stream.XORKeyStream(p[:n], p[:n])
	return n, err
}

// Size is the plaintext's size.
func (s *sealedSpool) Size() int64 { return s.size }

func (s *sealedSpool) Close() error { return s.f.Close() }

// parquetMagic begins and ends every Parquet file.
var parquetMagic = []byte("PAR1")

// checkFooter refuses a footer (the file's metadata, which a reader holds
// in memory) larger than the page limit, before anything reads it.
func checkFooter(ra io.ReaderAt, size int64, maxPage contract.ByteSize) error {
	if size < 12 {
		return quarantine("not a valid Parquet file: %d bytes", size)
	}
	var tail [8]byte
	if _, err := ra.ReadAt(tail[:], size-8); err != nil {
		return err
	}
	if !bytes.Equal(tail[4:], parquetMagic) {
		return quarantine("not a valid Parquet file: it does not end in PAR1")
	}
	if n := binary.LittleEndian.Uint32(tail[:4]); int64(n) > int64(maxPage) {
		return overLimit(fmt.Sprintf("a Parquet footer of %s,", contract.ByteSize(n)), maxPage, "max_page_bytes")
	}
	return nil
}

// checkPages reads every page header of the file (not the pages) and
// refuses a page whose uncompressed size is over the limit, before the
// reader decompresses one: a page of a few kilobytes of zstd can hold a
// cell of hundreds of megabytes.
func checkPages(f *parquet.File, ra io.ReaderAt, size int64, maxPage contract.ByteSize) error {
	md := f.Metadata()
	var window []byte
	for g, rg := range md.RowGroups {
		for c, col := range rg.Columns {
			m := col.MetaData
			start := m.DataPageOffset
			if m.DictionaryPageOffset > 0 && m.DictionaryPageOffset < start {
				start = m.DictionaryPageOffset
			}
			end := start + m.TotalCompressedSize
			if start < 4 || m.TotalCompressedSize < 0 || end > size {
				return quarantine("corrupt Parquet file: row group %d column %d lies outside the file", g, c)
			}
			for off := start; off < end; {
				var h format.PageHeader
				n, err := readPageHeader(ra, off, end, &h, &window)
				if err != nil {
					return quarantine("corrupt Parquet file: row group %d column %d: page header at byte %d: %v", g, c, off, err)
				}
				if h.UncompressedPageSize < 0 || h.CompressedPageSize < 0 {
					return quarantine("corrupt Parquet file: row group %d column %d: a page of negative size", g, c)
				}
				if int64(h.UncompressedPageSize) > int64(maxPage) {
					return overLimit(fmt.Sprintf("column %s: a Parquet page of %s uncompressed,", columnName(md, c), contract.ByteSize(h.UncompressedPageSize)), maxPage, "max_page_bytes")
				}
				off += n + int64(h.CompressedPageSize)
			}
		}
	}
	return nil
}

func columnName(md *format.FileMetaData, c int) string {
	if c+1 < len(md.Schema) {
		return md.Schema[c+1].Name
	}
	return fmt.Sprint(c)
}

// maxPageHeader bounds one page header (statistics included).
const maxPageHeader = 1 << 20

// readPageHeader decodes the page header at off, reading a small window
// first and a larger one only for a header that does not fit in it, and
// returns the header's length.
func readPageHeader(ra io.ReaderAt, off, end int64, h *format.PageHeader, window *[]byte) (int64, error) {
	for _, size := range []int64{4 << 10, maxPageHeader} {
		size = min(size, end-off)
		if int64(cap(*window)) < size {
			*window = make([]byte, size)
		}
		buf := (*window)[:size]
		n, err := ra.ReadAt(buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		br := bytes.NewReader(buf[:n])
		*h = format.PageHeader{}
		err = thrift.NewDecoder((&thrift.CompactProtocol{}).NewReader(br)).Decode(h)
		if err == nil {
			return int64(n - br.Len()), nil
		}
		if size == end-off {
			return 0, err
		}
	}
	return 0, fmt.Errorf("longer than %s", contract.ByteSize(maxPageHeader))
}
