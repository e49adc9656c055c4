// Package sftptest starts ward's in-process SFTP server for a test, with
// a client key and a known_hosts file, and has the misbehaving servers and
// connections that the download tests meet.
package sftptest

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/wardml/ward/internal/sftpd"
)

// Server is an in-process SFTP server that stops when the test ends.
type Server struct {
	*sftpd.Server
	// URL is sftp://ward@host:port/; Key is the client's private key file
	// and KnownHosts a known_hosts file that trusts the server.
	URL, Key, KnownHosts string
}

// Start serves root (or what opts give, such as sftpd.WithHandlers) to the
// user ward, who logs in with Key.
func Start(t testing.TB, root string, opts ...sftpd.Option) *Server {
	t.Helper()
	dir := t.TempDir()
	s := &Server{Key: filepath.Join(dir, "id_ed25519"), KnownHosts: filepath.Join(dir, "known_hosts")}
	pub, err := sftpd.WriteKey(s.Key)
	if err != nil {
		t.Fatal(err)
	}
	if s.Server, err = sftpd.Start(root, []ssh.PublicKey{pub}, opts...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Server.Close() })
	if err := s.WriteKnownHosts(s.KnownHosts); err != nil {
		t.Fatal(err)
	}
	s.URL = s.Server.URL("ward", "/")
	return s
}

// Hostile is an SFTP server that lists the names in Extra in every folder,
// beside the files under Root, and records every path it is asked to
// read. Without a Root, every folder holds just Extra, and every file
// reads "0123456789" (the size it lists).
//
// With Endless, each file of Extra is listed with Size bytes (default 10)
// and reads without end: a server that sends more than it listed.
type Hostile struct {
	Root    string
	Extra   []string
	Endless bool
	Size    int64

	mu     sync.Mutex
	paths  []string
	served atomic.Int64
}

// Served is the bytes that endless files have sent so far.
func (h *Hostile) Served() int64 { return h.served.Load() }

// Handlers serves h; give them to sftpd.WithHandlers.
func (h *Hostile) Handlers() sftp.Handlers {
	return sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h}
}

// Opened lists the paths read so far.
func (h *Hostile) Opened() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.paths)
}

func (h *Hostile) local(p string) string { return filepath.Join(h.Root, filepath.Clean("/"+p)) }

func (h *Hostile) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	var out listing
	if h.Root != "" {
		fi, err := os.Stat(h.local(r.Filepath))
		if err != nil {
			return nil, err
		}
		if r.Method == "Stat" || !fi.IsDir() {
			return listing{fi}, nil
		}
		des, err := os.ReadDir(h.local(r.Filepath))
		if err != nil {
			return nil, err
		}
		for _, de := range des {
			if fi, err := de.Info(); err == nil {
				out = append(out, fi)
			}
		}
	}
	size := int64(len(content))
	if h.Endless && h.Size > 0 {
		size = h.Size
	}
	for _, n := range h.Extra {
		out = append(out, named{n, size})
	}
	return out, nil
}

func (h *Hostile) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	h.mu.Lock()
	h.paths = append(h.paths, r.Filepath)
	h.mu.Unlock()
	if h.Endless && slices.Contains(h.Extra, filepath.Base(r.Filepath)) {
		return endless{&h.served}, nil
	}
	if h.Root == "" {
		return strings.NewReader(content), nil
	}
	return os.Open(h.local(r.Filepath))
}

func (h *Hostile) Filewrite(*sftp.Request) (io.WriterAt, error) { return nil, os.ErrPermission }
func (h *Hostile) Filecmd(*sftp.Request) error                  { return os.ErrPermission }

const content = "0123456789"

type listing []os.FileInfo

func (l listing) ListAt(out []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(out, l[off:])
	if n < len(out) {
		return n, io.EOF
	}
	return n, nil
}

// endless reads bytes at every offset, never an end.
type endless struct{ served *atomic.Int64 }

func (e endless) ReadAt(p []byte, off int64) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	e.served.Add(int64(len(p)))
	return len(p), nil
}

// named is a listed file of Extra.
type named struct {
	name string
	size int64
}

func (f named) Name() string       { return f.name }
func (f named) Size() int64        { return f.size }
func (f named) Mode() os.FileMode  { return 0o644 }
func (f named) ModTime() time.Time { return time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC) }
func (f named) IsDir() bool        { return false }
func (f named) Sys() any           { return nil }

// CutAfter is a dialer whose connections die after n bytes were read, as
// when the network drops in the middle of a download.
func CutAfter(n int64) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cc := &cutConn{Conn: c}
		cc.left.Store(n)
		return cc, nil
	}
}

type cutConn struct {
	net.Conn
	left atomic.Int64
}

func (c *cutConn) Read(p []byte) (int, error) {
	if c.left.Load() <= 0 {
		c.Conn.Close()
		return 0, errors.New("connection reset (cut by the test)")
	}
	n, err := c.Conn.Read(p)
	c.left.Add(-int64(n))
	return n, err
}
