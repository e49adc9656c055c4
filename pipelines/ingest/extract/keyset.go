package extract

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/wardml/ward/models"
)

// keySet finds the rows of a file whose key an earlier row has, in memory
// that does not grow with the file: the ingest of a million rows must fit
// in the same memory as that of a hundred thousand.
//
// A blocked Bloom filter clears almost every row at once ("this key was
// never seen"); each key's hash and row number also go to a spill file. The
// filter keeps 16 bits a key (one false positive in about 2,000 rows): it
// starts small, so that it stays in the CPU's cache, and doubles from the
// spill as the file grows, so its memory is 2 bytes a row where a set of
// the keys would take 50. A row the filter cannot clear (a true repeat, or a rare false
// positive) waits; one sequential read of the spill settles the waiting rows
// exactly: a repeat is rejected naming the first row, any other row goes on
// to the loader, late. The spill holds keyed hashes (a random seed per
// process), never key values, so no patient data reaches the disk.
type keySet struct {
	bloom   []uint64
	n       int64 // keys added
	spill   *os.File
	w       *bufio.Writer
	waiting []waitingRow
	buf     [spillRecord]byte
	// repeats are the keys found repeated, with their first row: a key
	// sent a million times costs one read of the spill, not one per
	// maxWaiting of its repeats.
	repeats map[[2]uint64]int64
	// settleReads counts the spill's bytes that settling read.
	settleReads int64
}

// waitingRow is a row the filter could not clear.
type waitingRow struct {
	hash [2]uint64
	row  []models.Value
	num  int64
	line int64
}

const (
	// minBloomWords is the filter's first size: 2^14 words, 128 KiB, for
	// 65,536 keys; bitsPerKey is when it doubles.
	minBloomWords = 1 << 14
	bitsPerKey    = 16
	// blockWords is one cache line: each key sets bits in one block only.
	blockWords = 8
	// maxWaiting bounds the rows held back; past it they are settled
	// early, with a read of the spill so far.
	maxWaiting = 1 << 15
	// spillRecord is a hash (16 bytes) and a row number (8).
	spillRecord = 24
	// maxRepeats bounds the repeated keys remembered (24 MiB of them).
	maxRepeats = 1 << 20
)

func newKeySet(dir string) (*keySet, error) {
	f, err := os.CreateTemp(dir, "ward-keys-*")
	if err != nil {
		return nil, fmt.Errorf("key check: %w", err)
	}
	// Unlinked at once: the spill dies with the process, whatever happens.
	os.Remove(f.Name())
	return &keySet{bloom: make([]uint64, minBloomWords), spill: f, w: bufio.NewWriterSize(f, 1<<16), repeats: map[[2]uint64]int64{}}, nil
}

// close releases the spill.
func (k *keySet) close() { k.spill.Close() }

// add records a row's key and reports whether the filter cleared it. A row
// that is not cleared must be handed to wait.
func (k *keySet) add(h [2]uint64, num int64) (cleared bool, err error) {
	k.n++
	if k.n*bitsPerKey > int64(len(k.bloom))*64 {
		if err := k.grow(); err != nil {
			return false, err
		}
	}
	binary.LittleEndian.PutUint64(k.buf[0:], h[0])
	binary.LittleEndian.PutUint64(k.buf[8:], h[1])
	binary.LittleEndian.PutUint64(k.buf[16:], uint64(num))
	if _, err := k.w.Write(k.buf[:]); err != nil {
		return false, fmt.Errorf("key check: %w", err)
	}
	return !setBits(k.bloom, h), nil
}

// setBits sets the key's eight bits in its block of the filter and reports
// whether they were all set already.
func setBits(bloom []uint64, h [2]uint64) (seen bool) {
	blocks := uint64(len(bloom) / blockWords)
	block := (*[blockWords]uint64)(bloom[(h[0]%blocks)*blockWords:])
	// Seven positions (9 bits each) from the second hash, one from the top
	// of the first (its low bits chose the block).
	var mask [blockWords]uint64
	x := h[1]
	for range 7 {
		mask[(x&511)/64] |= 1 << (x & 63)
		x >>= 9
	}
	top := h[0] >> 55
	mask[top/64] |= 1 << (top & 63)
	seen = true
	for w := range block {
		if block[w]&mask[w] != mask[w] {
			seen = false
		}
		block[w] |= mask[w]
	}
	return seen
}

// grow doubles the filter and fills it again from the spill, which holds
// every key added so far.
func (k *keySet) grow() error {
	if err := k.w.Flush(); err != nil {
		return fmt.Errorf("key check: %w", err)
	}
	bloom := make([]uint64, 2*len(k.bloom))
	err := k.each(func(h [2]uint64, _ int64) { setBits(bloom, h) })
	k.bloom = bloom
	return err
}

// each calls f for every record of the spill written so far (flushed).
func (k *keySet) each(f func(h [2]uint64, num int64)) error {
	r := bufio.NewReaderSize(io.NewSectionReader(k.spill, 0, 1<<62), 1<<16)
	var rec [spillRecord]byte
	for {
		if _, err := io.ReadFull(r, rec[:]); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("key check: read the spill: %w", err)
		}
		f([2]uint64{binary.LittleEndian.Uint64(rec[0:]), binary.LittleEndian.Uint64(rec[8:])}, int64(binary.LittleEndian.Uint64(rec[16:])))
	}
}

// repeated returns the first row of a key already found repeated.
func (k *keySet) repeated(h [2]uint64) (first int64, ok bool) {
	first, ok = k.repeats[h]
	return first, ok
}

// wait holds back a row the filter could not clear; full reports whether
// it is time to settle the waiting rows.
func (k *keySet) wait(h [2]uint64, row []models.Value, num, line int64) (full bool) {
	k.waiting = append(k.waiting, waitingRow{hash: h, row: slices.Clone(row), num: num, line: line})
	return len(k.waiting) >= maxWaiting
}

// settle reads the spill written so far and calls decide for each waiting
// row, in row order, with the first row that has its key (its own number
// when no earlier row has it).
func (k *keySet) settle(decide func(w waitingRow, first int64) error) error {
	if len(k.waiting) == 0 {
		return nil
	}
	if err := k.w.Flush(); err != nil {
		return fmt.Errorf("key check: %w", err)
	}
	first := make(map[[2]uint64]int64, len(k.waiting))
	for _, w := range k.waiting {
		first[w.hash] = w.num
	}
	if err := k.each(func(h [2]uint64, n int64) {
		k.settleReads += spillRecord
		if f, ok := first[h]; ok && n < f {
			first[h] = n
		}
	}); err != nil {
		return err
	}
	waiting := k.waiting
	k.waiting = nil
	for _, w := range waiting {
		if f := first[w.hash]; f != w.num && len(k.repeats) < maxRepeats {
			k.repeats[w.hash] = f
		}
	}
	for _, w := range waiting {
		if err := decide(w, first[w.hash]); err != nil {
			return err
		}
	}
	return nil
}
