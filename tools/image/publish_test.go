package image

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/wardml/ward/tools/registry"
	"github.com/wardml/ward/tools/signing"
)

// Push, sign, attach and verify, against both registries; then a second
// hospital mounts the server layers, and a second run uploads nothing.
func TestPublish(t *testing.T) {
	eachRegistry(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		key := testKey(t)
		img := build(t, testModel("st-olaf", "2026-11-30.1", 1234.5))
		repo := tg.repo(t, "ward/st-olaf")
		report := Report{"report.html": []byte("<h1>st-olaf</h1>"), "metrics.json": []byte(`{"mae":812.5}`), "residuals.png": []byte("\x89PNG\r\n")}

		pub := NewPublisher(WithRegistry(tg.client), WithSigner(key))
		res, err := pub.Publish(ctx, repo, img, report)
		if err != nil {
			t.Fatal(err)
		}
		if res.Ref.DigestStr() != mustDigest(t, img.Index) || !res.Signed || len(res.Platforms) != 2 {
			t.Fatalf("published %+v, index %s", res, mustDigest(t, img.Index))
		}
		first := tg.meter.Sent()
		if first.Blobs == 0 || first.Bytes == 0 {
			t.Fatalf("the first push uploaded nothing: %+v", first)
		}
		tagged, err := remote.Head(res.Tag, tg.remote()...)
		if err != nil || tagged.Digest.String() != res.Ref.DigestStr() {
			t.Fatalf("tag %s: %v, %v", res.Tag, tagged, err)
		}

		v, err := Verify(ctx, res.Ref, &key.PublicKey, tg.remote()...)
		if err != nil {
			t.Fatal(err)
		}
		if v.Hospital != "st-olaf" || v.Version != "2026-11-30.1" || v.Family != "ridge" || v.Metrics["mae"] != 812.5 || len(v.Platforms) != 2 {
			t.Errorf("verified %+v", v)
		}

		checkAttachments(t, tg, res, img)

		// Another hospital: its server layers come by mount or are already
		// there, never sent again.
		tg.meter.Reset()
		other := build(t, testModel("riverside", "2026-11-30.1", 99))
		if _, err := pub.Publish(ctx, tg.repo(t, "ward/riverside"), other, nil); err != nil {
			t.Fatal(err)
		}
		var serverBytes int64
		for _, l := range img.ServerLayers {
			n, _ := l.Size()
			serverBytes += n
		}
		if sent := tg.meter.Sent(); sent.Bytes >= serverBytes {
			t.Errorf("the second hospital sent %d bytes, the server layers are %d: they were sent again", sent.Bytes, serverBytes)
		}

		// A second run with the same inputs: same digest, nothing uploaded.
		tg.meter.Reset()
		again, err := NewPublisher(WithRegistry(tg.client), WithSigner(key)).Publish(ctx, repo, build(t, testModel("st-olaf", "2026-11-30.1", 1234.5)), report)
		if err != nil {
			t.Fatal(err)
		}
		if again.Ref != res.Ref {
			t.Errorf("second run: %s, first %s", again.Ref, res.Ref)
		}
		if sent := tg.meter.Sent(); sent.Blobs != 0 || sent.Bytes != 0 {
			t.Errorf("second run with unchanged inputs uploaded %+v, want nothing", sent)
		}
		if len(again.Attached) != len(res.Attached) {
			t.Errorf("second run attached %d, first %d", len(again.Attached), len(res.Attached))
		}
		if refs, _ := Referrers(ctx, res.Ref, "", tg.remote()...); len(refs) != 3 {
			t.Errorf("after the second run the index has %d referrers, want 3 (no duplicates)", len(refs))
		}
	})
}

func checkAttachments(t *testing.T, tg target, res *Published, img *Image) {
	t.Helper()
	ctx := context.Background()
	refs, err := Referrers(ctx, res.Ref, "", tg.remote()...)
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]v1.Descriptor{}
	for _, d := range refs {
		types[d.ArtifactType] = d
	}
	if len(refs) != 3 || types[ModelPackArtifactType].Digest.Hex == "" || types[ReportArtifactType].Digest.Hex == "" || types[signing.BundleMediaType].Digest.Hex == "" {
		t.Fatalf("referrers of the index: %+v", refs)
	}
	only, err := Referrers(ctx, res.Ref, ModelPackArtifactType, tg.remote()...)
	if err != nil || len(only) != 1 {
		t.Fatalf("referrers filtered to ModelPack: %v, %v", only, err)
	}

	// The ModelPack manifest points at the image's own model blob.
	mp, err := remote.Image(res.Ref.Context().Digest(only[0].Digest.String()), tg.remote()...)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mp.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.ArtifactType != ModelPackArtifactType || m.Config.MediaType != modelPackConfigType || len(m.Layers) != 1 ||
		m.Layers[0].Digest.String() != mustDigest(t, img.ModelLayer) || m.Subject == nil || m.Subject.Digest.String() != res.Ref.DigestStr() {
		t.Errorf("ModelPack manifest: %+v", m)
	}
	raw, err := mp.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Descriptor struct{ Name, Version string }
		ModelFS    struct {
			Type    string
			DiffIDs []string `json:"diffIds"`
		} `json:"modelfs"`
	}
	diffID, _ := img.ModelLayer.DiffID()
	if err := json.Unmarshal(raw, &cfg); err != nil || cfg.Descriptor.Name != "st-olaf" || cfg.ModelFS.DiffIDs[0] != diffID.String() {
		t.Errorf("ModelPack config %s: %v", raw, err)
	}

	// Each platform has the SBOM of its own binary.
	for plat, d := range res.Platforms {
		sboms, err := Referrers(ctx, res.Ref.Context().Digest(d.String()), SBOMArtifactType, tg.remote()...)
		if err != nil || len(sboms) != 1 {
			t.Fatalf("%s SBOMs: %v %v", plat, sboms, err)
		}
		art, err := remote.Image(res.Ref.Context().Digest(sboms[0].Digest.String()), tg.remote()...)
		if err != nil {
			t.Fatal(err)
		}
		layers, _ := art.Layers()
		rc, err := layers[0].Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		var doc struct {
			SPDXVersion string `json:"spdxVersion"`
			Name        string `json:"name"`
			Packages    []struct {
				Name      string `json:"name"`
				Checksums []struct {
					Value string `json:"checksumValue"`
				} `json:"checksums"`
			} `json:"packages"`
		}
		if err := json.Unmarshal(b, &doc); err != nil || doc.SPDXVersion != "SPDX-2.3" || doc.Name != "ward-serve "+plat {
			t.Fatalf("%s SBOM %s: %v", plat, b, err)
		}
		if doc.Packages[0].Checksums[0].Value != hash(img.server.Binaries[plat]).Hex || doc.Packages[1].Name != "stdlib" {
			t.Errorf("%s SBOM packages: %+v", plat, doc.Packages[:2])
		}
	}
}

// Each way an image can fail verification is refused with its own message.
func TestVerifyRefuses(t *testing.T) {
	eachRegistry(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		key, otherKey := testKey(t), testKey(t)
		signed := NewPublisher(WithRegistry(tg.client), WithSigner(key))
		unsigned := NewPublisher(WithRegistry(tg.client))
		repoA, repoB := tg.repo(t, "ward/a"), tg.repo(t, "ward/b")

		a, err := signed.Publish(ctx, repoA, build(t, testModel("a", "v1", 1)), nil)
		if err != nil {
			t.Fatal(err)
		}
		u, err := unsigned.Publish(ctx, repoA, build(t, testModel("a", "v2", 2)), nil)
		if err != nil {
			t.Fatal(err)
		}
		check := func(name string, ref name.Digest, pub *ecdsa.PublicKey, opts []remote.Option, sentinel error, want string) {
			t.Helper()
			_, err := Verify(ctx, ref, pub, opts...)
			if err == nil || !errors.Is(err, sentinel) || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: Verify: %v\nwant %v and %q", name, err, sentinel, want)
			}
		}

		if _, err := Verify(ctx, a.Ref, &key.PublicKey, tg.remote()...); err != nil {
			t.Fatalf("the signed image: %v", err)
		}
		check("unsigned", u.Ref, &key.PublicKey, tg.remote(), signing.ErrUnsigned,
			"not signed: there is no sha256-"+u.Ref.DigestStr()[7:]+".sig and no Sigstore bundle among its referrers")
		check("another key", a.Ref, &otherKey.PublicKey, tg.remote(), signing.ErrWrongKey,
			"none of its 2 signature(s) verifies with public key "+signing.Fingerprint(&otherKey.PublicKey))

		// A's signature copied onto the unsigned image: right key, wrong digest.
		copySignature(t, tg, a.Ref, u.Ref)
		check("payload for another digest", u.Ref, &key.PublicKey, tg.remote(), signing.ErrMismatch,
			"it signs digest "+a.Ref.DigestStr()+", not "+u.Ref.DigestStr())

		// A and its signature copied to another repository.
		idx, err := remote.Index(a.Ref, tg.remote()...)
		if err != nil {
			t.Fatal(err)
		}
		inB := repoB.Digest(a.Ref.DigestStr())
		if err := remote.WriteIndex(inB, idx, tg.remote()...); err != nil {
			t.Fatal(err)
		}
		copySignature(t, tg, a.Ref, inB)
		check("payload for another repository", inB, &key.PublicKey, tg.remote(), signing.ErrMismatch,
			"it signs repository "+repoA.Name()+", not "+repoB.Name())

		// An index signed without its platforms (cosign sign without
		// --recursive): the index pins them, so they are covered.
		p, err := unsigned.Publish(ctx, repoA, build(t, testModel("a", "v3", 3)), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := signing.Sign(ctx, p.Ref, key, tg.remote()...); err != nil {
			t.Fatal(err)
		}
		if v, err := Verify(ctx, p.Ref, &key.PublicKey, tg.remote()...); err != nil || len(v.Platforms) != 2 {
			t.Errorf("an index signed alone: %v, %+v", err, v)
		}
		// ... but a platform manifest alone is not signed by it.
		check("unsigned platform", p.Ref.Context().Digest(p.Platforms["linux/amd64"].String()), &key.PublicKey, tg.remote(), signing.ErrUnsigned, "not signed")

		// A registry (or a proxy before it) that serves other bytes for
		// the digest.
		proxy := tamperingProxy(t, tg.host, a.Ref.DigestStr())
		viaProxy := newTarget("proxy", proxy)
		tampered := viaProxy.repo(t, "ward/a").Digest(a.Ref.DigestStr())
		check("tampered manifest", tampered, &key.PublicKey, viaProxy.remote(), ErrTampered, "the registry served bytes that do not hash to this digest")

		// A reference by tag never gets as far as the registry.
		if _, err := tg.client.ParseDigest(a.Tag.String()); err == nil || !strings.Contains(err.Error(), "is not pinned by digest") {
			t.Errorf("ParseDigest(%s): %v", a.Tag, err)
		}
	})
}

// copySignature puts the signatures of from under the signature tag of to.
func copySignature(t *testing.T, tg target, from, to name.Digest) {
	t.Helper()
	sig, err := remote.Image(signing.SignatureTag(from), tg.remote()...)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(signing.SignatureTag(to), sig, tg.remote()...); err != nil {
		t.Fatal(err)
	}
}

// tamperingProxy forwards to host, but changes the manifest of digest on
// the way back, as a compromised registry or mirror would.
func tamperingProxy(t *testing.T, host, digest string) string {
	u, _ := url.Parse("http://" + host)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(r *http.Response) error {
		if r.Request.Method != http.MethodGet || !strings.HasSuffix(r.Request.URL.Path, "/manifests/"+digest) {
			return nil
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		b = []byte(strings.Replace(string(b), `"dev.ward.hospital":"a"`, `"dev.ward.hospital":"b"`, 1))
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		r.ContentLength = int64(len(b))
		r.Header.Set("Content-Length", strconv.Itoa(len(b)))
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// On a terminal, a push draws a progress bar that ends at 100%.
func TestPublishProgress(t *testing.T) {
	srv, err := registry.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	tg := newTarget("in-process", srv.Host)
	var bar strings.Builder
	if _, err := NewPublisher(WithRegistry(tg.client), WithProgress(&bar)).Publish(context.Background(), tg.repo(t, "ward/p"), build(t, testModel("p", "v1", 1)), nil); err != nil {
		t.Fatal(err)
	}
	out := bar.String()
	if !strings.Contains(out, "\rp ") || !strings.Contains(out, "[==============================] 100%") || !strings.HasSuffix(out, "\n") {
		t.Errorf("progress: %q", out)
	}
}

// ReadModel gives back the model file of a published image.
func TestReadModel(t *testing.T) {
	eachRegistry(t, func(t *testing.T, tg target) {
		m := testModel("st-olaf", "v1", 1234.5)
		res, err := NewPublisher(WithRegistry(tg.client)).Publish(context.Background(), tg.repo(t, "ward/st-olaf"), build(t, m), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ReadModel(context.Background(), res.Ref, tg.remote()...)
		if err != nil || !bytes.Equal(got, m.Artifact) {
			t.Fatalf("ReadModel = %d bytes, %v; want the %d bytes published", len(got), err, len(m.Artifact))
		}
	})
}

// --signature-format: legacy writes only the .sig tag, bundle only the
// bundle referrer; ward verifies each, on both kinds of registry, and so
// does the check that deploy and the agent make (ManifestVerifier).
func TestSignatureFormats(t *testing.T) {
	eachRegistry(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		key := testKey(t)
		for _, f := range []SignatureFormat{SignLegacy, SignBundle} {
			res, err := NewPublisher(WithRegistry(tg.client), WithSigner(key), WithSignatureFormat(f)).
				Publish(ctx, tg.repo(t, "ward/formats"), build(t, testModel("formats", "v-"+string(f), 1)), nil)
			if err != nil {
				t.Fatal(err)
			}
			refs := []name.Digest{res.Ref}
			for _, d := range res.Platforms {
				refs = append(refs, res.Ref.Context().Digest(d.String()))
			}
			for _, r := range refs {
				_, tagErr := remote.Head(signing.SignatureTag(r), tg.remote()...)
				bundles, err := Referrers(ctx, r, signing.BundleMediaType, tg.remote()...)
				if err != nil {
					t.Fatal(err)
				}
				if (tagErr == nil) != (f == SignLegacy) || (len(bundles) == 1) != (f == SignBundle) {
					t.Errorf("%s: %s: legacy tag %v, %d bundles", f, r, tagErr, len(bundles))
				}
				if err := signing.Verify(ctx, r, &key.PublicKey, tg.remote()...); err != nil {
					t.Errorf("%s: %v", f, err)
				}
			}
			img, err := ManifestVerifier(tg.client, &key.PublicKey)(ctx, res.Ref.String())
			if err != nil || img.Version != "v-"+string(f) {
				t.Errorf("%s: the agent's verifier: %+v, %v", f, img, err)
			}
			if _, err := ManifestVerifier(tg.client, &testKey(t).PublicKey)(ctx, res.Ref.String()); !errors.Is(err, signing.ErrWrongKey) {
				t.Errorf("%s: the agent's verifier with another key: %v", f, err)
			}
		}
	})
}
