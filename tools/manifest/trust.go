package manifest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"slices"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/crypto/ssh"
)

// TrustFile is the manifest repo's list of the keys allowed to write it:
// armored OpenPGP public keys and SSH allowed-signers lines, the two
// formats git verify-commit takes (gpg's keyring, gpg.ssh.allowedSignersFile).
const TrustFile = BaseDir + "/trust.txt"

// ErrUntrusted: a commit that decides what a hospital runs is unsigned or
// signed by a key the trust file does not list, the trust file changed
// without a signature of a key listed before, or the history no longer
// holds the commit applied last.
var ErrUntrusted = errors.New("manifest history not trusted")

// Trust is a parsed trust file: the keys whose commit signatures count.
type Trust struct {
	// Source names where it was read (a file, or TrustFile at a commit).
	Source string
	pgp    openpgp.EntityList
	ssh    []allowedSigner
}

type allowedSigner struct {
	principals string
	key        ssh.PublicKey
	namespaces []string
	line       int
}

// ReadTrust reads a trust file from disk (WARD_MANIFEST_TRUST, or the file
// ward manifest init --trust writes into the repo).
func ReadTrust(file string) (*Trust, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fail(ErrUsage, "trust file: %w", err)
	}
	t, err := ParseTrust(file, data)
	if err != nil {
		return nil, fail(ErrUsage, "%w", err)
	}
	return t, nil
}

const (
	pgpKeyBegin = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
	pgpKeyEnd   = "-----END PGP PUBLIC KEY BLOCK-----"
)

// ParseTrust reads a trust file: armored OpenPGP public key blocks, and
// outside them one allowed signer per line ("principals [options] keytype
// base64 [comment]", as ssh-keygen -Y verify reads them); blank lines and
// lines starting with # are comments. A file with no key is refused: it
// would let nobody write.
func ParseTrust(source string, data []byte) (*Trust, error) {
	t := &Trust{Source: source}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var block *bytes.Buffer
	blockLine := 0
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case block != nil:
			block.WriteString(line + "\n")
			if line == pgpKeyEnd {
				keys, err := openpgp.ReadArmoredKeyRing(block)
				if err != nil {
					return nil, fmt.Errorf("%s: line %d: OpenPGP public key: %v", source, blockLine, err)
				}
				for _, k := range keys {
					if k.PrivateKey != nil {
						return nil, fmt.Errorf("%s: line %d: a private key: the trust file lists public keys only", source, blockLine)
					}
				}
				t.pgp = append(t.pgp, keys...)
				block = nil
			}
		case line == "" || strings.HasPrefix(line, "#"):
		case line == pgpKeyBegin:
			block, blockLine = bytes.NewBufferString(line+"\n"), n
		case strings.HasPrefix(line, "-----BEGIN"):
			return nil, fmt.Errorf("%s: line %d: %q: want an OpenPGP public key block (gpg --armor --export KEY) or an allowed-signers line", source, n, line)
		default:
			s, err := parseAllowedSigner(line)
			if err != nil {
				return nil, fmt.Errorf("%s: line %d: %v (want \"principals [options] keytype base64\", a line of git's gpg.ssh.allowedSignersFile)", source, n, err)
			}
			s.line = n
			t.ssh = append(t.ssh, s)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if block != nil {
		return nil, fmt.Errorf("%s: line %d: OpenPGP public key block without its %s line", source, blockLine, pgpKeyEnd)
	}
	if len(t.pgp) == 0 && len(t.ssh) == 0 {
		return nil, fmt.Errorf("%s: no key: list the OpenPGP public keys and SSH allowed signers whose commits count", source)
	}
	return t, nil
}

func parseAllowedSigner(line string) (allowedSigner, error) {
	principals, rest, ok := strings.Cut(line, " ")
	if !ok {
		principals, rest, _ = strings.Cut(line, "\t")
	}
	if principals == "" || strings.TrimSpace(rest) == "" {
		return allowedSigner{}, errors.New("want principals and a key")
	}
	key, _, options, _, err := ssh.ParseAuthorizedKey([]byte(rest))
	if err != nil {
		return allowedSigner{}, fmt.Errorf("key: %v", err)
	}
	s := allowedSigner{principals: principals, key: key}
	for _, o := range options {
		name, value, _ := strings.Cut(o, "=")
		switch strings.ToLower(name) {
		case "namespaces":
			s.namespaces = strings.Split(strings.Trim(value, `"`), ",")
		default:
			// cert-authority and valid-after/valid-before change what the
			// key may sign: a verifier that ignored them would accept more
			// than git does.
			return allowedSigner{}, fmt.Errorf("option %q: ward reads only namespaces=", name)
		}
	}
	return s, nil
}

// Describe lists the keys, one per entry: OpenPGP fingerprints with their
// first identity, SSH fingerprints with their principals.
func (t *Trust) Describe() []string {
	var out []string
	for _, e := range t.pgp {
		out = append(out, pgpName(e))
	}
	for _, s := range t.ssh {
		out = append(out, s.principals+" "+ssh.FingerprintSHA256(s.key))
	}
	return out
}

func pgpName(e *openpgp.Entity) string {
	name := ""
	for id := range e.Identities {
		if name == "" || id < name {
			name = id
		}
	}
	return strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint)) + " " + name
}

// Lists reports whether a signer (what LoadSigner read) has its public key
// in the trust file, so that a command can refuse to write commits every
// reader would refuse.
func (t *Trust) Lists(s interface{ Public() any }) bool {
	switch k := s.Public().(type) {
	case *openpgp.Entity:
		for _, e := range t.pgp {
			if bytes.Equal(e.PrimaryKey.Fingerprint, k.PrimaryKey.Fingerprint) {
				return true
			}
		}
	case ssh.PublicKey:
		for _, a := range t.ssh {
			if bytes.Equal(a.key.Marshal(), k.Marshal()) && a.allows("git") {
				return true
			}
		}
	}
	return false
}

func (a allowedSigner) allows(namespace string) bool {
	return a.namespaces == nil || slices.Contains(a.namespaces, namespace)
}

// VerifyCommit checks a commit's signature against the trust file and
// returns who signed it. An unsigned commit, a signature by a key not
// listed, and a signature that does not verify are errors that say which.
func (t *Trust) VerifyCommit(c *object.Commit) (string, error) {
	sig := strings.TrimSpace(c.PGPSignature)
	if sig == "" {
		return "", errors.New("not signed")
	}
	payload := &plumbing.MemoryObject{}
	if err := c.EncodeWithoutSignature(payload); err != nil {
		return "", err
	}
	r, err := payload.Reader()
	if err != nil {
		return "", err
	}
	switch {
	case strings.HasPrefix(sig, "-----BEGIN PGP SIGNATURE-----"):
		if strings.Count(sig, "-----BEGIN PGP SIGNATURE-----") > 1 {
			return "", errors.New("more than one OpenPGP signature: git accepts one")
		}
		e, err := openpgp.CheckArmoredDetachedSignature(t.pgp, r, strings.NewReader(sig), nil)
		if errors.Is(err, pgperrors.ErrUnknownIssuer) {
			return "", fmt.Errorf("signed by an OpenPGP key (%s) that %s does not list", pgpIssuer(sig), t.Source)
		}
		if err != nil {
			return "", fmt.Errorf("OpenPGP signature does not verify: %v", err)
		}
		return "OpenPGP " + pgpName(e), nil
	case strings.HasPrefix(sig, "-----BEGIN SSH SIGNATURE-----"):
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(r); err != nil {
			return "", err
		}
		key, err := verifySSHSIG([]byte(sig), buf.Bytes(), "git")
		if err != nil {
			return "", fmt.Errorf("SSH signature: %v", err)
		}
		for _, a := range t.ssh {
			if bytes.Equal(a.key.Marshal(), key.Marshal()) && a.allows("git") {
				return "SSH " + a.principals + " " + ssh.FingerprintSHA256(key), nil
			}
		}
		return "", fmt.Errorf("signed by an SSH key (%s) that %s does not list", ssh.FingerprintSHA256(key), t.Source)
	case strings.HasPrefix(sig, "-----BEGIN SIGNED MESSAGE-----"):
		return "", errors.New("an X.509 (gpgsm) signature: the trust file lists OpenPGP and SSH keys")
	}
	return "", errors.New("a signature in a format git does not write")
}

// pgpIssuer is the key an armored signature names, for the message that
// says whose key is missing.
func pgpIssuer(armored string) string {
	block, err := armor.Decode(strings.NewReader(armored))
	if err != nil {
		return "unreadable"
	}
	p, err := packet.Read(block.Body)
	sig, ok := p.(*packet.Signature)
	switch {
	case err != nil || !ok:
		return "unreadable"
	case sig.IssuerFingerprint != nil:
		return "fingerprint " + strings.ToUpper(hex.EncodeToString(sig.IssuerFingerprint))
	case sig.IssuerKeyId != nil:
		return fmt.Sprintf("key id %016X", *sig.IssuerKeyId)
	}
	return "no issuer"
}

// verifySSHSIG checks an armored SSH signature (OpenSSH's PROTOCOL.sshsig)
// of message in namespace, and returns the public key that made it.
func verifySSHSIG(armored, message []byte, namespace string) (ssh.PublicKey, error) {
	text := strings.TrimSpace(string(armored))
	body, ok := strings.CutPrefix(text, "-----BEGIN SSH SIGNATURE-----")
	if !ok {
		return nil, errors.New("no -----BEGIN SSH SIGNATURE----- line")
	}
	body, ok = strings.CutSuffix(body, "-----END SSH SIGNATURE-----")
	if !ok {
		return nil, errors.New("no -----END SSH SIGNATURE----- line")
	}
	blob, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(body), ""))
	if err != nil {
		return nil, fmt.Errorf("base64: %v", err)
	}
	rest, ok := bytes.CutPrefix(blob, []byte("SSHSIG"))
	if !ok {
		return nil, errors.New("no SSHSIG preamble")
	}
	var sig struct {
		Version                              uint32
		PublicKey, Namespace, Reserved, Hash string
		Signature                            string
	}
	if err := ssh.Unmarshal(rest, &sig); err != nil {
		return nil, fmt.Errorf("malformed: %v", err)
	}
	if sig.Version != 1 {
		return nil, fmt.Errorf("version %d, want 1", sig.Version)
	}
	if sig.Namespace != namespace {
		return nil, fmt.Errorf("namespace %q, want %q (git signs commits in namespace git)", sig.Namespace, namespace)
	}
	key, err := ssh.ParsePublicKey([]byte(sig.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("public key: %v", err)
	}
	var h hash.Hash
	switch sig.Hash {
	case "sha256":
		h = sha256.New()
	case "sha512":
		h = sha512.New()
	default:
		return nil, fmt.Errorf("hash %q, want sha256 or sha512", sig.Hash)
	}
	h.Write(message)
	signed := append([]byte("SSHSIG"), ssh.Marshal(struct {
		Namespace, Reserved, Hash, Digest string
	}{sig.Namespace, sig.Reserved, sig.Hash, string(h.Sum(nil))})...)
	var s ssh.Signature
	if err := ssh.Unmarshal([]byte(sig.Signature), &s); err != nil {
		return nil, fmt.Errorf("signature blob: %v", err)
	}
	if s.Format == ssh.KeyAlgoRSA {
		return nil, errors.New("an ssh-rsa (SHA-1) signature, which OpenSSH refuses: sign with rsa-sha2-512")
	}
	if err := key.Verify(signed, &s); err != nil {
		return nil, fmt.Errorf("does not verify with %s: %v", ssh.FingerprintSHA256(key), err)
	}
	return key, nil
}
