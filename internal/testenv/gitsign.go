package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// GPGKey is an OpenPGP key that the real gpg made, in a GNUPGHOME of its
// own, without a passphrase.
type GPGKey struct {
	Home        string
	Email       string
	Fingerprint string
	// Public and Secret are the armored exports (gpg --armor --export,
	// --export-secret-keys).
	Public, Secret string
}

// NewGPGKey makes an ed25519 signing key for "name <email>" with gpg.
func NewGPGKey(t testing.TB, name, email string) *GPGKey {
	t.Helper()
	gpg := LookPath(t, "gpg", "gpg")
	// gpg-agent's socket lives in the home: keep its path short.
	home, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	k := &GPGKey{Home: home, Email: email}
	t.Cleanup(func() {
		exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").Run()
		os.RemoveAll(home)
	})
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(gpg, append([]string{"--homedir", home, "--batch", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
		return string(out)
	}
	run("--quick-gen-key", name+" <"+email+">", "ed25519", "sign", "never")
	for _, line := range strings.Split(run("--with-colons", "--list-keys", email), "\n") {
		if f := strings.Split(line, ":"); f[0] == "fpr" && k.Fingerprint == "" {
			k.Fingerprint = f[9]
		}
	}
	k.Public = run("--armor", "--export", email)
	k.Secret = run("--armor", "--export-secret-keys", email)
	return k
}

// SSHKey is an ed25519 key that the real ssh-keygen made.
type SSHKey struct {
	// Private is the private key's file; Public its authorized_keys line.
	Private string
	Public  string
}

// NewSSHKey makes an ed25519 key without a passphrase with ssh-keygen.
func NewSSHKey(t testing.TB, comment string) *SSHKey {
	t.Helper()
	bin := LookPath(t, "ssh-keygen", "openssh-client")
	file := filepath.Join(t.TempDir(), "id_ed25519")
	Run(t, "", bin, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", file)
	pub, err := os.ReadFile(file + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return &SSHKey{Private: file, Public: strings.TrimSpace(string(pub))}
}

// AllowedSigner is the key's line of an allowed-signers file.
func (k *SSHKey) AllowedSigner(principal string) string {
	return principal + " " + k.Public
}

// GitSigned runs the real git in dir as Git does, signing the commits it
// makes with key (a *GPGKey or an *SSHKey, git's gpg.format=ssh; nil signs
// nothing), and returns its trimmed output.
func GitSigned(t testing.TB, dir string, key any, args ...string) string {
	t.Helper()
	bin := LookPath(t, "git", "git")
	env := append(os.Environ(), GitEnv...)
	var conf []string
	switch k := key.(type) {
	case *GPGKey:
		env = append(env, "GNUPGHOME="+k.Home)
		conf = []string{"-c", "gpg.format=openpgp", "-c", "user.signingkey=" + k.Fingerprint, "-c", "commit.gpgsign=true"}
	case *SSHKey:
		conf = []string{"-c", "gpg.format=ssh", "-c", "user.signingkey=" + k.Private, "-c", "commit.gpgsign=true"}
	case nil:
		conf = []string{"-c", "commit.gpgsign=false"}
	default:
		t.Fatalf("GitSigned: key %T: want *GPGKey, *SSHKey or nil", key)
	}
	cmd := exec.Command(bin, append(conf, args...)...)
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}
