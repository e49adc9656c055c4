// Package decrypt turns a staged extract back into plaintext, as a stream:
// OpenPGP (github.com/ProtonMail/go-crypto) and age (filippo.io/age), each
// binary or ASCII-armored (detected from the bytes), or no encryption at
// all, as the hospital's contract says. It sits between staging (which
// keeps the received bytes, still encrypted) and extract (which parses the
// plaintext): the plaintext of an extract exists only in memory, on its way
// from the staged file to the database.
//
// Every failure is an *Error that says what is wrong with the file (a key
// we do not hold, a corrupt or truncated ciphertext, a missing or bad
// signature): the pipeline quarantines the file for it. Integrity is only
// known at the end of a stream (OpenPGP's MDC and signature, age's last
// STREAM chunk), so those failures come from the reader's final Read, never
// as a silent short plaintext; a loader must commit only after reading to
// io.EOF without error.
package decrypt

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"filippo.io/age"
	agearmor "filippo.io/age/armor"
	"github.com/ProtonMail/go-crypto/openpgp"
	pgparmor "github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/wardml/ward/internal/contract"
)

// The encryption kinds of a contract's inbound.encryption.
const (
	None    = "none"
	OpenPGP = "openpgp"
	Age     = "age"
)

// Error is a file that cannot be decrypted, or whose integrity or
// signature check failed. The file is quarantined for it.
type Error struct {
	Reason string
	Err    error
	// Key says that ward's key is the problem, not the file's bytes: the
	// file is encrypted to another key, or no key of its kind is
	// configured. When every file of a hospital fails so, the setting is
	// the likely culprit.
	Key bool
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.Reason
	}
	return e.Reason + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

func fail(err error, format string, args ...any) *Error {
	return &Error{Reason: fmt.Sprintf(format, args...), Err: err}
}

// Keys holds the private keys that decrypt the extracts (WARD_PGP_KEY,
// WARD_AGE_IDENTITY) and caches the hospitals' signing keys.
type Keys struct {
	pgp     openpgp.EntityList
	pgpFile string
	age     []age.Identity
	ageFile string

	mu      sync.Mutex
	signers map[string]openpgp.EntityList
}

// Option adds a key to Load.
type Option func(*Keys) error

// WithPGPKey reads an OpenPGP private key (armored or binary), unlocking
// it with passphrase when it is protected. An empty file name adds nothing
// (WARD_PGP_KEY unset).
func WithPGPKey(file, passphrase string) Option {
	return func(k *Keys) error {
		if file == "" {
			return nil
		}
		el, err := readKeyRing(file)
		if err != nil {
			return fmt.Errorf("WARD_PGP_KEY %s: %w", file, err)
		}
		for _, e := range el {
			if e.PrivateKey == nil {
				return fmt.Errorf("WARD_PGP_KEY %s: holds a public key; ward needs the private key that the extracts are encrypted to", file)
			}
			if !encrypted(e) {
				continue
			}
			if passphrase == "" {
				return fmt.Errorf("WARD_PGP_KEY %s: the key is protected by a passphrase: set WARD_PGP_PASSPHRASE", file)
			}
			if err := e.DecryptPrivateKeys([]byte(passphrase)); err != nil {
				return fmt.Errorf("WARD_PGP_KEY %s: WARD_PGP_PASSPHRASE does not unlock the key: %w", file, err)
			}
		}
		k.pgp, k.pgpFile = el, file
		return nil
	}
}

func encrypted(e *openpgp.Entity) bool {
	if e.PrivateKey != nil && e.PrivateKey.Encrypted {
		return true
	}
	for _, s := range e.Subkeys {
		if s.PrivateKey != nil && s.PrivateKey.Encrypted {
			return true
		}
	}
	return false
}

// WithAgeIdentity reads an age identity file (as age-keygen writes it).
// An empty file name adds nothing (WARD_AGE_IDENTITY unset).
func WithAgeIdentity(file string) Option {
	return func(k *Keys) error {
		if file == "" {
			return nil
		}
		f, err := os.Open(file)
		if err != nil {
			return fmt.Errorf("WARD_AGE_IDENTITY: %w", err)
		}
		defer f.Close()
		ids, err := age.ParseIdentities(f)
		if err != nil {
			return fmt.Errorf("WARD_AGE_IDENTITY %s: %w", file, err)
		}
		k.age, k.ageFile = ids, file
		return nil
	}
}

// Load reads the keys. With none, only unencrypted extracts can be read.
func Load(opts ...Option) (*Keys, error) {
	k := &Keys{signers: map[string]openpgp.EntityList{}}
	for _, o := range opts {
		if err := o(k); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func readKeyRing(file string) (openpgp.EntityList, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var el openpgp.EntityList
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN PGP")) {
		el, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	} else {
		el, err = openpgp.ReadKeyRing(bytes.NewReader(data))
	}
	if err != nil {
		return nil, fmt.Errorf("not an OpenPGP key: %w", err)
	}
	return el, nil
}

// KindOf tells a file's encryption from its name: .gpg, .pgp and .asc are
// OpenPGP, .age is age, anything else is not encrypted.
func KindOf(name string) string {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".gpg", ".pgp", ".asc":
		return OpenPGP
	case ".age":
		return Age
	}
	return None
}

// Plain is the name of the plaintext: the name without its encryption
// suffix ("cases_2026-11.csv.gpg" gives "cases_2026-11.csv").
func Plain(name string) string {
	if KindOf(name) == None {
		return name
	}
	return strings.TrimSuffix(name, filepath.Ext(name))
}

// Open returns the plaintext of the extract r, named name, of hospital h.
// The kind of encryption must be the contract's; armor is detected. When
// the contract names a signing key (inbound.signed_by), the message must
// carry a valid signature by it: a missing or foreign signature fails here,
// a bad one at the end of the stream.
//
// When r is an *os.File of a binary age file, the plaintext also
// implements io.ReaderAt (and Size), so that a Parquet reader can seek in
// it without buffering it.
func (k *Keys) Open(r io.Reader, h *contract.Hospital, name string) (io.Reader, error) {
	kind, want := KindOf(name), h.Inbound.Encryption
	if kind != want {
		switch {
		case want == None:
			return nil, fail(nil, "named like an %s file, but the contract says encryption: none", kind)
		case kind == None:
			return nil, fail(nil, "not encrypted (its name does not end in %s), but the contract says encryption: %s; an unencrypted extract is refused", suffixes(want), want)
		}
		return nil, fail(nil, "named like an %s file, but the contract says encryption: %s", kind, want)
	}
	switch kind {
	case OpenPGP:
		return k.openPGP(r, h)
	case Age:
		return k.openAge(r)
	}
	return r, nil
}

func suffixes(kind string) string {
	if kind == Age {
		return ".age"
	}
	return ".gpg, .pgp or .asc"
}

// recorder is a key ring that remembers which key ids the message asked
// for, so that a wrong-key error can name them.
type recorder struct {
	openpgp.EntityList
	asked []uint64
}

func (r *recorder) KeysById(id uint64) []openpgp.Key {
	if !slices.Contains(r.asked, id) {
		r.asked = append(r.asked, id)
	}
	return r.EntityList.KeysById(id)
}

func (k *Keys) openPGP(r io.Reader, h *contract.Hospital) (io.Reader, error) {
	if len(k.pgp) == 0 {
		return nil, &Error{Reason: "an OpenPGP extract, but no private key is configured: set WARD_PGP_KEY", Key: true}
	}
	var signers openpgp.EntityList
	if h.Inbound.SignedBy != "" {
		var err error
		if signers, err = k.signer(h); err != nil {
			return nil, err
		}
	}
	br := bufio.NewReader(r)
	head, _ := br.Peek(64)
	body := io.Reader(br)
	if bytes.HasPrefix(bytes.TrimLeft(head, " \t\r\n"), []byte("-----BEGIN PGP")) {
		block, err := pgparmor.Decode(br)
		if err != nil {
			return nil, fail(err, "corrupt ASCII armor")
		}
		if block.Type != openpgp.MessageType {
			return nil, fail(nil, "an armored %q, not a PGP MESSAGE", block.Type)
		}
		body = block.Body
	} else if len(head) == 0 {
		return nil, fail(nil, "empty file (0 bytes): not an OpenPGP message")
	} else if head[0]&0x80 == 0 {
		return nil, fail(nil, "not an OpenPGP message (neither binary nor ASCII-armored)")
	}
	ring := &recorder{EntityList: append(slices.Clone(k.pgp), signers...)}
	md, err := openpgp.ReadMessage(body, ring, nil, nil)
	switch {
	case errors.Is(err, pgperrors.ErrKeyIncorrect):
		e := fail(nil, "wrong key: the file is encrypted to OpenPGP key %s, and WARD_PGP_KEY (%s, key %s) cannot decrypt it", keyIDs(ring.asked), k.pgpFile, keyIDs(entityIDs(k.pgp)))
		e.Key = true
		return nil, e
	case err != nil:
		return nil, fail(err, "not a valid OpenPGP message, or a corrupt or truncated one")
	case !md.IsEncrypted:
		return nil, fail(nil, "an OpenPGP message that is not encrypted; the contract says encryption: openpgp")
	}
	if signers != nil {
		switch {
		case !md.IsSigned:
			return nil, fail(nil, "not signed, but the contract requires a signature by %s (signed_by)", h.Inbound.SignedBy)
		case md.SignedBy == nil || !slices.Contains(entityIDs(signers), md.SignedBy.Entity.PrimaryKey.KeyId):
			return nil, fail(nil, "bad signature: signed by key %s, not by the hospital's key %s (signed_by: %s)", keyIDs([]uint64{md.SignedByKeyId}), keyIDs(entityIDs(signers)), h.Inbound.SignedBy)
		}
	}
	return &pgpReader{md: md, signed: signers != nil}, nil
}

func (k *Keys) signer(h *contract.Hospital) (openpgp.EntityList, error) {
	file := h.Inbound.SignedBy
	if !filepath.IsAbs(file) {
		file = filepath.Join(h.Dir, file)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if el, ok := k.signers[file]; ok {
		return el, nil
	}
	el, err := readKeyRing(file)
	if err != nil {
		return nil, fmt.Errorf("hospital %s: signed_by %s: %w", h.ID, file, err)
	}
	k.signers[file] = el
	return el, nil
}

func entityIDs(el openpgp.EntityList) []uint64 {
	var ids []uint64
	for _, e := range el {
		ids = append(ids, e.PrimaryKey.KeyId)
		for _, s := range e.Subkeys {
			ids = append(ids, s.PublicKey.KeyId)
		}
	}
	return ids
}

func keyIDs(ids []uint64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = fmt.Sprintf("%016X", id)
	}
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}

// pgpReader turns the end-of-stream checks of go-crypto into errors: the
// MDC or AEAD tag (go-crypto reports it), and the signature (go-crypto
// only records it in MessageDetails).
type pgpReader struct {
	md     *openpgp.MessageDetails
	signed bool
	err    error
}

func (r *pgpReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.md.UnverifiedBody.Read(p)
	switch {
	case err == io.EOF:
		if r.signed || r.md.SignedBy != nil {
			if r.md.SignatureError != nil {
				r.err = fail(r.md.SignatureError, "bad signature")
			} else if r.md.Signature == nil {
				r.err = fail(nil, "bad signature: the message ends without its signature")
			}
		}
		if r.err != nil {
			return n, r.err
		}
	case err != nil:
		r.err = fail(err, "corrupt or truncated ciphertext")
		return n, r.err
	}
	return n, err
}

// sizedReaderAt is a plaintext that can be read anywhere.
type sizedReaderAt interface {
	io.ReaderAt
	Stat() (os.FileInfo, error)
}

func (k *Keys) openAge(r io.Reader) (io.Reader, error) {
	if len(k.age) == 0 {
		return nil, &Error{Reason: "an age extract, but no identity is configured: set WARD_AGE_IDENTITY", Key: true}
	}
	// A binary age file on disk decrypts with random access: a Parquet
	// reader can then seek in the plaintext. ReaderAt authenticates the
	// last chunk at once, so truncation fails here.
	if f, ok := r.(sizedReaderAt); ok {
		head := make([]byte, 64)
		n, _ := f.ReadAt(head, 0)
		if bytes.HasPrefix(head[:n], []byte("age-encryption.org/")) {
			fi, err := f.Stat()
			if err != nil {
				return nil, err
			}
			ra, size, err := age.DecryptReaderAt(f, fi.Size(), k.age...)
			if err != nil {
				return nil, k.ageError(err)
			}
			sr := io.NewSectionReader(ra, 0, size)
			return &ageFile{ageReader: ageReader{r: sr}, sr: sr}, nil
		}
	}
	br := bufio.NewReader(r)
	head, _ := br.Peek(64)
	var body io.Reader
	switch {
	case bytes.HasPrefix(bytes.TrimLeft(head, " \t\r\n"), []byte("-----BEGIN AGE ENCRYPTED FILE-----")):
		body = agearmor.NewReader(br)
	case bytes.HasPrefix(head, []byte("age-encryption.org/")):
		body = br
	case len(head) == 0:
		return nil, fail(nil, "empty file (0 bytes): not an age file")
	default:
		return nil, fail(nil, "not an age file (no age-encryption.org header, binary or armored)")
	}
	pr, err := age.Decrypt(body, k.age...)
	if err != nil {
		return nil, k.ageError(err)
	}
	return &ageReader{r: pr}, nil
}

func (k *Keys) ageError(err error) error {
	var nomatch *age.NoIdentityMatchError
	if errors.As(err, &nomatch) {
		e := fail(nil, "wrong key: the file is encrypted to other age recipients (%s); WARD_AGE_IDENTITY (%s, %s) is not one of them", strings.Join(nomatch.StanzaTypes, ", "), k.ageFile, recipients(k.age))
		e.Key = true
		return e
	}
	return fail(err, "not a valid age file, or a corrupt or truncated one")
}

func recipients(ids []age.Identity) string {
	var s []string
	for _, id := range ids {
		switch i := id.(type) {
		case *age.X25519Identity:
			s = append(s, i.Recipient().String())
		case *age.HybridIdentity:
			s = append(s, i.Recipient().String())
		}
	}
	return strings.Join(s, ", ")
}

// ageReader marks stream failures (a chunk that does not authenticate, a
// missing last chunk) as corrupt or truncated ciphertext.
type ageReader struct {
	r   io.Reader
	err error
}

func (r *ageReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = fail(err, "corrupt or truncated ciphertext")
		return n, r.err
	}
	return n, err
}

// ageFile is the plaintext of a binary age file on disk, with random
// access passed through.
type ageFile struct {
	ageReader
	sr *io.SectionReader
}

func (r *ageFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.sr.ReadAt(p, off)
	if err != nil && err != io.EOF {
		return n, fail(err, "corrupt or truncated ciphertext")
	}
	return n, err
}

// Size is the plaintext's size.
func (r *ageFile) Size() int64 { return r.sr.Size() }

// Seal encrypts what is written to w for the holder of these keys, with
// the given kind (the hospital's): the rejected rows that ingest keeps are
// encrypted like the extract they came from, so no plaintext patient data
// is written to disk. None writes plaintext (the hospital sent plaintext).
func (k *Keys) Seal(w io.Writer, kind string) (io.WriteCloser, error) {
	switch kind {
	case OpenPGP:
		if len(k.pgp) == 0 {
			return nil, errors.New("seal: no OpenPGP key (WARD_PGP_KEY)")
		}
		return openpgp.Encrypt(w, k.pgp, nil, &openpgp.FileHints{IsBinary: true}, &packet.Config{})
	case Age:
		var rs []age.Recipient
		for _, id := range k.age {
			switch i := id.(type) {
			case *age.X25519Identity:
				rs = append(rs, i.Recipient())
			case *age.HybridIdentity:
				rs = append(rs, i.Recipient())
			}
		}
		if len(rs) == 0 {
			return nil, errors.New("seal: no age identity (WARD_AGE_IDENTITY)")
		}
		return age.Encrypt(w, rs...)
	}
	return nopCloser{w}, nil
}

// Suffix is the file name suffix of what Seal writes for kind.
func Suffix(kind string) string {
	switch kind {
	case OpenPGP:
		return ".gpg"
	case Age:
		return ".age"
	}
	return ""
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
