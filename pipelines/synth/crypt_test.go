package synth

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/testenv"
)

// gnupg returns a gpg command in a fresh home with the given keys imported;
// the agent that gpg starts is stopped when the test ends.
func gnupg(t *testing.T, keys ...string) func(args ...string) *exec.Cmd {
	t.Helper()
	gpg := testenv.LookPath(t, "gpg", "gnupg")
	gpgconf := testenv.LookPath(t, "gpgconf", "gnupg")
	// A short path: the agent's socket must fit in 108 bytes.
	home, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command(gpgconf, "--homedir", home, "--kill", "all").Run()
		os.RemoveAll(home)
	})
	os.Chmod(home, 0o700)
	cmd := func(args ...string) *exec.Cmd {
		return exec.Command(gpg, append([]string{"--homedir", home, "--batch", "--no-tty"}, args...)...)
	}
	for _, k := range keys {
		if out, err := cmd("--import", k).CombinedOutput(); err != nil {
			t.Fatalf("gpg --import %s: %v\n%s", k, err, out)
		}
	}
	return cmd
}

// Encrypted extracts decrypt with the real gpg and age tools to the same
// bytes as the unencrypted extracts of the same seed: encryption draws
// fresh randomness, so this is how determinism holds for them.
func TestEncryptedExtractsDecryptWithGPGAndAge(t *testing.T) {
	ageBin := testenv.LookPath(t, "age", "age")
	opts := []Option{WithHospitals(2), WithMonths(3), WithDirt(0.01)}
	plain, _ := generate(t, append(opts, WithEncryption("none"))...)
	for _, armored := range []bool{false, true} {
		out, sum := generate(t, append(opts, WithEncryption("mixed"), WithArmor(armored))...)
		gpg := gnupg(t, filepath.Join(out, "keys", "ingest.pgp"))
		decrypted := 0
		for _, h := range sum.Hospitals {
			entries, err := os.ReadDir(h.Inbound)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				file := filepath.Join(h.Inbound, e.Name())
				data, _ := os.ReadFile(file)
				var cmd *exec.Cmd
				name, header := e.Name(), ""
				switch {
				case strings.HasSuffix(name, ".gpg"):
					cmd, header = gpg("--decrypt", file), "-----BEGIN PGP MESSAGE-----"
				case strings.HasSuffix(name, ".age"):
					cmd, header = exec.Command(ageBin, "-d", "-i", filepath.Join(out, "keys", "ingest.age"), file), "-----BEGIN AGE ENCRYPTED FILE-----"
				default:
					t.Fatalf("%s: not encrypted", file)
				}
				if bytes.HasPrefix(data, []byte(header)) != armored {
					t.Errorf("%s: armored %v, want %v", name, !armored, armored)
				}
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				if err := cmd.Run(); err != nil {
					t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, stderr.String())
				}
				want, err := os.ReadFile(filepath.Join(plain, "sftp", h.ID, "inbound", strings.TrimSuffix(strings.TrimSuffix(name, ".gpg"), ".age")))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(stdout.Bytes(), want) {
					t.Fatalf("%s decrypts to %d bytes that differ from the plaintext run's %d", name, stdout.Len(), len(want))
				}
				decrypted++
			}
		}
		if decrypted < 2*3*3 {
			t.Fatalf("decrypted %d files", decrypted)
		}
	}
}

// With signing, each OpenPGP hospital signs its extracts with its own key,
// whose public half sits beside its contract; gpg verifies the signature.
func TestSignedExtractsVerifyWithGPG(t *testing.T) {
	out, sum := generate(t, WithHospitals(2), WithMonths(1), WithEncryption("openpgp"), WithSigning(true))
	for _, h := range sum.Hospitals {
		c, err := contract.Load(h.Contract)
		if err != nil {
			t.Fatal(err)
		}
		if c.Inbound.SignedBy != "signing.pgp.pub" {
			t.Fatalf("%s: signed_by %q", h.ID, c.Inbound.SignedBy)
		}
		gpg := gnupg(t, filepath.Join(out, "keys", "ingest.pgp"), filepath.Join(c.Dir, c.Inbound.SignedBy))
		file := filepath.Join(h.Inbound, "cases_2024-01.csv.gpg")
		status, err := gpg("--status-fd", "1", "--output", os.DevNull, "--decrypt", file).Output()
		if err != nil {
			t.Fatalf("gpg --decrypt %s: %v\n%s", file, err, status)
		}
		if !bytes.Contains(status, []byte("[GNUPG:] GOODSIG")) || !bytes.Contains(status, []byte("[GNUPG:] VALIDSIG")) {
			t.Fatalf("%s: no good signature:\n%s", file, status)
		}
		if !bytes.Contains(status, []byte(h.ID+".hospital.invalid")) {
			t.Fatalf("%s: not signed by %s's key:\n%s", file, h.ID, status)
		}
	}
}

// --recipient encrypts to given keys instead of generating them.
func TestRecipientsFromFiles(t *testing.T) {
	first, _ := generate(t, WithHospitals(2), WithMonths(1), WithDirt(0))
	keys := filepath.Join(first, "keys")
	out, sum := generate(t, WithHospitals(2), WithMonths(1), WithDirt(0),
		WithRecipients(filepath.Join(keys, "ingest.pgp.pub"), filepath.Join(keys, "ingest.age.pub")))
	if len(sum.Keys) != 0 {
		t.Errorf("keys generated although recipients were given: %+v", sum.Keys)
	}
	if _, err := os.Stat(filepath.Join(out, "keys")); err == nil {
		t.Error("a keys folder was written")
	}
	priv, _ := os.ReadFile(filepath.Join(keys, "ingest.pgp"))
	ring, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(priv))
	if err != nil {
		t.Fatal(err)
	}
	idFile, _ := os.ReadFile(filepath.Join(keys, "ingest.age"))
	ids, err := age.ParseIdentities(bytes.NewReader(idFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range sum.Hospitals {
		file := filepath.Join(h.Inbound, "cases_2024-01.csv"+map[string]string{"openpgp": ".gpg", "age": ".age"}[h.Encryption])
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var head []byte
		if h.Encryption == "openpgp" {
			md, err := openpgp.ReadMessage(f, ring, nil, nil)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			head = make([]byte, 8)
			_, err = md.UnverifiedBody.Read(head)
			if err != nil {
				t.Fatal(err)
			}
		} else {
			r, err := age.Decrypt(f, ids...)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			head = make([]byte, 8)
			if _, err := r.Read(head); err != nil {
				t.Fatal(err)
			}
		}
		if string(head) != "case_id," {
			t.Errorf("%s decrypts to %q...", file, head)
		}
	}
}
