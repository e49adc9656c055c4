package signing

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/tools/registry"
)

// eachRegistry runs f on the in-process registry (referrers API) and on
// Debian's docker-registry (no referrers API: the sha256-<hex> fallback tag).
func eachRegistry(t *testing.T, f func(t *testing.T, host string)) {
	t.Run("in-process", func(t *testing.T) {
		srv, err := registry.Start(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		f(t, srv.Host)
	})
	t.Run("docker-registry", func(t *testing.T) { f(t, testenv.StartRegistry(t).Host) })
}

// The two registries are what the tests say they are: one answers the
// referrers API, the other has none (so bundles go through the fallback tag).
func TestRegistriesReferrersAPI(t *testing.T) {
	eachRegistry(t, func(t *testing.T, host string) {
		ref := pushRandom(t, host, "ward/probe", registry.NewClient().Remote(context.Background()))
		resp, err := http.Get("http://" + host + "/v2/ward/probe/referrers/" + ref.DigestStr())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		api := resp.StatusCode == http.StatusOK && resp.Header.Get("Content-Type") == string(types.OCIImageIndex)
		if want := !strings.Contains(t.Name(), "docker-registry"); api != want {
			t.Errorf("referrers API answers %d %q: API %v, want %v", resp.StatusCode, resp.Header.Get("Content-Type"), api, want)
		}
	})
}

// attachBundle attaches a bundle to ref as cosign v3 does (an OCI 1.1
// referrer; go-containerregistry maintains the fallback tag, as it does for
// cosign).
func attachBundle(t *testing.T, ref name.Digest, raw []byte, opts []remote.Option) v1.Hash {
	t.Helper()
	desc, err := remote.Head(ref, opts...)
	if err != nil {
		t.Fatal(err)
	}
	cfg := static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json")
	layer := static.NewLayer(raw, BundleMediaType)
	cd, _ := cfg.Digest()
	ld, _ := layer.Digest()
	m, _ := json.Marshal(v1.Manifest{
		SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: BundleMediaType,
		Config:  v1.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Digest: cd, Size: 2},
		Layers:  []v1.Descriptor{{MediaType: BundleMediaType, Digest: ld, Size: int64(len(raw))}},
		Subject: &v1.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size},
	})
	if err := remote.WriteLayer(ref.Context(), static.NewLayer(raw, BundleMediaType), opts...); err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(ref.Context(), static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json"), opts...); err != nil {
		t.Fatal(err)
	}
	h, _, _ := v1.SHA256(strings.NewReader(string(m)))
	if err := remote.Put(ref.Context().Digest(h.String()), rawManifest(m), opts...); err != nil {
		t.Fatal(err)
	}
	return h
}

type rawManifest []byte

func (r rawManifest) RawManifest() ([]byte, error)        { return r, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// A bundle alone is a signature, on both kinds of registry; each bad bundle
// is refused with an error that names it.
func TestBundleVerify(t *testing.T) {
	eachRegistry(t, func(t *testing.T, host string) {
		ctx := context.Background()
		opts := registry.NewClient().Remote(ctx)
		key, other := mustKey(t), mustKey(t)
		ref := pushRandom(t, host, "ward/bundled", opts)
		raw, err := NewBundle(ref, key)
		if err != nil {
			t.Fatal(err)
		}
		if err := Verify(ctx, ref, &key.PublicKey, opts...); !errors.Is(err, ErrUnsigned) {
			t.Fatalf("before the bundle: %v, want ErrUnsigned", err)
		}
		bd := attachBundle(t, ref, raw, opts)
		if err := Verify(ctx, ref, &key.PublicKey, opts...); err != nil {
			t.Fatalf("ward's bundle: %v", err)
		}
		if d, ok, err := FindBundle(ctx, ref, &key.PublicKey, opts...); err != nil || !ok || d != bd {
			t.Errorf("FindBundle: %v %v %v, want %v", d, ok, err, bd)
		}
		err = Verify(ctx, ref, &other.PublicKey, opts...)
		if !errors.Is(err, ErrWrongKey) || !strings.Contains(err.Error(), "none of its 1 signature(s) verifies with public key "+Fingerprint(&other.PublicKey)) {
			t.Errorf("another key: %v", err)
		}

		// A bundle for another digest, attached to this image.
		second := pushRandom(t, host, "ward/bundled", opts)
		bad := attachBundle(t, second, raw, opts)
		err = Verify(ctx, second, &key.PublicKey, opts...)
		if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "bundle "+bad.String()+": its DSSE statement signs digest "+ref.DigestStr()+", not "+second.DigestStr()) {
			t.Errorf("a bundle naming another digest: %v", err)
		}

		// A bundle by another key.
		third := pushRandom(t, host, "ward/bundled", opts)
		byOther, _ := NewBundle(third, other)
		attachBundle(t, third, byOther, opts)
		err = Verify(ctx, third, &key.PublicKey, opts...)
		if !errors.Is(err, ErrWrongKey) {
			t.Errorf("a bundle by another key: %v, want ErrWrongKey", err)
		}

		// A bundle for this digest in another repository.
		elsewhere := pushRandom(t, host, "ward/elsewhere", opts)
		moved, _ := NewBundle(ref.Context().Digest(elsewhere.DigestStr()), key)
		attachBundle(t, elsewhere, moved, opts)
		if err := Verify(ctx, elsewhere, &key.PublicKey, opts...); !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "signs repository "+ref.Context().Name()) {
			t.Errorf("a bundle for another repository: %v", err)
		}
	})
}

// A referrers listing that lists garbage: entries that are no manifest, or
// a manifest of another subject, are skipped and named; a listing that is
// not JSON is an error; the real bundle beside them still verifies.
func TestBundleGarbageReferrers(t *testing.T) {
	srv, err := registry.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	opts := registry.NewClient().Remote(ctx)
	key := mustKey(t)
	ref := pushRandom(t, srv.Host, "ward/g", opts)
	otherImg := pushRandom(t, srv.Host, "ward/g", opts)
	raw, _ := NewBundle(otherImg, key)
	foreign := attachBundle(t, otherImg, raw, opts) // a real manifest, of another subject
	missing := "sha256:" + strings.Repeat("0", 64)

	mode := "garbage"
	u, _ := url.Parse("http://" + srv.Host)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(r *http.Response) error {
		if !strings.Contains(r.Request.URL.Path, "/referrers/") {
			return nil
		}
		var idx v1.IndexManifest
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &idx)
		for _, d := range []string{missing, foreign.String()} {
			h, _ := v1.NewHash(d)
			idx.Manifests = append(idx.Manifests, v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: h, Size: 500, ArtifactType: BundleMediaType})
		}
		b, _ = json.Marshal(idx)
		if mode == "not json" {
			b = []byte("<html>gateway error</html>")
		}
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		r.ContentLength = int64(len(b))
		r.Header.Set("Content-Length", strconv.Itoa(len(b)))
		return nil
	}
	proxy := httptest.NewServer(rp)
	defer proxy.Close()
	viaRepo, _ := name.NewRepository(strings.TrimPrefix(proxy.URL, "http://") + "/ward/g")
	via := viaRepo.Digest(ref.DigestStr())

	err = Verify(ctx, via, &key.PublicKey, opts...)
	for _, want := range []string{"not signed", "skipped bundle " + missing + ": read its manifest", "bundle " + foreign.String() + ": its manifest's subject is " + otherImg.DigestStr() + ", not " + ref.DigestStr()} {
		if !errors.Is(err, ErrUnsigned) || !strings.Contains(err.Error(), want) {
			t.Errorf("garbage referrers only: %v\nwant %q", err, want)
		}
	}
	good, _ := NewBundle(via, key)
	attachBundle(t, ref, good, opts)
	if err := Verify(ctx, via, &key.PublicKey, opts...); err != nil {
		t.Errorf("a real bundle among garbage: %v", err)
	}
	mode = "not json"
	if err := Verify(ctx, via, &key.PublicKey, opts...); err == nil || !strings.Contains(err.Error(), "referrers") {
		t.Errorf("a referrers answer that is not JSON: %v", err)
	}
}

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The bundle ward writes is the one cosign writes: a v0.3 bundle with the
// key's hint, a DSSE envelope of an in-toto v1 statement with the cosign
// sign predicate, the subject by digest.
func TestBundleShape(t *testing.T) {
	key := mustKey(t)
	repo, _ := name.NewRepository("registry.example/ward/x")
	ref := repo.Digest("sha256:" + strings.Repeat("ab", 32))
	raw, err := NewBundle(ref, key)
	if err != nil {
		t.Fatal(err)
	}
	var b bundle
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	payload, _ := decodeBase64(b.DSSE.Payload)
	var st statement
	json.Unmarshal(payload, &st)
	if b.MediaType != BundleMediaType || b.VerificationMaterial.PublicKey.Hint != KeyHint(&key.PublicKey) || b.DSSE.PayloadType != "application/vnd.in-toto+json" ||
		st.Type != "https://in-toto.io/Statement/v1" || st.PredicateType != SignPredicateType || st.Subject[0].Digest["sha256"] != strings.Repeat("ab", 32) {
		t.Errorf("bundle %s\nstatement %s", raw, payload)
	}
	if res, err := checkBundle(raw, ref, &key.PublicKey); res != bundleOK {
		t.Errorf("checkBundle: %v", err)
	}
	for _, c := range []struct{ raw, want string }{
		{`[]`, "not a Sigstore bundle"},
		{`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.2+json"}`, "bundle media type"},
		{`{"mediaType":"` + BundleMediaType + `","messageSignature":{}}`, "holds no DSSE envelope"},
		{`{"mediaType":"` + BundleMediaType + `","dsseEnvelope":{"payload":"!!","payloadType":"application/vnd.in-toto+json"}}`, "not base64"},
	} {
		if res, err := checkBundle([]byte(c.raw), ref, &key.PublicKey); res != bundleBad || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v %v, want %q", c.raw, res, err, c.want)
		}
	}
}

// cosignBinaries are the real cosign v2 (WARD_TEST_COSIGN) and v3
// (WARD_TEST_COSIGN3) that tools/dev/test builds under CI.
func cosignBinaries(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for v, env := range map[string]string{"v2": "WARD_TEST_COSIGN", "v3": "WARD_TEST_COSIGN3"} {
		bin := os.Getenv(env)
		testenv.Require(t, bin != "", "%s is not set: tools/dev/test builds cosign %s under CI=true into ~/.cache/ward", env, v)
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%s=%s: %v", env, bin, err)
		}
		out[v] = bin
	}
	return out
}

// Both cosign versions verify a bundle ward wrote, on both registries, and
// ward verifies the bundle cosign v3 writes by default.
func TestCosignBundleInterop(t *testing.T) {
	bins := cosignBinaries(t)
	eachRegistry(t, func(t *testing.T, host string) {
		ctx := context.Background()
		opts := registry.NewClient().Remote(ctx)
		dir := t.TempDir()
		key := mustKey(t)
		writeKeys(t, dir, key)
		reg := []string{"--allow-http-registry", "--allow-insecure-registry"}

		ref := pushRandom(t, host, "ward/bundle-by-ward", opts)
		raw, _ := NewBundle(ref, key)
		attachBundle(t, ref, raw, opts)
		for v, bin := range bins {
			args := append([]string{"verify", "--key", "ward.pub", "--insecure-ignore-tlog"}, cosignBundleFlags[v]...)
			if out, err := cosign(t, bin, dir, "", append(args, append(reg, ref.String())...)...); err != nil {
				t.Errorf("cosign %s verifies ward's bundle: %v\n%s", v, err, out)
			}
			other := mustKey(t)
			pub, _ := MarshalPublicKey(&other.PublicKey)
			os.WriteFile(filepath.Join(dir, "other.pub"), pub, 0o644)
			args = append([]string{"verify", "--key", "other.pub", "--insecure-ignore-tlog"}, cosignBundleFlags[v]...)
			if out, err := cosign(t, bin, dir, "", append(args, append(reg, ref.String())...)...); err == nil {
				t.Errorf("cosign %s accepted ward's bundle with another key:\n%s", v, out)
			}
		}

		signed := pushRandom(t, host, "ward/bundle-by-cosign3", opts)
		if out, err := cosign(t, bins["v3"], dir, "ward-pw", append(cosign3SignArgs(t, dir), append(reg, signed.String())...)...); err != nil {
			t.Fatalf("cosign v3 sign: %v\n%s", err, out)
		}
		if _, err := remote.Image(SignatureTag(signed), opts...); err == nil {
			t.Errorf("cosign v3 wrote a legacy %s: the test does not test bundles", SignatureTag(signed).TagStr())
		}
		if err := Verify(ctx, signed, &key.PublicKey, opts...); err != nil {
			t.Errorf("ward verifies cosign v3's bundle: %v", err)
		}
		if err := Verify(ctx, signed, &mustKey(t).PublicKey, opts...); !errors.Is(err, ErrWrongKey) {
			t.Errorf("ward verifies cosign v3's bundle with another key: %v, want ErrWrongKey", err)
		}
	})
}

// cosignBundleFlags make each version verify the bundle format: v2 reads
// the legacy tag unless asked; v3 reads bundles by default. Both want a
// trusted root for bundles, and would fetch the public one through TUF:
// writeKeys writes an empty one (key-based, no authority to trust).
var cosignBundleFlags = map[string][]string{"v2": {"--new-bundle-format", "--trusted-root", "trusted-root.json"}, "v3": {"--trusted-root", "trusted-root.json"}}

// cosignLegacyFlags make each version verify the legacy format.
var cosignLegacyFlags = map[string][]string{"v2": nil, "v3": {"--new-bundle-format=false"}}

// cosign3SignArgs is how cosign v3 signs key-based without a transparency
// log, in its default (bundle) format: a signing config that names no
// service (cosign signing-config create with nothing; --tlog-upload=false
// is refused with a signing config) and a trusted root with no authority,
// so that it fetches nothing from the network.
func cosign3SignArgs(t *testing.T, dir string) []string {
	t.Helper()
	sc := `{"mediaType":"application/vnd.dev.sigstore.signingconfig.v0.2+json","caUrls":[],"oidcUrls":[],"rekorTlogUrls":[],"rekorTlogConfig":{"selector":"ANY"},"tsaUrls":[],"tsaConfig":{"selector":"ANY"}}`
	os.WriteFile(filepath.Join(dir, "signing-config.json"), []byte(sc), 0o644)
	return []string{"sign", "--key", "ward.key", "--signing-config", "signing-config.json", "--trusted-root", "trusted-root.json", "--yes"}
}

func writeKeys(t *testing.T, dir string, key *ecdsa.PrivateKey) {
	t.Helper()
	priv, _ := MarshalPrivateKey(key, "ward-pw")
	pub, _ := MarshalPublicKey(&key.PublicKey)
	if err := os.WriteFile(filepath.Join(dir, "ward.key"), priv, 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "ward.pub"), pub, 0o644)
	tr := `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[],"certificateAuthorities":[],"ctlogs":[],"timestampAuthorities":[]}`
	os.WriteFile(filepath.Join(dir, "trusted-root.json"), []byte(tr), 0o644)
}
