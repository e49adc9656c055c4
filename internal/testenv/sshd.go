package testenv

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHD is a running OpenSSH sshd with the SFTP subsystem, that accepts one
// user with one key.
type SSHD struct {
	// Addr is 127.0.0.1:PORT.
	Addr string
	// User logs in with the private key in ClientKey.
	User      string
	ClientKey string
	// KnownHosts is a known_hosts file that holds the server's host key.
	KnownHosts string
	HostKey    ssh.PublicKey
	// Root is a folder the user can read and write (the SFTP base path).
	Root string
	svc  *service
}

// URL returns sftp://user@addr/path, the form of WARD_SFTP.
func (s *SSHD) URL(path string) string {
	return fmt.Sprintf("sftp://%s@%s%s", s.User, s.Addr, path)
}

// StartSSHD starts a real sshd for the test on a free loopback port, with
// fresh host and client keys, and stops it when the test ends.
func StartSSHD(t testing.TB) *SSHD {
	t.Helper()
	bin := LookPath(t, "sshd", "openssh-server", "/usr/sbin")
	sftpServer, err := lookPath("sftp-server", "/usr/lib/openssh", "/usr/lib/ssh", "/usr/libexec")
	Require(t, err == nil, "sftp-server not found: install the Debian package openssh-sftp-server")
	dir, err := os.MkdirTemp("", "ward-sshd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// sshd as root needs its privilege separation folder.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("sshd: %v", err)
		}
	}

	hostKeyFile := filepath.Join(dir, "host_ed25519")
	hostPub := writeKey(t, hostKeyFile)
	clientKeyFile := filepath.Join(dir, "client_ed25519")
	clientPub := writeKey(t, clientKeyFile)
	authorized := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authorized, ssh.MarshalAuthorizedKey(clientPub), 0o600); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}

	port := FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	knownHostsFile := filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(addr)}, hostPub)
	if err := os.WriteFile(knownHostsFile, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
AuthorizedKeysFile %s
PidFile none
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowUsers %s
Subsystem sftp %s
LogLevel ERROR
MaxStartups 100
MaxSessions 100
`, port, hostKeyFile, authorized, u.Username, sftpServer)
	confFile := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	svc, err := startService("sshd", exec.Command(bin, "-D", "-e", "-f", confFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.stop)
	if err := WaitTCP(addr, 30*time.Second, svc.exited); err != nil {
		t.Fatalf("sshd on %s: %v\n%s", addr, err, svc.Output())
	}
	s := &SSHD{Addr: addr, User: u.Username, ClientKey: clientKeyFile, KnownHosts: knownHostsFile, HostKey: hostPub, Root: root, svc: svc}
	if err := s.ping(); err != nil {
		t.Fatalf("sshd on %s: login: %v\n%s", addr, err, svc.Output())
	}
	return s
}

// Log returns what sshd printed.
func (s *SSHD) Log() string { return s.svc.Output() }

// ping logs in once, so that a test starts with a server that works.
func (s *SSHD) ping() error {
	key, err := os.ReadFile(s.ClientKey)
	if err != nil {
		return err
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		return err
	}
	cfg := &ssh.ClientConfig{
		User:            s.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(s.HostKey),
		Timeout:         10 * time.Second,
	}
	var lastErr error
	for range 50 {
		c, err := ssh.Dial("tcp", s.Addr, cfg)
		if err == nil {
			return c.Close()
		}
		lastErr = err
		if _, ok := err.(net.Error); !ok {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return lastErr
}

// writeKey writes a new ed25519 private key in OpenSSH format to file and
// returns its public key.
func writeKey(t testing.TB, file string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sshPub
}
