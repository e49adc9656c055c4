package signing

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/tools/registry"
)

func TestKeysRoundTrip(t *testing.T) {
	key, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	for _, password := range []string{"", "correct horse"} {
		pemKey, err := MarshalPrivateKey(key, password)
		if err != nil {
			t.Fatal(err)
		}
		wantType := "PRIVATE KEY"
		if password != "" {
			wantType = "ENCRYPTED SIGSTORE PRIVATE KEY"
		}
		if b, _ := pem.Decode(pemKey); b == nil || b.Type != wantType {
			t.Fatalf("password %q: PEM %q, want %q", password, pemKey, wantType)
		}
		back, err := ParsePrivateKey(pemKey, password)
		if err != nil || !back.Equal(key) {
			t.Fatalf("password %q: read back %v", password, err)
		}
		if password != "" {
			if _, err := ParsePrivateKey(pemKey, "wrong"); !errors.Is(err, ErrPassword) {
				t.Errorf("wrong password: %v, want ErrPassword", err)
			}
		}
	}
	pub, err := MarshalPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParsePublicKey(pub)
	if err != nil || !back.Equal(&key.PublicKey) {
		t.Fatalf("public key: %v", err)
	}
}

func TestKeysRefuseOtherKinds(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der384, _ := x509.MarshalPKIXPublicKey(&p384.PublicKey)
	for _, c := range []struct {
		err  error
		want string
	}{
		{second(ParsePrivateKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), "")), "private key is a *rsa.PrivateKey; ward signs with ECDSA P-256 keys"},
		{second(ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der384}))), "public key is ECDSA P-384; ward verifies ECDSA P-256 signatures"},
		{second(ParsePrivateKey([]byte("hello"), "")), "not a PEM private key"},
		{second(ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))), `PEM block "CERTIFICATE" is not a public key`},
	} {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("got %v, want %q", c.err, c.want)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// pushRandom pushes a random image and returns it by digest.
func pushRandom(t *testing.T, host, repo string, opts []remote.Option) name.Digest {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.NewRepository(host + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r.Tag("latest"), img, opts...); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return r.Digest(d.String())
}

func TestSignIsIdempotentAndKeepsOthers(t *testing.T) {
	srv, err := registry.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	opts := registry.NewClient().Remote(ctx)
	ref := pushRandom(t, srv.Host, "ward/x", opts)
	a, _ := Generate()
	b, _ := Generate()
	for _, k := range []*ecdsa.PrivateKey{a, a, b} {
		if err := Sign(ctx, ref, k, opts...); err != nil {
			t.Fatal(err)
		}
	}
	img, err := remote.Image(SignatureTag(ref), opts...)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	if len(m.Layers) != 2 {
		t.Fatalf("signed by a twice and b once: %d signature layers, want 2", len(m.Layers))
	}
	for _, k := range []*ecdsa.PrivateKey{a, b} {
		if err := Verify(ctx, ref, &k.PublicKey, opts...); err != nil {
			t.Error(err)
		}
	}
}

// cosignBinary returns the real cosign command line, built by tools/dev/test
// under CI (WARD_TEST_COSIGN). It is large, so a local run without it skips.
func cosignBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("WARD_TEST_COSIGN")
	testenv.Require(t, bin != "", "WARD_TEST_COSIGN is not set: build cosign with GOBIN=DIR go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5 and set it to DIR/cosign (tools/dev/test does under CI=true)")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("WARD_TEST_COSIGN=%s: %v", bin, err)
	}
	return bin
}

func cosign(t *testing.T, bin, dir, password string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD="+password, "HOME="+dir, "TUF_ROOT="+filepath.Join(dir, "tuf"), "COSIGN_EXPERIMENTAL=0")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// The real cosign accepts what ward signs, and ward accepts what cosign
// signs, with either tool's keys, on both registries.
func TestCosignInterop(t *testing.T) {
	bin := cosignBinary(t)
	for _, reg := range []string{"in-process", "docker-registry"} {
		t.Run(reg, func(t *testing.T) {
			var host string
			if reg == "in-process" {
				srv, err := registry.Start(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { srv.Close() })
				host = srv.Host
			} else {
				host = testenv.StartRegistry(t).Host
			}
			interop(t, bin, host)
		})
	}
}

func interop(t *testing.T, bin, host string) {
	ctx := context.Background()
	dir := t.TempDir()
	opts := registry.NewClient().Remote(ctx)
	reg := []string{"--allow-http-registry", "--allow-insecure-registry"}

	// cosign's key pair, read by ward.
	if out, err := cosign(t, bin, dir, "cosign-pw", "generate-key-pair"); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	cosignKeyPEM, _ := os.ReadFile(filepath.Join(dir, "cosign.key"))
	cosignPubPEM, _ := os.ReadFile(filepath.Join(dir, "cosign.pub"))
	cosignKey, err := ParsePrivateKey(cosignKeyPEM, "cosign-pw")
	if err != nil {
		t.Fatalf("ward reads cosign.key: %v", err)
	}
	cosignPub, err := ParsePublicKey(cosignPubPEM)
	if err != nil || !cosignPub.Equal(&cosignKey.PublicKey) {
		t.Fatalf("ward reads cosign.pub: %v", err)
	}

	// ward's key pair, encrypted, for cosign.
	wardKey, _ := Generate()
	wardKeyPEM, _ := MarshalPrivateKey(wardKey, "ward-pw")
	wardPubPEM, _ := MarshalPublicKey(&wardKey.PublicKey)
	os.WriteFile(filepath.Join(dir, "ward.key"), wardKeyPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "ward.pub"), wardPubPEM, 0o644)

	// 1. ward signs with cosign's key; cosign verifies with cosign.pub.
	ref := pushRandom(t, host, "ward/signed-by-ward", opts)
	if err := Sign(ctx, ref, cosignKey, opts...); err != nil {
		t.Fatal(err)
	}
	if out, err := cosign(t, bin, dir, "", append([]string{"verify", "--key", "cosign.pub", "--insecure-ignore-tlog"}, append(reg, ref.String())...)...); err != nil {
		t.Fatalf("cosign verify of ward's signature: %v\n%s", err, out)
	}
	// ... and refuses it with another key: the check can fail.
	if out, err := cosign(t, bin, dir, "", append([]string{"verify", "--key", "ward.pub", "--insecure-ignore-tlog"}, append(reg, ref.String())...)...); err == nil {
		t.Fatalf("cosign verify with another key accepted ward's signature:\n%s", out)
	}

	// 2. cosign signs with its own key, and with ward's encrypted key;
	// ward verifies both.
	for _, c := range []struct {
		key, password string
		pub           *ecdsa.PublicKey
	}{{"cosign.key", "cosign-pw", cosignPub}, {"ward.key", "ward-pw", &wardKey.PublicKey}} {
		ref := pushRandom(t, host, "ward/signed-by-cosign-"+strings.TrimSuffix(c.key, ".key"), opts)
		args := append([]string{"sign", "--key", c.key, "--tlog-upload=false", "--yes"}, append(reg, ref.String())...)
		if out, err := cosign(t, bin, dir, c.password, args...); err != nil {
			t.Fatalf("cosign sign --key %s: %v\n%s", c.key, err, out)
		}
		if err := Verify(ctx, ref, c.pub, opts...); err != nil {
			t.Errorf("ward verifies cosign's signature made with %s: %v", c.key, err)
		}
		other, _ := Generate()
		if err := Verify(ctx, ref, &other.PublicKey, opts...); !errors.Is(err, ErrWrongKey) {
			t.Errorf("ward verifies cosign's signature with another key: %v, want ErrWrongKey", err)
		}
	}
}
