package fetch

import (
	"context"
	"io"
	"net/url"
	"os"
	"path/filepath"
)

// Dir is a drop box in a local folder, laid out as on the SFTP server
// (DIR/<inbound.folder>/...): `ward ingest --from DIR` backfills from it.
type Dir string

// List lists folder's regular files (following symbolic links, as a
// backfill folder may link to an archive).
func (d Dir) List(ctx context.Context, folder string) ([]Entry, error) {
	dir := filepath.Join(string(d), filepath.FromSlash(folder))
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, de := range des {
		fi, err := os.Stat(filepath.Join(dir, de.Name()))
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		out = append(out, Entry{Name: de.Name(), Size: fi.Size(), ModTime: fi.ModTime()})
	}
	return out, ctx.Err()
}

// Open opens a file of folder.
func (d Dir) Open(ctx context.Context, folder, name string) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return os.Open(filepath.Join(string(d), filepath.FromSlash(folder), name))
}

// URL is file:///abs/DIR/folder/name.
func (d Dir) URL(folder, name string) string {
	abs, err := filepath.Abs(filepath.Join(string(d), filepath.FromSlash(folder), name))
	if err != nil {
		abs = filepath.Join(string(d), folder, name)
	}
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String()
}
