package sftpd

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// start runs a server on a fresh root and returns it with a client logged
// in by key, checking the host key through the known_hosts file it wrote.
func start(t *testing.T) (*Server, *sftp.Client, *ssh.Client) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "id_ed25519")
	pub, err := WriteKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Start(root, []ssh.PublicKey{pub})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	kh := filepath.Join(dir, "known_hosts")
	if err := s.WriteKnownHosts(kh); err != nil {
		t.Fatal(err)
	}
	c := dial(t, s, keyFile, kh)
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return s, sc, c
}

func dial(t *testing.T, s *Server, keyFile, knownHosts string) *ssh.Client {
	t.Helper()
	key, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	hk, err := knownhosts.New(knownHosts)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", s.Addr, &ssh.ClientConfig{User: "hospital", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: hk, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("dial %s: %v", s.Addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestUploadListDownloadRename(t *testing.T) {
	s, c, _ := start(t)
	if err := c.MkdirAll("/st-olaf/inbound"); err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("case_id,total_bill\nC1,100\n"), 5000)
	f, err := c.Create("/st-olaf/inbound/cases.csv.part")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Rename("/st-olaf/inbound/cases.csv.part", "/st-olaf/inbound/cases.csv"); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	if err := c.Chtimes("/st-olaf/inbound/cases.csv", mtime, mtime); err != nil {
		t.Fatal(err)
	}
	infos, err := c.ReadDir("/st-olaf/inbound")
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].Name() != "cases.csv" || infos[0].Size() != int64(len(body)) || !infos[0].ModTime().Equal(mtime) {
		t.Fatalf("listing = %v", infos)
	}
	// On disk, in the root folder.
	disk, err := os.ReadFile(filepath.Join(s.Root, "st-olaf", "inbound", "cases.csv"))
	if err != nil || !bytes.Equal(disk, body) {
		t.Fatalf("file on disk: %d bytes, %v", len(disk), err)
	}
	r, err := c.Open("/st-olaf/inbound/cases.csv")
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := r.WriteTo(&got); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if !bytes.Equal(got.Bytes(), body) {
		t.Fatalf("downloaded %d bytes, want %d", got.Len(), len(body))
	}
	if err := c.Remove("/st-olaf/inbound/cases.csv"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Root, "st-olaf", "inbound", "cases.csv")); !os.IsNotExist(err) {
		t.Fatalf("removed file still there: %v", err)
	}
}

func TestNothingOutsideTheRoot(t *testing.T) {
	s, c, _ := start(t)
	outside := filepath.Join(filepath.Dir(s.Root), "secret")
	if err := os.WriteFile(outside, []byte("not yours"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(s.Root, "link")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"../secret", "/../secret", "/link"} {
		if f, err := c.Open(p); err == nil {
			b, _ := io.ReadAll(f)
			f.Close()
			if string(b) == "not yours" {
				t.Errorf("read %s outside the root", p)
			}
		}
	}
	if f, err := c.Create("/../escaped"); err == nil {
		f.Close()
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(s.Root), "escaped")); err == nil {
		t.Error("created a file outside the root")
	}
	if err := c.Symlink("/etc/passwd", "/passwd"); err == nil {
		t.Error("symlink allowed")
	}
}

func TestRefusesOtherKeysAndShells(t *testing.T) {
	s, _, client := start(t)
	other := filepath.Join(t.TempDir(), "other")
	if _, err := WriteKey(other); err != nil {
		t.Fatal(err)
	}
	key, _ := os.ReadFile(other)
	signer, _ := ssh.ParsePrivateKey(key)
	_, err := ssh.Dial("tcp", s.Addr, &ssh.ClientConfig{User: "x", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.FixedHostKey(s.HostKey), Timeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("login with an unauthorized key: %v", err)
	}
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if out, err := sess.CombinedOutput("id"); err == nil {
		t.Fatalf("exec allowed: %s", out)
	}
}

func TestCloseDropsConnections(t *testing.T) {
	s, c, _ := start(t)
	if _, err := c.ReadDir("/"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadDir("/"); err == nil {
		t.Fatal("client still served after Close")
	}
}
