package fetch

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"strings"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/wardml/ward/internal/config"
)

// SFTPConfig says where the drop box is and how to log in.
type SFTPConfig struct {
	// URL is sftp://user@host:port/base/path (WARD_SFTP).
	URL string
	// Key is the SSH private key file (WARD_SFTP_KEY).
	Key string
	// KnownHosts is the known_hosts file that must hold the server's host
	// key (WARD_KNOWN_HOSTS). There is no trust on first use.
	KnownHosts string
}

// SFTP is a drop box on an SFTP server.
type SFTP struct {
	url    config.SFTPURL
	conn   *ssh.Client
	client *sftp.Client
}

type dialOptions struct {
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	timeout time.Duration
}

// DialOption changes how Dial connects.
type DialOption func(*dialOptions)

// WithDialer connects through d instead of a plain TCP dial (a proxy or
// bastion; the fault tests cut connections with it).
func WithDialer(d func(ctx context.Context, network, addr string) (net.Conn, error)) DialOption {
	return func(o *dialOptions) { o.dial = d }
}

// WithTimeout bounds the connection and SSH handshake (default 30s).
func WithTimeout(d time.Duration) DialOption { return func(o *dialOptions) { o.timeout = d } }

// Dial connects and logs in. Every error it returns is about the settings
// or the server, not about a file (the ingest command exits with 2), and
// says what to do.
func Dial(ctx context.Context, c SFTPConfig, opts ...DialOption) (*SFTP, error) {
	o := dialOptions{dial: (&net.Dialer{}).DialContext, timeout: 30 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	u, err := config.ParseSFTP(c.URL)
	if err != nil {
		return nil, fmt.Errorf("WARD_SFTP: %w", err)
	}
	signer, err := loadKey(c.Key)
	if err != nil {
		return nil, err
	}
	check, algos, err := hostKeyCheck(c.KnownHosts, u.Host)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	raw, err := o.dial(ctx, "tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the SFTP server %s: %w (check WARD_SFTP, and that the server runs)", u.Host, err)
	}
	// The handshake has no context of its own: the deadline bounds it.
	deadline, _ := ctx.Deadline()
	raw.SetDeadline(deadline)
	var hostErr error
	cfg := &ssh.ClientConfig{
		User: u.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			hostErr = check(hostname, remote, key)
			return hostErr
		},
		HostKeyAlgorithms: algos,
	}
	sc, chans, reqs, err := ssh.NewClientConn(raw, u.Host, cfg)
	if err != nil {
		raw.Close()
		switch {
		case hostErr != nil:
			return nil, hostErr
		case strings.Contains(err.Error(), "unable to authenticate"):
			return nil, fmt.Errorf("the SFTP server %s refused the key WARD_SFTP_KEY (%s, %s %s) for user %s: add its public key to that user's authorized_keys on the server",
				u.Host, c.Key, signer.PublicKey().Type(), ssh.FingerprintSHA256(signer.PublicKey()), u.User)
		}
		return nil, fmt.Errorf("SSH connection to %s: %w", u.Host, err)
	}
	raw.SetDeadline(time.Time{})
	conn := ssh.NewClient(sc, chans, reqs)
	// Concurrent reads keep many requests in flight per file, as
	// OpenSSH's sftp does; File.WriteTo then streams in order.
	client, err := sftp.NewClient(conn, sftp.UseConcurrentReads(true), sftp.MaxConcurrentRequestsPerFile(64))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("SFTP on %s: %w (does the server offer the sftp subsystem?)", u.Host, err)
	}
	// A server that states its limits (OpenSSH's sftp-server, which reads
	// up to 255 KiB at once) takes reads larger than the 32 KiB every
	// server must: fewer round trips, as OpenSSH's own sftp client does.
	if _, ok := client.HasExtension("limits@openssh.com"); ok {
		if err := sftp.MaxPacketUnchecked(largeRead)(client); err != nil {
			client.Close()
			conn.Close()
			return nil, err
		}
	}
	return &SFTP{url: u, conn: conn, client: client}, nil
}

// largeRead is the read size for servers that state their limits.
const largeRead = 128 << 10

func loadKey(file string) (ssh.Signer, error) {
	if file == "" {
		return nil, errors.New("WARD_SFTP_KEY is not set: name the SSH private key that logs in to the SFTP server")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("WARD_SFTP_KEY: %w", err)
	}
	s, err := ssh.ParsePrivateKey(b)
	var pm *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &pm):
		return nil, fmt.Errorf("WARD_SFTP_KEY %s is protected by a passphrase: ward runs unattended and needs a key without one (a dedicated key, kept in the CI's secrets)", file)
	case err != nil:
		return nil, fmt.Errorf("WARD_SFTP_KEY %s: not an SSH private key: %w", file, err)
	}
	return s, nil
}

// hostKeyCheck checks the server's key against the known_hosts file, and
// returns the key types that file holds for host, so that the server is
// asked for one of those (else a server with several keys could offer one
// that the file does not list, and look changed).
func hostKeyCheck(file, host string) (ssh.HostKeyCallback, []string, error) {
	if file == "" {
		return nil, nil, errors.New("WARD_KNOWN_HOSTS is not set: ward checks the SFTP server's host key against it and never trusts a key on first use; create it with ssh-keyscan (and check the fingerprint with the server's administrator)")
	}
	cb, err := knownhosts.New(file)
	if err != nil {
		return nil, nil, fmt.Errorf("WARD_KNOWN_HOSTS %s: %w", file, err)
	}
	hostname, port, _ := net.SplitHostPort(host)
	keyscan := "ssh-keyscan -p " + port + " " + hostname
	if port == "22" {
		keyscan = "ssh-keyscan " + hostname
	}
	// Ask with a key that cannot match, to learn which ones would.
	pub, _, _ := ed25519.GenerateKey(nil)
	probe, _ := ssh.NewPublicKey(pub)
	var known []knownhosts.KnownKey
	var ke *knownhosts.KeyError
	if errors.As(cb(host, &net.TCPAddr{}, probe), &ke) {
		known = ke.Want
	}
	var algos []string
	for _, k := range known {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			algos = append(algos, t)
		}
	}
	check := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := cb(hostname, remote, key)
		var ke *knownhosts.KeyError
		var re *knownhosts.RevokedError
		offered := key.Type() + " " + ssh.FingerprintSHA256(key)
		switch {
		case errors.As(err, &re):
			return fmt.Errorf("the host key of the SFTP server %s (%s) is marked revoked in WARD_KNOWN_HOSTS (%s line %d): refusing to connect", host, offered, re.Revoked.Filename, re.Revoked.Line)
		case errors.As(err, &ke) && len(ke.Want) == 0:
			return fmt.Errorf("the SFTP server %s is not in WARD_KNOWN_HOSTS (%s): refusing to trust its host key %s on first use. If that is the server's key (check the fingerprint with its administrator), add it: %s >> %s",
				host, file, offered, keyscan, file)
		case errors.As(err, &ke):
			var held []string
			for _, w := range ke.Want {
				held = append(held, fmt.Sprintf("%s %s (line %d)", w.Key.Type(), ssh.FingerprintSHA256(w.Key), w.Line))
			}
			return fmt.Errorf("the host key of the SFTP server %s has CHANGED: it offered %s, but WARD_KNOWN_HOSTS (%s) holds %s; refusing to connect (someone may be impersonating the server). If the key was changed on purpose, replace those lines with the output of %s",
				host, offered, file, strings.Join(held, ", "), keyscan)
		}
		return err
	}
	return check, algos, nil
}

func (s *SFTP) dir(folder string) string { return path.Join(s.url.Base, folder) }

// List lists folder's regular files.
func (s *SFTP) List(ctx context.Context, folder string) ([]Entry, error) {
	infos, err := s.client.ReadDirContext(ctx, s.dir(folder))
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, fi := range infos {
		if fi.Mode().IsRegular() {
			out = append(out, Entry{Name: fi.Name(), Size: fi.Size(), ModTime: fi.ModTime()})
		}
	}
	return out, nil
}

// Open opens a file. The *sftp.File it returns implements io.WriterTo,
// which reads with many requests in flight.
func (s *SFTP) Open(ctx context.Context, folder, name string) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.client.Open(path.Join(s.dir(folder), name))
}

// URL is sftp://user@host:port/base/folder/name.
func (s *SFTP) URL(folder, name string) string {
	return "sftp://" + s.url.User + "@" + s.url.Host + path.Join(s.dir(folder), name)
}

// Close ends the session.
func (s *SFTP) Close() error {
	s.client.Close()
	return s.conn.Close()
}
