package decrypt

import (
	"bytes"
	"crypto/rand"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	agearmor "filippo.io/age/armor"
	"github.com/ProtonMail/go-crypto/openpgp"
	pgparmor "github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/testenv"
)

var plain = []byte("case_id,admitted_at,total_bill\r\nC000001,2026-11-02,\"1,204.50\"\r\nC000002,2026-11-03,880\r\n")

func hospital(t *testing.T, encryption, signedBy string) *contract.Hospital {
	t.Helper()
	return &contract.Hospital{ID: "st-olaf", Dir: t.TempDir(), Inbound: contract.Inbound{Encryption: encryption, SignedBy: signedBy}}
}

// readAll reads the plaintext to its end, as the loader does.
func readAll(k *Keys, h *contract.Hospital, name string, r io.Reader) ([]byte, error) {
	pr, err := k.Open(r, h, name)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(pr)
}

func newEntity(t *testing.T, name string) *openpgp.Entity {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", name+"@ward.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func writeArmored(t *testing.T, file string, e *openpgp.Entity, private bool) {
	t.Helper()
	var buf bytes.Buffer
	typ := openpgp.PublicKeyType
	if private {
		typ = openpgp.PrivateKeyType
	}
	w, err := pgparmor.Encode(&buf, typ, nil)
	if err != nil {
		t.Fatal(err)
	}
	if private {
		err = e.SerializePrivateWithoutSigning(w, nil)
	} else {
		err = e.Serialize(w)
	}
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// pgpKeys is an ingest key pair made with go-crypto, loaded as WARD_PGP_KEY.
func pgpKeys(t *testing.T) (*openpgp.Entity, *Keys) {
	t.Helper()
	e := newEntity(t, "ingest")
	file := filepath.Join(t.TempDir(), "ingest.pgp")
	writeArmored(t, file, e, true)
	k, err := Load(WithPGPKey(file, ""))
	if err != nil {
		t.Fatal(err)
	}
	return e, k
}

func pgpEncrypt(t *testing.T, to, signer *openpgp.Entity, armored bool, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	out := io.WriteCloser(nopCloser{&buf})
	if armored {
		var err error
		if out, err = pgparmor.Encode(&buf, openpgp.MessageType, nil); err != nil {
			t.Fatal(err)
		}
	}
	w, err := openpgp.Encrypt(out, []*openpgp.Entity{to}, signer, &openpgp.FileHints{IsBinary: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	w.Close()
	out.Close()
	return buf.Bytes()
}

func TestOpenPGPBinaryAndArmored(t *testing.T) {
	e, k := pgpKeys(t)
	h := hospital(t, OpenPGP, "")
	for _, armored := range []bool{false, true} {
		got, err := readAll(k, h, "cases_2026-11.csv.gpg", bytes.NewReader(pgpEncrypt(t, e, nil, armored, plain)))
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("armored=%v: %q, %v", armored, got, err)
		}
	}
}

func TestOpenPGPSignatureRequired(t *testing.T) {
	ingest, k := pgpKeys(t)
	hosp := newEntity(t, "st-olaf")
	h := hospital(t, OpenPGP, "st-olaf.pgp.pub")
	writeArmored(t, filepath.Join(h.Dir, "st-olaf.pgp.pub"), hosp, false)

	got, err := readAll(k, h, "cases.csv.gpg", bytes.NewReader(pgpEncrypt(t, ingest, hosp, false, plain)))
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("signed by the hospital: %q, %v", got, err)
	}

	_, err = readAll(k, h, "cases.csv.gpg", bytes.NewReader(pgpEncrypt(t, ingest, nil, false, plain)))
	wantErr(t, "unsigned", err, "not signed, but the contract requires a signature by st-olaf.pgp.pub (signed_by)")

	other := newEntity(t, "mallory")
	_, err = readAll(k, h, "cases.csv.gpg", bytes.NewReader(pgpEncrypt(t, ingest, other, false, plain)))
	wantErr(t, "signed by another key", err, "bad signature: signed by key "+keyIDs([]uint64{other.PrimaryKey.KeyId})+", not by the hospital's key")

	// Signed by the hospital's key, but over other bytes: go-crypto only
	// finds out at the end of the stream, and the reader must fail there.
	pr, err := k.Open(bytes.NewReader(tamperedSigned(t, ingest, hosp)), h, "cases.csv.gpg")
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	got, err = io.ReadAll(pr)
	wantErr(t, "tampered", err, "bad signature: openpgp: invalid signature")
	if !bytes.HasPrefix(plain, got[:10]) {
		t.Fatalf("read %q before the error", got)
	}
}

// tamperedSigned builds an encrypted message whose signed content was
// changed after signing: one-pass signature, literal data, signature, all
// inside a valid (integrity-protected) encryption to ingest.
func tamperedSigned(t *testing.T, to, signer *openpgp.Entity) []byte {
	t.Helper()
	var signed bytes.Buffer
	w, err := openpgp.Sign(&signed, signer, &openpgp.FileHints{IsBinary: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plain)
	w.Close()
	b := signed.Bytes()
	i := bytes.Index(b, []byte("C000002"))
	b[i] = 'X'
	key := make([]byte, 32)
	rand.Read(key)
	enc, ok := to.EncryptionKey(to.PrimaryKey.CreationTime)
	if !ok {
		t.Fatal("no encryption key")
	}
	var out bytes.Buffer
	if err := packet.SerializeEncryptedKeyAEAD(&out, enc.PublicKey, packet.CipherAES256, false, key, nil); err != nil {
		t.Fatal(err)
	}
	c, err := packet.SerializeSymmetricallyEncrypted(&out, packet.CipherAES256, false, packet.CipherSuite{}, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Write(b)
	c.Close()
	return out.Bytes()
}

func wantErr(t *testing.T, what string, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("%s: error %v\nwant it to contain %q", what, err, want)
	}
	e, ok := err.(*Error)
	if !ok && !strings.HasPrefix(what, "config") {
		t.Fatalf("%s: error is %T, want *decrypt.Error (the file is quarantined for it)", what, err)
	}
	// Only a key that cannot decrypt is ward's problem rather than the
	// file's (the pipeline tells a misconfigured key by it).
	if ok && e.Key != (what == "wrong key" || strings.HasPrefix(what, "no key") || what == "no identity") {
		t.Fatalf("%s: Key is %v", what, e.Key)
	}
}

func TestOpenPGPBadInputs(t *testing.T) {
	e, k := pgpKeys(t)
	h := hospital(t, OpenPGP, "")
	good := pgpEncrypt(t, e, nil, false, bytes.Repeat(plain, 2000))

	_, err := readAll(k, h, "cases.csv.gpg", bytes.NewReader(pgpEncrypt(t, newEntity(t, "someone"), nil, false, plain)))
	wantErr(t, "wrong key", err, "wrong key: the file is encrypted to OpenPGP key ")
	if !strings.Contains(err.Error(), "WARD_PGP_KEY") {
		t.Fatalf("wrong key: %v does not name WARD_PGP_KEY", err)
	}

	for _, cut := range []int{len(good) - 1, len(good) - 30, len(good) / 2} {
		_, err = readAll(k, h, "cases.csv.gpg", bytes.NewReader(good[:cut]))
		wantErr(t, "truncated", err, "corrupt or truncated")
	}

	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x40
	_, err = readAll(k, h, "cases.csv.gpg", bytes.NewReader(flipped))
	wantErr(t, "flipped bit", err, "corrupt or truncated")

	// Fixed random bytes (a random first byte may name a packet that is
	// not encryption at all, a different error): the first byte is the tag
	// of an encrypted session key packet, so go-crypto gets to parse it.
	random := make([]byte, 4096)
	mrand.NewChaCha8([32]byte{7}).Read(random)
	random[0] = 0xc1
	_, err = readAll(k, h, "cases.csv.gpg", bytes.NewReader(random))
	wantErr(t, "random bytes", err, "not a valid OpenPGP message, or a corrupt or truncated one")
	random[0] = 0x41
	_, err = readAll(k, h, "cases.csv.gpg", bytes.NewReader(random))
	wantErr(t, "random bytes", err, "not an OpenPGP message (neither binary nor ASCII-armored)")

	_, err = readAll(k, h, "cases.csv.gpg", bytes.NewReader(nil))
	wantErr(t, "empty", err, "empty file (0 bytes): not an OpenPGP message")

	_, err = readAll(k, h, "cases.csv", bytes.NewReader(plain))
	wantErr(t, "unencrypted", err, "not encrypted (its name does not end in .gpg, .pgp or .asc), but the contract says encryption: openpgp; an unencrypted extract is refused")

	_, err = readAll(k, h, "cases.csv.age", bytes.NewReader(plain))
	wantErr(t, "age for pgp", err, "named like an age file, but the contract says encryption: openpgp")
}

func TestPassphraseProtectedKey(t *testing.T) {
	e := newEntity(t, "ingest")
	if err := e.EncryptPrivateKeys([]byte("s3cret"), nil); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ingest.pgp")
	writeArmored(t, file, e, true)
	if _, err := Load(WithPGPKey(file, "")); err == nil || !strings.Contains(err.Error(), "protected by a passphrase: set WARD_PGP_PASSPHRASE") {
		t.Fatalf("no passphrase: %v", err)
	}
	if _, err := Load(WithPGPKey(file, "wrong")); err == nil || !strings.Contains(err.Error(), "WARD_PGP_PASSPHRASE does not unlock the key") {
		t.Fatalf("wrong passphrase: %v", err)
	}
	k, err := Load(WithPGPKey(file, "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(k, hospital(t, OpenPGP, ""), "a.csv.pgp", bytes.NewReader(pgpEncrypt(t, e, nil, true, plain)))
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("%q, %v", got, err)
	}
}

func ageKeys(t *testing.T) (*age.X25519Identity, *Keys) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ingest.age")
	if err := os.WriteFile(file, []byte("# ingest\n"+id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := Load(WithAgeIdentity(file))
	if err != nil {
		t.Fatal(err)
	}
	return id, k
}

func ageEncrypt(t *testing.T, to age.Recipient, armored bool, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	out := io.WriteCloser(nopCloser{&buf})
	if armored {
		out = agearmor.NewWriter(&buf)
	}
	w, err := age.Encrypt(out, to)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	w.Close()
	out.Close()
	return buf.Bytes()
}

// onDisk writes b to a file and opens it, as a staged file is read.
func onDisk(t *testing.T, b []byte) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "staged")
	if err := os.WriteFile(p, b, 0o444); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestAgeBinaryAndArmored(t *testing.T) {
	id, k := ageKeys(t)
	h := hospital(t, Age, "")
	big := bytes.Repeat(plain, 3000) // several STREAM chunks
	for _, armored := range []bool{false, true} {
		enc := ageEncrypt(t, id.Recipient(), armored, big)
		got, err := readAll(k, h, "cases.csv.age", bytes.NewReader(enc))
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("armored=%v stream: %d bytes, %v", armored, len(got), err)
		}
		pr, err := k.Open(onDisk(t, enc), h, "cases.csv.age")
		if err != nil {
			t.Fatal(err)
		}
		got, err = io.ReadAll(pr)
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("armored=%v file: %d bytes, %v", armored, len(got), err)
		}
		ra, ok := pr.(interface {
			io.ReaderAt
			Size() int64
		})
		if ok != !armored || (ok && ra.Size() != int64(len(big))) {
			t.Fatalf("armored=%v: random access %v", armored, ok)
		}
		if ok {
			tail := make([]byte, 10)
			if n, err := ra.ReadAt(tail, int64(len(big)-10)); n != 10 || (err != nil && err != io.EOF) || !bytes.Equal(tail, big[len(big)-10:]) {
				t.Fatalf("ReadAt: %q %v", tail, err)
			}
		}
	}
}

func TestAgeBadInputs(t *testing.T) {
	id, k := ageKeys(t)
	h := hospital(t, Age, "")
	good := ageEncrypt(t, id.Recipient(), false, bytes.Repeat(plain, 3000))

	other, _ := age.GenerateX25519Identity()
	_, err := readAll(k, h, "cases.csv.age", bytes.NewReader(ageEncrypt(t, other.Recipient(), false, plain)))
	wantErr(t, "wrong key", err, "wrong key: the file is encrypted to other age recipients (X25519); WARD_AGE_IDENTITY")
	if !strings.Contains(err.Error(), id.Recipient().String()) {
		t.Fatalf("wrong key: %v does not name our recipient", err)
	}

	for _, cut := range []int{len(good) - 1, len(good) - 100, len(good) / 2, 200} {
		_, err = readAll(k, h, "cases.csv.age", bytes.NewReader(good[:cut]))
		wantErr(t, "truncated stream", err, "corrupt or truncated")
		_, err = readAll(k, h, "cases.csv.age", onDisk(t, good[:cut]))
		wantErr(t, "truncated file", err, "corrupt or truncated")
	}

	random := make([]byte, 4096)
	rand.Read(random)
	_, err = readAll(k, h, "cases.csv.age", bytes.NewReader(random))
	wantErr(t, "random bytes", err, "not an age file (no age-encryption.org header, binary or armored)")
	_, err = readAll(k, h, "cases.csv.age", bytes.NewReader(append([]byte("age-encryption.org/v1\n"), random...)))
	wantErr(t, "random after header", err, "not a valid age file, or a corrupt or truncated one")

	_, err = readAll(k, h, "cases.csv", bytes.NewReader(plain))
	wantErr(t, "unencrypted", err, "not encrypted (its name does not end in .age), but the contract says encryption: age")

	_, err = readAll(k, hospital(t, None, ""), "cases.csv.age", bytes.NewReader(good))
	wantErr(t, "encrypted for none", err, "named like an age file, but the contract says encryption: none")
}

func TestNoneIsPassedThrough(t *testing.T) {
	k, err := Load(WithPGPKey("", ""), WithAgeIdentity(""))
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(k, hospital(t, None, ""), "sparcs.csv", bytes.NewReader(plain))
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("%q %v", got, err)
	}
	_, err = readAll(k, hospital(t, OpenPGP, ""), "a.csv.gpg", bytes.NewReader(plain))
	wantErr(t, "no key", err, "an OpenPGP extract, but no private key is configured: set WARD_PGP_KEY")
	_, err = readAll(k, hospital(t, Age, ""), "a.csv.age", bytes.NewReader(plain))
	wantErr(t, "no identity", err, "an age extract, but no identity is configured: set WARD_AGE_IDENTITY")
}

// Seal writes what the same keys open again, in each kind.
func TestSealRoundTrip(t *testing.T) {
	_, pk := pgpKeys(t)
	_, ak := ageKeys(t)
	for _, c := range []struct {
		k    *Keys
		kind string
	}{{pk, OpenPGP}, {ak, Age}, {pk, None}} {
		var buf bytes.Buffer
		w, err := c.k.Seal(&buf, c.kind)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(plain)
		w.Close()
		if c.kind != None && bytes.Contains(buf.Bytes(), []byte("C000001")) {
			t.Fatalf("%s: sealed output holds plaintext", c.kind)
		}
		got, err := readAll(c.k, hospital(t, c.kind, ""), "rejected.csv"+Suffix(c.kind), &buf)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%s: %q %v", c.kind, got, err)
		}
	}
}

// Keys and files made by the real gpg command line.
func TestRealGPG(t *testing.T) {
	gpg := testenv.LookPath(t, "gpg", "gnupg")
	home := t.TempDir()
	run := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(gpg, append([]string{"--batch", "--yes", "--pinentry-mode", "loopback", "--trust-model", "always"}, args...)...)
		cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
		out, err := cmd.Output()
		if err != nil {
			stderr := ""
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("gpg %v: %v\n%s", args, err, stderr)
		}
		return out
	}
	gpgconf := testenv.LookPath(t, "gpgconf", "gnupg")
	t.Cleanup(func() {
		cmd := exec.Command(gpgconf, "--kill", "gpg-agent")
		cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
		cmd.Run()
	})
	// Without passphrases: gpg-agent takes seconds to protect a key, and
	// TestPassphraseProtectedKey covers protected keys.
	run("--passphrase", "", "--quick-gen-key", "Ward Ingest <ingest@ward.test>", "future-default", "default", "never")
	run("--passphrase", "", "--quick-gen-key", "St Olaf <st-olaf@ward.test>", "future-default", "default", "never")
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "ingest.pgp")
	os.WriteFile(keyFile, run("--passphrase", "", "--armor", "--export-secret-keys", "ingest@ward.test"), 0o600)
	h := hospital(t, OpenPGP, "st-olaf.pgp.pub")
	os.WriteFile(filepath.Join(h.Dir, "st-olaf.pgp.pub"), run("--armor", "--export", "st-olaf@ward.test"), 0o644)
	in := filepath.Join(dir, "cases.csv")
	os.WriteFile(in, plain, 0o600)

	k, err := Load(WithPGPKey(keyFile, ""))
	if err != nil {
		t.Fatal(err)
	}
	for _, armor := range []string{"--no-armor", "--armor"} {
		out := filepath.Join(dir, "cases"+armor+".csv.gpg")
		run(armor, "--local-user", "st-olaf@ward.test", "--recipient", "ingest@ward.test", "--output", out, "--sign", "--encrypt", in)
		got, err := readAll(k, h, "cases.csv.gpg", onDisk(t, mustRead(t, out)))
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("gpg %s: %q, %v", armor, got, err)
		}
	}
	// Encrypted by gpg but not signed, where a signature is required.
	out := filepath.Join(dir, "unsigned.csv.gpg")
	run("--recipient", "ingest@ward.test", "--output", out, "--encrypt", in)
	_, err = readAll(k, h, "cases.csv.gpg", onDisk(t, mustRead(t, out)))
	wantErr(t, "gpg unsigned", err, "not signed, but the contract requires a signature")
	// And what ward seals, gpg opens.
	var sealed bytes.Buffer
	w, _ := k.Seal(&sealed, OpenPGP)
	w.Write(plain)
	w.Close()
	sealedFile := filepath.Join(dir, "rejected.csv.gpg")
	os.WriteFile(sealedFile, sealed.Bytes(), 0o600)
	if got := run("--decrypt", sealedFile); !bytes.Equal(got, plain) {
		t.Fatalf("gpg --decrypt of a sealed file: %q", got)
	}
}

// Keys and files made by the real age and age-keygen.
func TestRealAge(t *testing.T) {
	ageBin := testenv.LookPath(t, "age", "age")
	keygen := testenv.LookPath(t, "age-keygen", "age")
	dir := t.TempDir()
	idFile := filepath.Join(dir, "ingest.age")
	if out, err := exec.Command(keygen, "-o", idFile).CombinedOutput(); err != nil {
		t.Fatalf("age-keygen: %v\n%s", err, out)
	}
	var recipient string
	for _, line := range strings.Split(string(mustRead(t, idFile)), "\n") {
		if r, ok := strings.CutPrefix(line, "# public key: "); ok {
			recipient = r
		}
	}
	in := filepath.Join(dir, "cases.csv")
	big := bytes.Repeat(plain, 2000)
	os.WriteFile(in, big, 0o600)
	k, err := Load(WithAgeIdentity(idFile))
	if err != nil {
		t.Fatal(err)
	}
	h := hospital(t, Age, "")
	for _, armor := range [][]string{nil, {"-a"}} {
		out := filepath.Join(dir, "cases.csv.age")
		args := append(append([]string{"-r", recipient}, armor...), "-o", out, in)
		if b, err := exec.Command(ageBin, args...).CombinedOutput(); err != nil {
			t.Fatalf("age: %v\n%s", err, b)
		}
		got, err := readAll(k, h, "cases.csv.age", onDisk(t, mustRead(t, out)))
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("age %v: %d bytes, %v", armor, len(got), err)
		}
	}
	var sealed bytes.Buffer
	w, _ := k.Seal(&sealed, Age)
	w.Write(plain)
	w.Close()
	cmd := exec.Command(ageBin, "-d", "-i", idFile)
	cmd.Stdin = &sealed
	got, err := cmd.Output()
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("age -d of a sealed file: %q %v", got, err)
	}
}

func mustRead(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNames(t *testing.T) {
	for name, want := range map[string][2]string{
		"cases_2026-11.csv.gpg": {OpenPGP, "cases_2026-11.csv"},
		"cases.csv.PGP":         {OpenPGP, "cases.csv"},
		"cases.parquet.asc":     {OpenPGP, "cases.parquet"},
		"cases.csv.age":         {Age, "cases.csv"},
		"cases.csv":             {None, "cases.csv"},
	} {
		if KindOf(name) != want[0] || Plain(name) != want[1] {
			t.Errorf("%s: %s %s, want %v", name, KindOf(name), Plain(name), want)
		}
	}
}
