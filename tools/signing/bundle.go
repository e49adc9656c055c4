package signing

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// What cosign v3 writes by default: a Sigstore bundle (v0.3) holding a DSSE
// envelope of an in-toto statement, attached to the image as an OCI 1.1
// referrer (cosign's pkg/oci/remote WriteAttestationNewBundleFormat and
// cmd/cosign/cli/sign signDigestBundle; sigstore-go's pkg/sign).
const (
	// BundleMediaType is the bundle's own media type, the referrer's
	// artifactType and its layer's media type.
	BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// bundleMediaTypeOld is how bundles before v0.3's rename say it.
	bundleMediaTypeOld = "application/vnd.dev.sigstore.bundle+json;version=0.3"
	// BundleContentAnnotation and BundlePredicateAnnotation are the
	// annotations cosign puts on the referrer manifest.
	BundleContentAnnotation   = "dev.sigstore.bundle.content"
	BundlePredicateAnnotation = "dev.sigstore.bundle.predicateType"
	// SignPredicateType is the predicate of an image signature (an
	// attestation of anything else is not a signature).
	SignPredicateType = "https://sigstore.dev/cosign/sign/v1"
	inTotoPayloadType = "application/vnd.in-toto+json"
	statementType     = "https://in-toto.io/Statement/v1"
	statementTypeOld  = "https://in-toto.io/Statement/v0.1"
	// maxBundle bounds what ward reads of a bundle layer.
	maxBundle = 1 << 20
)

// bundle is the JSON of a Sigstore bundle, the parts ward writes and reads
// (the protobuf-specs' Bundle, in protojson's field names).
type bundle struct {
	MediaType            string `json:"mediaType"`
	VerificationMaterial struct {
		PublicKey *struct {
			Hint string `json:"hint"`
		} `json:"publicKey,omitempty"`
	} `json:"verificationMaterial"`
	DSSE *envelope `json:"dsseEnvelope,omitempty"`
}

// envelope is a DSSE envelope; protojson writes bytes in standard base64.
type envelope struct {
	Payload     string         `json:"payload"`
	PayloadType string         `json:"payloadType"`
	Signatures  []dsseSigEntry `json:"signatures"`
}

type dsseSigEntry struct {
	Sig   string `json:"sig"`
	KeyID string `json:"keyid,omitempty"`
}

// statement is an in-toto statement.
type statement struct {
	Type    string `json:"_type"`
	Subject []struct {
		Name   string            `json:"name,omitempty"`
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

// pae is DSSE's pre-authentication encoding: what the signature covers.
func pae(payloadType string, payload []byte) []byte {
	return fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(payload), payload)
}

// KeyHint is how a bundle names its key without a certificate: base64 of
// the SHA-256 of the public key's PKIX DER, as cosign writes it.
func KeyHint(pub *ecdsa.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// NewBundle signs ref with key as cosign v3 does by default: an in-toto
// statement whose subject is ref's digest (and, which cosign leaves out,
// its repository), the cosign sign predicate, in a DSSE envelope, in a
// v0.3 bundle with no transparency log entry (key-based, private).
func NewBundle(ref name.Digest, key *ecdsa.PrivateKey) ([]byte, error) {
	alg, hex, ok := strings.Cut(ref.DigestStr(), ":")
	if !ok {
		return nil, fmt.Errorf("sign %s: digest %q has no algorithm", ref, ref.DigestStr())
	}
	var st statement
	st.Type = statementType
	st.Subject = append(st.Subject, struct {
		Name   string            `json:"name,omitempty"`
		Digest map[string]string `json:"digest"`
	}{Name: ref.Context().Name(), Digest: map[string]string{alg: hex}})
	st.PredicateType = SignPredicateType
	st.Predicate = json.RawMessage("{}")
	payload, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", ref, err)
	}
	sum := sha256.Sum256(pae(inTotoPayloadType, payload))
	sig, err := ecdsa.SignASN1(rand.Reader, key, sum[:])
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", ref, err)
	}
	b := bundle{MediaType: BundleMediaType, DSSE: &envelope{
		Payload:     base64.StdEncoding.EncodeToString(payload),
		PayloadType: inTotoPayloadType,
		Signatures:  []dsseSigEntry{{Sig: base64.StdEncoding.EncodeToString(sig)}},
	}}
	b.VerificationMaterial.PublicKey = &struct {
		Hint string `json:"hint"`
	}{KeyHint(&key.PublicKey)}
	return json.Marshal(b)
}

// bundleCheck is what checking one bundle found.
type bundleCheck int

const (
	bundleOK       bundleCheck = iota
	bundleBad                  // not a bundle ward can read
	bundleOtherKey             // no signature verifies with the key
	bundleMismatch             // signed by the key, for something else
)

// checkBundle verifies a bundle's DSSE signature with pub and that its
// statement signs exactly ref. The error says why not.
func checkBundle(raw []byte, ref name.Digest, pub *ecdsa.PublicKey) (bundleCheck, error) {
	var b bundle
	if err := json.Unmarshal(raw, &b); err != nil {
		return bundleBad, fmt.Errorf("not a Sigstore bundle: %v", err)
	}
	if b.MediaType != BundleMediaType && b.MediaType != bundleMediaTypeOld {
		return bundleBad, fmt.Errorf("bundle media type %q, want %s", b.MediaType, BundleMediaType)
	}
	if b.DSSE == nil {
		return bundleBad, fmt.Errorf("the bundle holds no DSSE envelope (a message signature is not how cosign signs images)")
	}
	if b.DSSE.PayloadType != inTotoPayloadType {
		return bundleBad, fmt.Errorf("DSSE payload type %q, want %s", b.DSSE.PayloadType, inTotoPayloadType)
	}
	payload, err := decodeBase64(b.DSSE.Payload)
	if err != nil {
		return bundleBad, fmt.Errorf("DSSE payload is not base64: %v", err)
	}
	sum := sha256.Sum256(pae(b.DSSE.PayloadType, payload))
	signed := false
	for _, s := range b.DSSE.Signatures {
		if sig, err := decodeBase64(s.Sig); err == nil && ecdsa.VerifyASN1(pub, sum[:], sig) {
			signed = true
			break
		}
	}
	if !signed {
		return bundleOtherKey, fmt.Errorf("none of its %d DSSE signature(s) verifies with public key %s", len(b.DSSE.Signatures), Fingerprint(pub))
	}
	var st statement
	if err := json.Unmarshal(payload, &st); err != nil {
		return bundleMismatch, fmt.Errorf("the signed DSSE payload is not an in-toto statement: %v", err)
	}
	if st.Type != statementType && st.Type != statementTypeOld {
		return bundleMismatch, fmt.Errorf("the signed statement's _type is %q, want %s", st.Type, statementType)
	}
	if st.PredicateType != SignPredicateType {
		return bundleMismatch, fmt.Errorf("it attests %s, it is not an image signature (%s)", st.PredicateType, SignPredicateType)
	}
	alg, hex, _ := strings.Cut(ref.DigestStr(), ":")
	var named []string
	for _, s := range st.Subject {
		if s.Digest[alg] != hex {
			for a, h := range s.Digest {
				named = append(named, a+":"+h)
			}
			continue
		}
		if s.Name != "" && !sameRepository(s.Name, ref.Context().Name()) {
			return bundleMismatch, fmt.Errorf("its DSSE statement signs repository %s, not %s", s.Name, ref.Context().Name())
		}
		return bundleOK, nil
	}
	return bundleMismatch, fmt.Errorf("its DSSE statement signs digest %s, not %s", strings.Join(named, ", "), ref.DigestStr())
}

// decodeBase64 reads DSSE's base64, standard or URL-safe, padded or not
// (the DSSE specification allows either).
func decodeBase64(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return base64.StdEncoding.DecodeString(s)
}
