// Package sftpd is ward's in-process SSH and SFTP server: the embedded
// default behind the hospitals' drop box, for `ward demo` and for the
// ingest tests on a machine without OpenSSH. It is a real server (the
// pkg/sftp request server over golang.org/x/crypto/ssh, on 127.0.0.1),
// not a stand-in: ward's fetch talks to it exactly as it talks to sshd.
//
// It serves one folder as the SFTP root, confined with os.Root so that no
// path (.., symbolic links) reaches outside it, and accepts public-key
// logins by the authorized keys it is given (any user name). Its host key
// is generated unless one is given, and it can write the known_hosts line
// that ward's host key check needs.
package sftpd

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Server is a running SSH server with the SFTP subsystem.
type Server struct {
	// Addr is the address it listens on (127.0.0.1:PORT).
	Addr string
	// HostKey is the server's public host key.
	HostKey ssh.PublicKey
	// Root is the folder served as "/".
	Root string

	ln       net.Listener
	config   *ssh.ServerConfig
	handlers sftp.Handlers
	log      *slog.Logger

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

type options struct {
	addr     string
	hostKey  ssh.Signer
	handlers *sftp.Handlers
	log      *slog.Logger
}

// Option changes how Start sets up the server.
type Option func(*options)

// WithAddr listens on addr instead of 127.0.0.1:0 (a free port).
func WithAddr(addr string) Option { return func(o *options) { o.addr = addr } }

// WithHostKey uses the given host key instead of a fresh ed25519 one, so
// that a known_hosts file written earlier stays valid across restarts.
func WithHostKey(s ssh.Signer) Option { return func(o *options) { o.hostKey = s } }

// WithHandlers serves the given SFTP handlers instead of the root folder:
// a server whose file system is not a folder (the fetch tests use it to
// play a hostile server that lists names no folder can hold).
func WithHandlers(h sftp.Handlers) Option { return func(o *options) { o.handlers = &h } }

// WithLogger logs connections and their errors (default: discarded).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// Start serves root over SFTP to clients that log in with one of the
// authorized keys. It returns once the server accepts connections; Close
// stops it.
func Start(root string, authorized []ssh.PublicKey, opts ...Option) (*Server, error) {
	o := options{addr: "127.0.0.1:0", log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	if len(authorized) == 0 {
		return nil, errors.New("sftpd: no authorized keys: nobody could log in")
	}
	if o.hostKey == nil {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("sftpd: host key: %w", err)
		}
		if o.hostKey, err = ssh.NewSignerFromKey(priv); err != nil {
			return nil, fmt.Errorf("sftpd: host key: %w", err)
		}
	}
	handlers := o.handlers
	if handlers == nil {
		fs, err := openRoot(root)
		if err != nil {
			return nil, fmt.Errorf("sftpd: root %s: %w", root, err)
		}
		handlers = &sftp.Handlers{FileGet: fs, FilePut: fs, FileCmd: fs, FileList: fs}
	}
	allowed := make(map[string]bool, len(authorized))
	for _, k := range authorized {
		allowed[string(k.Marshal())] = true
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if allowed[string(key.Marshal())] {
				return &ssh.Permissions{}, nil
			}
			return nil, fmt.Errorf("key %s is not authorized", ssh.FingerprintSHA256(key))
		},
	}
	cfg.AddHostKey(o.hostKey)
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return nil, fmt.Errorf("sftpd: listen on %s: %w", o.addr, err)
	}
	s := &Server{
		Addr:     ln.Addr().String(),
		HostKey:  o.hostKey.PublicKey(),
		Root:     root,
		ln:       ln,
		config:   cfg,
		handlers: *handlers,
		log:      o.log,
		conns:    map[net.Conn]struct{}{},
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// URL returns sftp://user@addr/base, the form of WARD_SFTP.
func (s *Server) URL(user, base string) string {
	return fmt.Sprintf("sftp://%s@%s%s", user, s.Addr, base)
}

// KnownHostsLine is the known_hosts line for this server's host key.
func (s *Server) KnownHostsLine() string {
	return knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostKey)
}

// WriteKnownHosts writes a known_hosts file that holds this server's key.
func (s *Server) WriteKnownHosts(file string) error {
	return os.WriteFile(file, []byte(s.KnownHostsLine()+"\n"), 0o600)
}

// Close stops accepting, drops every open connection and waits for their
// goroutines to end.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	err := s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serve(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

func (s *Server) serve(c net.Conn) {
	sc, chans, reqs, err := ssh.NewServerConn(c, s.config)
	if err != nil {
		s.log.Debug("sftpd: handshake failed", "client.address", c.RemoteAddr().String(), "error.message", err.Error())
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only session channels")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.session(ch, chReqs)
		}()
	}
	wg.Wait()
}

// session serves one channel: the sftp subsystem, and nothing else (no
// shell, no exec).
func (s *Server) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		ok := req.Type == "subsystem" && len(req.Payload) >= 4 && string(req.Payload[4:]) == "sftp"
		if req.WantReply {
			req.Reply(ok, nil)
		}
		if !ok {
			continue
		}
		go ssh.DiscardRequests(reqs)
		rs := sftp.NewRequestServer(ch, s.handlers)
		if err := rs.Serve(); err != nil && !errors.Is(err, io.EOF) {
			s.log.Debug("sftpd: session ended", "error.message", err.Error())
		}
		rs.Close()
		return
	}
}

// WriteKey writes a new ed25519 private key in OpenSSH format to file
// (0600) and returns its public key: the client key of `ward demo`.
func WriteKey(file string) (ssh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	return ssh.NewPublicKey(pub)
}
