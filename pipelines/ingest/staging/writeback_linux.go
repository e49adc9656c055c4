package staging

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback starts the disk writes of a chunk of f, [off, off+n), and
// returns at once. It is a hint: an error changes nothing, the fsync that
// follows still makes the file durable.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
