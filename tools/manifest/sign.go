package manifest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ProtonMail/go-crypto/openpgp"
	git "github.com/go-git/go-git/v5"
	"golang.org/x/crypto/ssh"
)

// LoadSigner reads a commit signing key: an armored OpenPGP private key
// (what git verifies with gpg) or an OpenSSH private key (git's
// gpg.format=ssh, verified against gpg.ssh.allowedSignersFile). The key
// must not be protected by a passphrase: CI keeps it in a secret file.
func LoadSigner(file string) (git.Signer, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("commit signing key: %w", err)
	}
	switch {
	case bytes.Contains(data, []byte("-----BEGIN PGP PRIVATE KEY BLOCK-----")):
		keys, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("commit signing key %s: %w", file, err)
		}
		if len(keys) != 1 || keys[0].PrivateKey == nil {
			return nil, fmt.Errorf("commit signing key %s: want one OpenPGP private key, found %d keys", file, len(keys))
		}
		if keys[0].PrivateKey.Encrypted {
			return nil, fmt.Errorf("commit signing key %s: protected by a passphrase, which ward does not read: export it without one", file)
		}
		return pgpSigner{keys[0]}, nil
	case bytes.Contains(data, []byte("-----BEGIN OPENSSH PRIVATE KEY-----")):
		s, err := ssh.ParsePrivateKey(data)
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return nil, fmt.Errorf("commit signing key %s: protected by a passphrase, which ward does not read: remove it (ssh-keygen -p)", file)
		}
		if err != nil {
			return nil, fmt.Errorf("commit signing key %s: %w", file, err)
		}
		return sshSigner{s}, nil
	}
	return nil, fmt.Errorf("commit signing key %s: want an armored OpenPGP private key or an OpenSSH private key", file)
}

type pgpSigner struct{ key *openpgp.Entity }

func (s pgpSigner) Sign(message io.Reader) ([]byte, error) {
	var b bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&b, s.key, message, nil); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// sshSigner writes git's SSH signatures: the SSHSIG format of OpenSSH's
// PROTOCOL.sshsig, namespace "git", SHA-512, armored.
type sshSigner struct{ key ssh.Signer }

func (s sshSigner) Sign(message io.Reader) ([]byte, error) {
	h := sha512.New()
	if _, err := io.Copy(h, message); err != nil {
		return nil, err
	}
	const magic, namespace, hash = "SSHSIG", "git", "sha512"
	signed := append([]byte(magic), ssh.Marshal(struct {
		Namespace, Reserved, Hash, Digest string
	}{namespace, "", hash, string(h.Sum(nil))})...)
	var sig *ssh.Signature
	var err error
	if as, ok := s.key.(ssh.AlgorithmSigner); ok && s.key.PublicKey().Type() == ssh.KeyAlgoRSA {
		// ssh-rsa (SHA-1) signatures are refused by OpenSSH: use SHA-512.
		sig, err = as.SignWithAlgorithm(rand.Reader, signed, ssh.KeyAlgoRSASHA512)
	} else {
		sig, err = s.key.Sign(rand.Reader, signed)
	}
	if err != nil {
		return nil, err
	}
	blob := append([]byte(magic), ssh.Marshal(struct {
		Version                              uint32
		PublicKey, Namespace, Reserved, Hash string
		Signature                            string
	}{1, string(s.key.PublicKey().Marshal()), namespace, "", hash, string(ssh.Marshal(sig))})...)
	b64 := base64.StdEncoding.EncodeToString(blob)
	var out bytes.Buffer
	out.WriteString("-----BEGIN SSH SIGNATURE-----\n")
	for len(b64) > 70 {
		out.WriteString(b64[:70] + "\n")
		b64 = b64[70:]
	}
	out.WriteString(b64 + "\n-----END SSH SIGNATURE-----\n")
	return out.Bytes(), nil
}

// Public is the key that verifies the signer's signatures (Trust.Lists).
func (s pgpSigner) Public() any { return s.key }

// Public is the key that verifies the signer's signatures (Trust.Lists).
func (s sshSigner) Public() any { return s.key.PublicKey() }
