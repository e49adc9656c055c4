package manifest

import (
	"context"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/wardml/ward/internal/testenv"
)

// Deploys over SSH to a real sshd, with a key and the server's host key
// in a known_hosts file; an unknown host key is refused.
func TestDeployOverSSH(t *testing.T) {
	sshd := testenv.StartSSHD(t)
	remote := filepath.Join(sshd.Root, "manifest.git")
	testenv.Git(t, "", "init", "--quiet", "--bare", "--initial-branch=main", remote)
	url := "ssh://" + sshd.User + "@" + sshd.Addr + remote

	r := newRepo(t, url, WithSSHKey(sshd.ClientKey), WithKnownHosts(sshd.KnownHosts))
	if _, err := r.Init(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	res := deploy(t, r, "st-olaf/v1")
	if remoteHead(t, remote) != res.Commits[0] {
		t.Fatal("the deploy did not land")
	}

	stranger := filepath.Join(t.TempDir(), "known_hosts")
	writeFile(t, stranger, "")
	r = newRepo(t, url, WithSSHKey(sshd.ClientKey), WithKnownHosts(stranger))
	_, err := r.History(context.Background(), "st-olaf")
	wantErr(t, err, ErrUnreachable, "key is unknown")
}

func TestSSHSignedCommitsVerifyWithGit(t *testing.T) {
	keygen := testenv.LookPath(t, "ssh-keygen", "openssh-client")
	dir := t.TempDir()
	key := filepath.Join(dir, "id_ed25519")
	cmd := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-C", "ward-ci", "-f", key)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	allowed := filepath.Join(dir, "allowed_signers")
	writeFile(t, allowed, "ci@ward.invalid "+string(pub))

	remote, r := newRemote(t, WithSignKey(key))
	deploy(t, r, "st-olaf/v1")
	out, err := gitOutput(remote, "-c", "gpg.format=ssh", "-c", "gpg.ssh.allowedSignersFile="+allowed, "verify-commit", "main")
	if err != nil {
		t.Fatalf("git verify-commit: %v", err)
	}
	if !strings.Contains(out, `Good "git" signature for ci@ward.invalid`) {
		t.Fatalf("git verify-commit:\n%s", out)
	}
	// The init commit is signed too.
	if _, err := gitOutput(remote, "-c", "gpg.format=ssh", "-c", "gpg.ssh.allowedSignersFile="+allowed, "verify-commit", "main~1"); err != nil {
		t.Fatal(err)
	}
	// Another key's signature does not verify.
	other := filepath.Join(dir, "other")
	if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", other).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	otherPub, err := os.ReadFile(other + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, allowed, "ci@ward.invalid "+string(otherPub))
	out, err = gitOutput(remote, "-c", "gpg.format=ssh", "-c", "gpg.ssh.allowedSignersFile="+allowed, "verify-commit", "main")
	if err == nil || !strings.Contains(out, "No principal matched") {
		t.Fatalf("another key: %v\n%s", err, out)
	}
}

func TestOpenPGPSignedCommitsVerifyWithGit(t *testing.T) {
	gpg := testenv.LookPath(t, "gpg", "gnupg")
	dir := t.TempDir()
	e, err := openpgp.NewEntity("Ward CI", "", "ci@ward.invalid", nil)
	if err != nil {
		t.Fatal(err)
	}
	key, pub := filepath.Join(dir, "signing.asc"), filepath.Join(dir, "signing.pub.asc")
	for _, f := range []struct {
		name, block string
		write       func(w io.Writer) error
	}{
		{key, openpgp.PrivateKeyType, func(w io.Writer) error { return e.SerializePrivate(w, nil) }},
		{pub, openpgp.PublicKeyType, func(w io.Writer) error { return e.Serialize(w) }},
	} {
		file, err := os.Create(f.name)
		if err != nil {
			t.Fatal(err)
		}
		w, err := armor.Encode(file, f.block, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.write(w); err != nil {
			t.Fatal(err)
		}
		w.Close()
		file.Close()
	}
	home := filepath.Join(dir, "gnupg")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(gpg, "--homedir", home, "--batch", "--import", pub)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gpg --import: %v\n%s", err, out)
	}

	remote, r := newRemote(t, WithSignKey(key))
	deploy(t, r, "st-olaf/v1")
	verify := execGit(remote, "verify-commit", "main")
	verify.Env = append(verify.Env, "GNUPGHOME="+home)
	out, err := verify.CombinedOutput()
	if err != nil {
		t.Fatalf("git verify-commit: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `Good signature from "Ward CI <ci@ward.invalid>"`) {
		t.Fatalf("git verify-commit:\n%s", out)
	}
}

func TestLoadSignerRefuses(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.txt")
	writeFile(t, plain, "not a key\n")
	if _, err := LoadSigner(plain); err == nil || !strings.Contains(err.Error(), "want an armored OpenPGP private key or an OpenSSH private key") {
		t.Fatalf("error %v", err)
	}
	if _, err := LoadSigner(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing key loaded")
	}
	_, err := New(testenv.BareRepo(t), WithSignKey(plain))
	wantErr(t, err, ErrUsage, plain)
}

// Deploys over smart HTTP, the protocol of https:// remotes (here git
// http-backend behind a loopback server, without TLS), with a token; a
// wrong token is refused.
func TestDeployOverHTTPWithToken(t *testing.T) {
	gitBin := testenv.LookPath(t, "git", "git")
	root := t.TempDir()
	remote := filepath.Join(root, "manifest.git")
	testenv.Git(t, "", "init", "--quiet", "--bare", "--initial-branch=main", remote)
	testenv.Git(t, remote, "config", "http.receivepack", "true")
	backend := &cgi.Handler{Path: gitBin, Args: []string{"http-backend"}, Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if _, pass, ok := req.BasicAuth(); !ok || pass != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="manifest"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	url := srv.URL + "/manifest.git"

	r := newRepo(t, url, WithToken("s3cret"))
	if _, err := r.Init(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	res := deploy(t, r, "st-olaf/v1")
	if remoteHead(t, remote) != res.Commits[0] {
		t.Fatal("the deploy did not land")
	}
	_, err := newRepo(t, url, WithToken("wrong")).History(context.Background(), "st-olaf")
	wantErr(t, err, ErrUnreachable, "authentication required")
}
