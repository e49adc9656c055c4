package image

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/tools/signing"
)

// tool returns a reference binary that tools/dev/test builds under CI into
// ~/.cache/ward (cosign v2, cosign v3, oras); a local run without it skips.
func tool(t *testing.T, env string) string {
	t.Helper()
	bin := os.Getenv(env)
	testenv.Require(t, bin != "", "%s is not set (tools/dev/test builds it under CI=true into ~/.cache/ward)", env)
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s=%s: %v", env, bin, err)
	}
	return bin
}

func cosigns(t *testing.T) map[string]string {
	return map[string]string{"v2": tool(t, "WARD_TEST_COSIGN"), "v3": tool(t, "WARD_TEST_COSIGN3")}
}

// cosignDir is a folder with ward's key pair (the private key encrypted,
// password ward-pw) and the files that keep cosign off the network: an
// empty trusted root (key-based: no authority to trust; else cosign
// fetches the public one through TUF) and a signing config that names no
// service (cosign v3 signs key-based without a transparency log with it;
// it refuses --tlog-upload=false beside a signing config).
func cosignDir(t *testing.T) (string, *ecdsa.PrivateKey) {
	t.Helper()
	dir := t.TempDir()
	key := testKey(t)
	priv, _ := signing.MarshalPrivateKey(key, "ward-pw")
	pub, _ := signing.MarshalPublicKey(&key.PublicKey)
	files := map[string]string{
		"ward.key":            string(priv),
		"ward.pub":            string(pub),
		"trusted-root.json":   `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[],"certificateAuthorities":[],"ctlogs":[],"timestampAuthorities":[]}`,
		"signing-config.json": `{"mediaType":"application/vnd.dev.sigstore.signingconfig.v0.2+json","caUrls":[],"oidcUrls":[],"rekorTlogUrls":[],"rekorTlogConfig":{"selector":"ANY"},"tsaUrls":[],"tsaConfig":{"selector":"ANY"}}`,
	}
	for f, b := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir, key
}

func runIn(t *testing.T, dir, bin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=ward-pw", "HOME="+dir, "TUF_ROOT="+filepath.Join(dir, "tuf"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

var insecure = []string{"--allow-http-registry", "--allow-insecure-registry"}

// verifyFlags make each cosign version read one format: v2 reads the
// legacy tag unless told --new-bundle-format, v3 reads bundles unless told
// --new-bundle-format=false.
var verifyFlags = map[string]map[SignatureFormat][]string{
	"v2": {SignLegacy: nil, SignBundle: {"--new-bundle-format", "--trusted-root", "trusted-root.json"}},
	"v3": {SignLegacy: {"--new-bundle-format=false"}, SignBundle: {"--trusted-root", "trusted-root.json"}},
}

// cosign v2 and v3 verify what ward publishes, in each format, on both
// kinds of registry: the index and each platform's manifest.
func TestCosignVerifiesPublishedImage(t *testing.T) {
	bins := cosigns(t)
	eachRegistry(t, func(t *testing.T, tg target) {
		dir, key := cosignDir(t)
		for _, format := range []SignatureFormat{SignLegacy, SignBundle} {
			res, err := NewPublisher(WithRegistry(tg.client), WithSigner(key), WithSignatureFormat(format)).
				Publish(context.Background(), tg.repo(t, "ward/st-olaf"), build(t, testModel("st-olaf", "v1-"+string(format), 1)), nil)
			if err != nil {
				t.Fatal(err)
			}
			refs := []string{res.Ref.String()}
			for _, d := range res.Platforms {
				refs = append(refs, res.Ref.Context().Digest(d.String()).String())
			}
			for v, bin := range bins {
				for _, ref := range refs {
					args := append(append([]string{"verify", "--key", "ward.pub", "--insecure-ignore-tlog"}, verifyFlags[v][format]...), append(insecure, ref)...)
					if out, err := runIn(t, dir, bin, args...); err != nil {
						t.Errorf("cosign %s verify (%s) %s: %v\n%s", v, format, ref, err, out)
					}
				}
			}
			// The formats are apart: cosign v2 finds no legacy signature
			// on an image signed only with a bundle (so the check above
			// can fail).
			if format == SignBundle {
				if out, err := runIn(t, dir, bins["v2"], append([]string{"verify", "--key", "ward.pub", "--insecure-ignore-tlog"}, append(insecure, refs[0])...)...); err == nil {
					t.Errorf("cosign v2 found a legacy signature on a bundle-only image:\n%s", out)
				}
			}
		}
	})
}

// ward verifies what cosign signs: v2's legacy format on an index with and
// without --recursive (the index's signature covers its platforms), and v3's
// default bundle, on both kinds of registry.
func TestVerifiesCosignSignedIndex(t *testing.T) {
	bins := cosigns(t)
	eachRegistry(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		dir, key := cosignDir(t)
		for _, c := range []struct {
			name, bin string
			args      []string
			bundle    bool
		}{
			{"v2 index only", bins["v2"], []string{"sign", "--key", "ward.key", "--tlog-upload=false", "--yes"}, false},
			{"v2 --recursive", bins["v2"], []string{"sign", "--key", "ward.key", "--tlog-upload=false", "--recursive", "--yes"}, false},
			{"v3 default", bins["v3"], []string{"sign", "--key", "ward.key", "--signing-config", "signing-config.json", "--trusted-root", "trusted-root.json", "--yes"}, true},
		} {
			t.Run(c.name, func(t *testing.T) {
				idx, err := random.Index(256, 1, 2)
				if err != nil {
					t.Fatal(err)
				}
				d, _ := idx.Digest()
				ref := tg.repo(t, "ward/cosigned").Digest(d.String())
				if err := remote.WriteIndex(ref, idx, tg.remote()...); err != nil {
					t.Fatal(err)
				}
				if out, err := runIn(t, dir, c.bin, append(c.args, append(insecure, ref.String())...)...); err != nil {
					t.Fatalf("cosign %s: %v\n%s", strings.Join(c.args, " "), err, out)
				}
				_, legacyErr := remote.Head(signing.SignatureTag(ref), tg.remote()...)
				if (legacyErr == nil) == c.bundle {
					t.Fatalf("cosign %s: legacy signature tag %v, want a bundle %v", c.name, legacyErr, c.bundle)
				}
				v, err := Verify(ctx, ref, &key.PublicKey, tg.remote()...)
				if err != nil {
					t.Fatalf("ward verifies the index cosign %s signed: %v", c.name, err)
				}
				if len(v.Platforms) == 0 {
					t.Errorf("verified %+v: no platforms", v)
				}
				if _, err := Verify(ctx, ref, &testKey(t).PublicKey, tg.remote()...); !errors.Is(err, signing.ErrWrongKey) {
					t.Errorf("another key: %v, want ErrWrongKey", err)
				}
			})
		}
	})
}

// What ward attaches through oras-go is found by the reference tools, on
// both kinds of registry: oras discover lists every referrer of the index
// and of each platform, and cosign tree (v2 with --experimental-oci11, v3
// by default) shows the same.
func TestAttachmentsDiscovered(t *testing.T) {
	oras := tool(t, "WARD_TEST_ORAS")
	bins := cosigns(t)
	eachRegistry(t, func(t *testing.T, tg target) {
		dir, key := cosignDir(t)
		report := Report{"report.html": []byte("<h1>st-olaf</h1>")}
		res, err := NewPublisher(WithRegistry(tg.client), WithSigner(key)).
			Publish(context.Background(), tg.repo(t, "ward/st-olaf"), build(t, testModel("st-olaf", "v1", 1)), report)
		if err != nil {
			t.Fatal(err)
		}
		bySubject := map[string][]Attachment{}
		for _, a := range res.Attached {
			bySubject[a.Subject.String()] = append(bySubject[a.Subject.String()], a)
		}
		if len(bySubject[res.Ref.DigestStr()]) != 3 || len(bySubject) != 3 {
			t.Fatalf("attached %+v: want ModelPack, report and bundle on the index, SBOM and bundle on each platform", res.Attached)
		}
		for subject, atts := range bySubject {
			ref := res.Ref.Context().Digest(subject).String()
			out, err := runIn(t, dir, oras, "discover", "--plain-http", "--format", "json", ref)
			if err != nil {
				t.Fatalf("oras discover %s: %v\n%s", ref, err, out)
			}
			for _, a := range atts {
				if !strings.Contains(out, a.Digest.String()) || !strings.Contains(out, a.ArtifactType) {
					t.Errorf("oras discover %s does not list %s (%s):\n%s", ref, a.Digest, a.ArtifactType, out)
				}
			}
			for v, bin := range bins {
				args := []string{"tree"}
				if v == "v2" {
					args = append(args, "--experimental-oci11")
				}
				out, err := runIn(t, dir, bin, append(args, append(insecure, ref)...)...)
				if err != nil {
					t.Fatalf("cosign %s tree %s: %v\n%s", v, ref, err, out)
				}
				for _, a := range atts {
					if !strings.Contains(out, a.Digest.String()) {
						t.Errorf("cosign %s tree %s does not show %s (%s):\n%s", v, ref, a.Digest, a.ArtifactType, out)
					}
				}
			}
		}
	})
}
