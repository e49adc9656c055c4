package serving

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// rotatingFile appends to a file and, before a write would take it past
// max bytes, renames it aside as STEM_TIMESTAMP.EXT (predictions.jsonl
// becomes predictions_20261103T140501.123Z.jsonl) and starts a new one. A
// rotated file is complete and never written again, so a job that ships
// the logs (to the hospital's SFTP drop) takes the rotated files and
// leaves the live one. The keep newest rotated files stay; older ones are
// removed. Its caller serialises writes.
type rotatingFile struct {
	path      string
	stem, ext string
	max       int64
	keep      int
	f         *os.File
	size      int64
}

const rotatedLayout = "20060102T150405.000Z"

func openRotating(path string, max int64, keep int) (*rotatingFile, error) {
	ext := filepath.Ext(path)
	r := &rotatingFile{path: path, stem: strings.TrimSuffix(path, ext), ext: ext, max: max, keep: keep}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

// open opens the live file for appending: a restarted server carries on
// with the file it left.
func (r *rotatingFile) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("prediction log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("prediction log: %w", err)
	}
	r.f, r.size = f, st.Size()
	return nil
}

func (r *rotatingFile) Write(p []byte) (int, error) {
	if r.f == nil {
		// A rotation failed to open the new file: try again.
		if err := r.open(); err != nil {
			return 0, err
		}
	}
	if r.size > 0 && r.size+int64(len(p)) > r.max {
		if err := r.rotate(); err != nil {
			return 0, err
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("prediction log %s: %w", r.path, err)
	}
	return n, nil
}

func (r *rotatingFile) rotate() error {
	if err := r.f.Close(); err != nil {
		return fmt.Errorf("prediction log %s: %w", r.path, err)
	}
	r.f = nil
	// Two rotations in one millisecond wait for the next, so that names
	// stay unique and in order.
	var aside string
	for {
		aside = r.stem + "_" + time.Now().UTC().Format(rotatedLayout) + r.ext
		if _, err := os.Lstat(aside); errors.Is(err, os.ErrNotExist) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := os.Rename(r.path, aside); err != nil {
		return fmt.Errorf("prediction log: rotate %s: %w", r.path, err)
	}
	if err := r.open(); err != nil {
		return err
	}
	return r.prune()
}

// prune removes the oldest rotated files beyond keep. The timestamps in
// their names sort as the files were rotated.
func (r *rotatingFile) prune() error {
	rotated, err := r.rotated()
	if err != nil {
		return err
	}
	var errs []error
	for _, old := range rotated[:max(0, len(rotated)-r.keep)] {
		if err := os.Remove(old); err != nil {
			errs = append(errs, fmt.Errorf("prediction log: remove %s: %w", old, err))
		}
	}
	return errors.Join(errs...)
}

// rotated lists the rotated files, oldest first.
func (r *rotatingFile) rotated() ([]string, error) {
	dir := filepath.Dir(r.path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("prediction log: %w", err)
	}
	prefix := filepath.Base(r.stem) + "_"
	var out []string
	for _, e := range entries {
		name := e.Name()
		stamp, ok1 := strings.CutPrefix(name, prefix)
		stamp, ok2 := strings.CutSuffix(stamp, r.ext)
		if !ok1 || !ok2 || e.IsDir() {
			continue
		}
		if _, err := time.Parse(rotatedLayout, stamp); err != nil {
			continue
		}
		out = append(out, filepath.Join(dir, name))
	}
	slices.Sort(out)
	return out, nil
}

func (r *rotatingFile) Close() error {
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
