package store

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
)

// The load's spool holds the rows of an extract: on the disk they are
// encrypted, in a file that no folder lists, and they read back whole.
func TestSpoolKeepsNoPlaintextOnDisk(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	s, err := newSpoolFile()
	if err != nil {
		t.Fatal(err)
	}
	defer s.remove()
	row := []byte("patient P-0042 Jane Example, 1951-03-02, bill 18230.55\n")
	for range 50_000 { // past the 1 MiB buffer, so that some of it is on disk
		s.write(row)
	}
	if names, _ := os.ReadDir(os.Getenv("TMPDIR")); len(names) != 0 {
		t.Fatalf("the spool is listed: %v", names)
	}
	r, err := s.reader()
	if err != nil {
		t.Fatal(err)
	}
	onDisk := make([]byte, 2<<20)
	n, err := s.f.ReadAt(onDisk, 0)
	if err != nil && err != io.EOF {
		t.Fatal(err)
	}
	if n < 1<<20 || bytes.Contains(onDisk[:n], []byte("Jane Example")) || bytes.Contains(onDisk[:n], []byte("PGCOPY")) {
		t.Fatalf("%d bytes on disk, plaintext among them: %t", n, bytes.Contains(onDisk[:n], []byte("Jane")))
	}
	back, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	want := copyHeader + strings.Repeat(string(row), 50_000) + copyTrailer
	if string(back) != want {
		t.Fatalf("read back %d bytes, want %d", len(back), len(want))
	}
}
