package sftpd

import (
	"io"
	"os"
	"path"
	"time"

	"github.com/pkg/sftp"
)

// rootFS answers SFTP requests from one folder. Every path goes through
// os.Root, which refuses to leave the folder by .. or by a symbolic link,
// so a client cannot read or write anything outside it.
type rootFS struct{ root *os.Root }

func openRoot(dir string) (*rootFS, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &rootFS{root: r}, nil
}

// rel turns the request's absolute, cleaned path into one inside the root.
func rel(p string) string {
	p = path.Clean("/" + p)
	if p == "/" {
		return "."
	}
	return p[1:]
}

func (fs *rootFS) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	return fs.root.Open(rel(r.Filepath))
}

func (fs *rootFS) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	return fs.open(r, os.O_WRONLY)
}

// OpenFile serves opens for reading and writing at once.
func (fs *rootFS) OpenFile(r *sftp.Request) (sftp.WriterAtReaderAt, error) {
	return fs.open(r, os.O_RDWR)
}

func (fs *rootFS) open(r *sftp.Request, mode int) (*os.File, error) {
	pf := r.Pflags()
	flags := mode
	if pf.Creat {
		flags |= os.O_CREATE
	}
	if pf.Trunc {
		flags |= os.O_TRUNC
	}
	if pf.Excl {
		flags |= os.O_EXCL
	}
	// No O_APPEND: the request server writes at offsets, which O_APPEND
	// would ignore.
	return fs.root.OpenFile(rel(r.Filepath), flags, 0o644)
}

func (fs *rootFS) Filecmd(r *sftp.Request) error {
	p := rel(r.Filepath)
	switch r.Method {
	case "Setstat":
		return fs.setstat(r, p)
	case "Rename":
		// SFTP's rename must not replace an existing file.
		if _, err := fs.root.Lstat(rel(r.Target)); err == nil {
			return os.ErrExist
		}
		return fs.root.Rename(p, rel(r.Target))
	case "PosixRename":
		return fs.root.Rename(p, rel(r.Target))
	case "Rmdir", "Remove":
		return fs.root.Remove(p)
	case "Mkdir":
		return fs.root.Mkdir(p, 0o755)
	}
	// Links could point outside the root: not offered.
	return sftp.ErrSSHFxOpUnsupported
}

// PosixRename is the posix-rename@openssh.com extension (replaces).
func (fs *rootFS) PosixRename(r *sftp.Request) error {
	return fs.root.Rename(rel(r.Filepath), rel(r.Target))
}

func (fs *rootFS) setstat(r *sftp.Request, p string) error {
	flags, attrs := r.AttrFlags(), r.Attributes()
	if flags.Size {
		f, err := fs.root.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		err = f.Truncate(int64(attrs.Size))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	if flags.Permissions {
		if err := fs.root.Chmod(p, os.FileMode(attrs.Mode).Perm()); err != nil {
			return err
		}
	}
	if flags.Acmodtime {
		if err := fs.root.Chtimes(p, time.Unix(int64(attrs.Atime), 0), time.Unix(int64(attrs.Mtime), 0)); err != nil {
			return err
		}
	}
	return nil
}

func (fs *rootFS) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	p := rel(r.Filepath)
	switch r.Method {
	case "List":
		d, err := fs.root.Open(p)
		if err != nil {
			return nil, err
		}
		defer d.Close()
		entries, err := d.ReadDir(-1)
		if err != nil {
			return nil, err
		}
		infos := make(lister, 0, len(entries))
		for _, e := range entries {
			fi, err := e.Info()
			if err != nil {
				continue // removed since the listing
			}
			infos = append(infos, fi)
		}
		return infos, nil
	case "Stat":
		fi, err := fs.root.Stat(p)
		if err != nil {
			return nil, err
		}
		return lister{fi}, nil
	}
	return nil, sftp.ErrSSHFxOpUnsupported
}

// Lstat answers lstat without following a final symbolic link.
func (fs *rootFS) Lstat(r *sftp.Request) (sftp.ListerAt, error) {
	fi, err := fs.root.Lstat(rel(r.Filepath))
	if err != nil {
		return nil, err
	}
	return lister{fi}, nil
}

type lister []os.FileInfo

func (l lister) ListAt(out []os.FileInfo, offset int64) (int, error) {
	if offset >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(out, l[offset:])
	if n < len(out) {
		return n, io.EOF
	}
	return n, nil
}
