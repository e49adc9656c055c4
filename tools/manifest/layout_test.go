package manifest

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

// folder is a hospital's files in memory, read like a tree.
func folder(files map[string]string) func(string) ([]byte, error) {
	return func(n string) ([]byte, error) {
		d, ok := files[n]
		if !ok {
			return nil, fmt.Errorf("%s: %w", n, fs.ErrNotExist)
		}
		return []byte(d), nil
	}
}

// validFolder is st-olaf's folder after a deploy of v1.
func validFolder(t *testing.T) map[string]string {
	t.Helper()
	i := img("st-olaf/v1")
	rel := Release{Hospital: "st-olaf", Version: "v1", Image: i.Ref, Digest: i.Digest, Metrics: i.Metrics}
	k, err := pinImage(newKustomization("st-olaf"), rel.Repository(), rel.Digest)
	if err != nil {
		t.Fatal(err)
	}
	r, err := renderRelease(rel)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"hospitals/st-olaf/kustomization.yaml": string(k), "hospitals/st-olaf/release.yaml": string(r)}
}

func TestReadReleaseChecksTheContent(t *testing.T) {
	files := validFolder(t)
	rel, err := ReadRelease(folder(files), "st-olaf")
	if err != nil {
		t.Fatal(err)
	}
	if want := img("st-olaf/v1"); rel.Digest != want.Digest || rel.Image != want.Ref || rel.Metrics["mae"] != 1234.5 {
		t.Fatalf("release %+v", rel)
	}
	if rel, err := ReadRelease(folder(nil), "st-olaf"); rel != nil || err != nil {
		t.Fatalf("no folder: %+v, %v", rel, err)
	}

	const k, r = "hospitals/st-olaf/kustomization.yaml", "hospitals/st-olaf/release.yaml"
	d1, d2 := img("st-olaf/v1").Digest, img("st-olaf/v2").Digest
	cases := []struct {
		name         string
		file, from   string
		to           string
		wantFile     string
		wantContains string
	}{
		{"kustomization by tag", k, "digest: " + d1, "newTag: v1", k, `by tag "v1": pin it by digest`},
		{"release by tag", r, "image: registry.test/ward/st-olaf@" + d1, "image: registry.test/ward/st-olaf:v1", r, `image "registry.test/ward/st-olaf:v1" by tag: pin it by digest`},
		{"files disagree", k, d1, d2, k, "pins registry.test/ward/st-olaf@" + d2 + " but release.yaml says"},
		{"other hospital", r, "hospital: st-olaf", "hospital: mercy", r, `hospital "mercy", want "st-olaf"`},
		{"unknown field", r, "version: v1", "version: v1\nreplicas: 3", r, "field replicas not found"},
		{"short digest", r, "digest: " + d1, "digest: sha256:abc", r, `digest "sha256:abc"`},
		{"image and digest disagree", r, "image: registry.test/ward/st-olaf@" + d1, "image: registry.test/ward/st-olaf@" + d2, r, "does not match digest"},
		{"no placeholder", k, "name: ward-serving", "name: nginx", k, "no image named ward-serving"},
		{"not yaml", k, "images:", "images: [", k, "did not find expected"},
		{"no version", r, "version: v1", "version: \"\"", r, "no version"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := map[string]string{k: files[k], r: files[r]}
			if !strings.Contains(bad[c.file], c.from) {
				t.Fatalf("%s lacks %q:\n%s", c.file, c.from, bad[c.file])
			}
			bad[c.file] = strings.Replace(bad[c.file], c.from, c.to, 1)
			_, err := ReadRelease(folder(bad), "st-olaf")
			wantErr(t, err, ErrInvalid, c.wantFile+": ", c.wantContains)
			if tagged := strings.Contains(c.name, "by tag"); errors.Is(err, ErrTagged) != tagged {
				t.Errorf("errors.Is(%v, ErrTagged) = %v, want %v", err, !tagged, tagged)
			}
		})
	}
	only := map[string]string{r: files[r]}
	_, err = ReadRelease(folder(only), "st-olaf")
	wantErr(t, err, ErrInvalid, k+": missing")
}

func TestParseImageRef(t *testing.T) {
	d := "sha256:" + strings.Repeat("0a", 32)
	for in, want := range map[string]string{
		"registry.test/ward/st-olaf@" + d:           "registry.test/ward/st-olaf@" + d,
		"registry.test/ward/st-olaf:v2@" + d:        "registry.test/ward/st-olaf@" + d,
		"localhost:5000/ward/st-olaf@" + d:          "localhost:5000/ward/st-olaf@" + d,
		"localhost:5000/ward/st-olaf:2026.1@" + d:   "localhost:5000/ward/st-olaf@" + d,
		"ghcr.io/hospital-group/ward/mercy@" + d:    "ghcr.io/hospital-group/ward/mercy@" + d,
		"127.0.0.1:5000/ward/st-olaf:latest@" + d:   "127.0.0.1:5000/ward/st-olaf@" + d,
		"registry.test/Ward/st-olaf@" + d:           "",
		"registry.test/ward/st-olaf:v2":             "",
		"registry.test/ward/st-olaf":                "",
		"registry.test/ward/st-olaf@sha256:abc":     "",
		"registry.test/ward/st-olaf@sha512:" + d:    "",
		"registry.test/ward/st-olaf@" + d + "@" + d: "",
	} {
		got, err := ParseImageRef(in)
		if want == "" {
			if !errors.Is(err, ErrUsage) {
				t.Errorf("ParseImageRef(%s) = %s, %v; want an error", in, got, err)
			}
			continue
		}
		if err != nil || got.String() != want {
			t.Errorf("ParseImageRef(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
}

func TestImageFromAnnotations(t *testing.T) {
	ref, err := name.NewDigest("registry.test/ward/st-olaf@sha256:" + strings.Repeat("0a", 32))
	if err != nil {
		t.Fatal(err)
	}
	img, err := ImageFromAnnotations(ref, map[string]string{
		AnnotationHospital:                    "st-olaf",
		AnnotationModelVersion:                "2026-11.1",
		AnnotationVersion:                     "ignored when the model version is there",
		AnnotationMetricPrefix + "mae":        "1234.5",
		AnnotationMetricPrefix + "under_rate": "0.18",
		"org.opencontainers.image.created":    "2026-11-30T00:00:00Z",
	})
	if err != nil {
		t.Fatal(err)
	}
	if img.Hospital != "st-olaf" || img.Version != "2026-11.1" || img.Digest != ref.DigestStr() || img.Ref != ref.String() ||
		len(img.Metrics) != 2 || img.Metrics["mae"] != 1234.5 || img.Metrics["under_rate"] != 0.18 {
		t.Fatalf("image %+v", img)
	}
	img, err = ImageFromAnnotations(ref, map[string]string{AnnotationHospital: "st-olaf", AnnotationVersion: "v3"})
	if err != nil || img.Version != "v3" || img.Metrics != nil {
		t.Fatalf("OCI version: %+v, %v", img, err)
	}
	for _, c := range []struct {
		ann  map[string]string
		says string
	}{
		{map[string]string{AnnotationVersion: "v3"}, "no dev.ward.hospital annotation"},
		{map[string]string{AnnotationHospital: "st-olaf"}, "no dev.ward.model.version or org.opencontainers.image.version"},
		{map[string]string{AnnotationHospital: "st-olaf", AnnotationVersion: "v3", AnnotationMetricPrefix + "mae": "low"}, `dev.ward.metrics.mae="low"`},
		{map[string]string{AnnotationHospital: "st-olaf", AnnotationVersion: "v3", AnnotationMetricPrefix + "MAE!": "1"}, "want a metric name"},
	} {
		if _, err := ImageFromAnnotations(ref, c.ann); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%v: error %v, want %q", c.ann, err, c.says)
		}
	}
}

// ParseTrailers reads what git interpret-trailers --parse reads.
func TestParseTrailersLikeGit(t *testing.T) {
	for _, msg := range []string{
		"deploy(st-olaf): v2\n\nPin x.\n\nWard-Hospital: st-olaf\nWard-Version: v2\n",
		"Revert \"deploy(st-olaf): v2\"\n\nThis reverts commit 0123456789abcdef0123456789abcdef01234567.\n",
		"one line only: not a trailer\n",
		"subject\n\nbody with a colon: in it\nand another line\n",
		"subject\n\nWard-Hospital: st-olaf\nWard-Version:\n  folded value\nSigned-off-by: Someone <a@b.c>\n",
		"subject\n\nbody\n\nkey : spaced\n",
	} {
		cmd := execGit("", "interpret-trailers", "--parse")
		cmd.Stdin = strings.NewReader(msg)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		var ours strings.Builder
		for _, tr := range ParseTrailers(msg) {
			ours.WriteString(tr.Key + ": " + tr.Value + "\n")
		}
		if ours.String() != string(out) {
			t.Errorf("message %q:\nours:\n%s\ngit:\n%s", msg, ours.String(), out)
		}
	}
}
