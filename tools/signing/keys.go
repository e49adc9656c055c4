// Package signing signs and verifies OCI images in cosign's key-based
// format, so that the real `cosign verify --key` accepts what ward signs and
// ward accepts what `cosign sign --key` signed. It is the "signed" of the
// package stage and the first check of deploy and the hospital agent.
//
// The format, read from cosign's specification and source: ECDSA P-256
// keys; a signature over the SHA-256 of a "simple signing" JSON payload that
// names the repository and the manifest digest; stored in the same
// repository under the tag sha256-<hex>.sig, as an image whose layers are
// the payloads, each with its base64 signature in the annotation
// dev.cosignproject.cosign/signature. Keys are PEM: a PKIX public key, and
// a PKCS#8 private key, either plain or in sigstore's encrypted form
// (scrypt + nacl/secretbox, the form `cosign generate-key-pair` writes).
package signing

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	"golang.org/x/crypto/nacl/secretbox"
	"golang.org/x/crypto/scrypt"
)

// PEM block types of private keys.
const (
	// sigstorePEM is what cosign writes today; cosignPEM is its older name.
	sigstorePEM = "ENCRYPTED SIGSTORE PRIVATE KEY"
	cosignPEM   = "ENCRYPTED COSIGN PRIVATE KEY"
	pkcs8PEM    = "PRIVATE KEY"
	ecPEM       = "EC PRIVATE KEY"
	publicPEM   = "PUBLIC KEY"
)

// ErrPassword is returned when an encrypted key does not open with the
// password given.
var ErrPassword = errors.New("wrong password for the encrypted private key (set WARD_SIGNING_PASSWORD or COSIGN_PASSWORD)")

// Generate makes a new ECDSA P-256 key.
func Generate() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// MarshalPrivateKey encodes key as PEM: a plain PKCS#8 "PRIVATE KEY" when
// password is empty, else cosign's "ENCRYPTED SIGSTORE PRIVATE KEY", which
// cosign itself reads (with COSIGN_PASSWORD).
func MarshalPrivateKey(key *ecdsa.PrivateKey, password string) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	if password == "" {
		return pem.EncodeToMemory(&pem.Block{Type: pkcs8PEM, Bytes: der}), nil
	}
	box, err := seal(der, []byte(password))
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: sigstorePEM, Bytes: box}), nil
}

// MarshalPublicKey encodes pub as a PEM "PUBLIC KEY" (PKIX), cosign.pub's
// format.
func MarshalPublicKey(pub *ecdsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: publicPEM, Bytes: der}), nil
}

// ParsePrivateKey reads a PEM private key: cosign's encrypted forms (opened
// with password, which may be empty as cosign allows), or a plain PKCS#8 or
// SEC 1 EC key. Only ECDSA P-256 keys are accepted.
func ParsePrivateKey(data []byte, password string) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("not a PEM private key")
	}
	var key any
	var err error
	switch block.Type {
	case sigstorePEM, cosignPEM:
		der, oerr := open(block.Bytes, []byte(password))
		if oerr != nil {
			return nil, oerr
		}
		key, err = x509.ParsePKCS8PrivateKey(der)
	case pkcs8PEM:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case ecPEM:
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key ward reads (want %q, %q or %q)", block.Type, sigstorePEM, pkcs8PEM, ecPEM)
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("private key is %s; ward signs with ECDSA P-256 keys (ward keys generate, or cosign generate-key-pair)", keyKind(key))
	}
	return ec, nil
}

// ParsePublicKey reads a PEM "PUBLIC KEY" (cosign.pub). Only ECDSA P-256
// keys are accepted.
func ParsePublicKey(data []byte) (*ecdsa.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("not a PEM public key")
	}
	if block.Type != publicPEM {
		return nil, fmt.Errorf("PEM block %q is not a public key (want %q)", block.Type, publicPEM)
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	ec, ok := key.(*ecdsa.PublicKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("public key is %s; ward verifies ECDSA P-256 signatures", keyKind(key))
	}
	return ec, nil
}

// Fingerprint names a public key in messages: the first 16 hex digits of
// the SHA-256 of its PKIX encoding.
func Fingerprint(pub *ecdsa.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "unknown"
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:8])
}

func keyKind(key any) string {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		return "ECDSA " + k.Curve.Params().Name
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	default:
		return fmt.Sprintf("a %T", key)
	}
}

// The encrypted form is the JSON of secure-systems-lab's "encrypted"
// package, which cosign and sigstore use: scrypt derives a secretbox key
// from the password.
type box struct {
	KDF struct {
		Name   string       `json:"name"`
		Params scryptParams `json:"params"`
		Salt   []byte       `json:"salt"`
	} `json:"kdf"`
	Cipher struct {
		Name  string `json:"name"`
		Nonce []byte `json:"nonce"`
	} `json:"cipher"`
	Ciphertext []byte `json:"ciphertext"`
}

type scryptParams struct {
	N int `json:"N"`
	R int `json:"r"`
	P int `json:"p"`
}

// The parameter sets the format allows: cosign writes "standard" (2^16),
// older keys have "legacy" (2^15), and some tools write OWASP's (2^17).
var scryptAllowed = []scryptParams{{N: 1 << 15, R: 8, P: 1}, {N: 1 << 16, R: 8, P: 1}, {N: 1 << 17, R: 8, P: 1}}

func seal(plain, password []byte) ([]byte, error) {
	var b box
	b.KDF.Name, b.KDF.Params = "scrypt", scryptAllowed[1]
	b.KDF.Salt = make([]byte, 32)
	b.Cipher.Name = "nacl/secretbox"
	b.Cipher.Nonce = make([]byte, 24)
	if _, err := rand.Read(b.KDF.Salt); err != nil {
		return nil, err
	}
	if _, err := rand.Read(b.Cipher.Nonce); err != nil {
		return nil, err
	}
	key, err := scrypt.Key(password, b.KDF.Salt, b.KDF.Params.N, b.KDF.Params.R, b.KDF.Params.P, 32)
	if err != nil {
		return nil, err
	}
	b.Ciphertext = secretbox.Seal(nil, plain, (*[24]byte)(b.Cipher.Nonce), (*[32]byte)(key))
	return json.Marshal(b)
}

func open(data, password []byte) ([]byte, error) {
	var b box
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("encrypted private key: %w", err)
	}
	if b.KDF.Name != "scrypt" || b.Cipher.Name != "nacl/secretbox" {
		return nil, fmt.Errorf("encrypted private key: kdf %q and cipher %q, want scrypt and nacl/secretbox", b.KDF.Name, b.Cipher.Name)
	}
	allowed := false
	for _, p := range scryptAllowed {
		allowed = allowed || p == b.KDF.Params
	}
	if !allowed {
		return nil, fmt.Errorf("encrypted private key: unsupported scrypt parameters N=%d r=%d p=%d", b.KDF.Params.N, b.KDF.Params.R, b.KDF.Params.P)
	}
	if len(b.Cipher.Nonce) != 24 {
		return nil, errors.New("encrypted private key: nonce is not 24 bytes")
	}
	key, err := scrypt.Key(password, b.KDF.Salt, b.KDF.Params.N, b.KDF.Params.R, b.KDF.Params.P, 32)
	if err != nil {
		return nil, err
	}
	plain, ok := secretbox.Open(nil, b.Ciphertext, (*[24]byte)(b.Cipher.Nonce), (*[32]byte)(key))
	if !ok {
		return nil, ErrPassword
	}
	return plain, nil
}
