package manifest

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The repo's layout.
const (
	BaseDir           = "base"
	HospitalsDir      = "hospitals"
	KustomizationFile = "kustomization.yaml"
	ReleaseFile       = "release.yaml"
	// ImagePlaceholder is the image name in base/deployment.yaml that each
	// hospital's kustomization.yaml replaces with its image by digest.
	ImagePlaceholder = "ward-serving"
)

// layout holds the files that ward manifest init writes, at the paths
// they take in the repo.
//
//go:embed layout
var layout embed.FS

// initialFiles returns the files of a new manifest repo by path.
func initialFiles() (map[string][]byte, error) {
	files := map[string][]byte{}
	err := fs.WalkDir(layout, "layout", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := layout.ReadFile(p)
		files[strings.TrimPrefix(p, "layout/")] = data
		return err
	})
	return files, err
}

// HospitalDir is the folder of one hospital in the repo.
func HospitalDir(id string) string { return path.Join(HospitalsDir, id) }

// Release is ward's record of the image a hospital runs: the content of
// hospitals/<id>/release.yaml. It holds no wall-clock time, so that the
// revert of a deploy restores the file exactly.
type Release struct {
	Hospital string `yaml:"hospital" json:"hospital"`
	Version  string `yaml:"version" json:"version"`
	// Image is repository@sha256:..., what kustomization.yaml pins.
	Image  string `yaml:"image" json:"image"`
	Digest string `yaml:"digest" json:"digest"`
	// PreviousDigest is the digest this release replaced ("" for the
	// hospital's first deploy).
	PreviousDigest string             `yaml:"previous_digest,omitempty" json:"previous_digest,omitempty"`
	Metrics        map[string]float64 `yaml:"metrics,omitempty" json:"metrics,omitempty"`
	// Window is the model's data window, when the image's model has one.
	Window *Window `yaml:"window,omitempty" json:"window,omitempty"`
}

// window is the release's data window (zero when unknown).
func (r *Release) window() Window {
	if r == nil || r.Window == nil {
		return Window{}
	}
	return *r.Window
}

// Repository is the image's repository, without the digest.
func (r Release) Repository() string {
	repo, _, _ := strings.Cut(r.Image, "@")
	return repo
}

const releaseHeader = `# ward's record of the image this hospital runs. ward deploy writes it,
# ward rollback restores it; the agent reads it. Do not edit by hand.
`

func renderRelease(r Release) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(releaseHeader)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	return buf.Bytes(), enc.Close()
}

// ReadRelease reads and checks hospital id's folder through read (which
// returns an error satisfying errors.Is(err, fs.ErrNotExist) for a missing
// file): release.yaml must be complete and agree with the image that
// kustomization.yaml pins. A hospital without a folder has no release:
// ReadRelease returns nil and no error.
func ReadRelease(read func(name string) ([]byte, error), id string) (*Release, error) {
	dir := HospitalDir(id)
	kfile, rfile := path.Join(dir, KustomizationFile), path.Join(dir, ReleaseFile)
	kdata, kerr := read(kfile)
	rdata, rerr := read(rfile)
	switch {
	case errors.Is(kerr, fs.ErrNotExist) && errors.Is(rerr, fs.ErrNotExist):
		return nil, nil
	case errors.Is(kerr, fs.ErrNotExist):
		return nil, invalid(kfile, "missing, beside %s", ReleaseFile)
	case errors.Is(rerr, fs.ErrNotExist):
		return nil, invalid(rfile, "missing, beside %s", KustomizationFile)
	case kerr != nil:
		return nil, kerr
	case rerr != nil:
		return nil, rerr
	}
	var r Release
	dec := yaml.NewDecoder(bytes.NewReader(rdata))
	dec.KnownFields(true)
	if err := dec.Decode(&r); err != nil {
		return nil, invalid(rfile, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if err := r.check(id); err != nil {
		return nil, &Error{Kind: ErrInvalid, Err: fmt.Errorf("%s: %w", rfile, err)}
	}
	repo, digest, err := pinnedImage(kdata)
	if err != nil {
		return nil, &Error{Kind: ErrInvalid, Err: fmt.Errorf("%s: %w", kfile, err)}
	}
	if repo != r.Repository() || digest != r.Digest {
		return nil, invalid(kfile, "pins %s@%s but %s says %s", repo, digest, ReleaseFile, r.Image)
	}
	return &r, nil
}

func invalid(file, format string, args ...any) error {
	return fail(ErrInvalid, "%s: %s", file, fmt.Sprintf(format, args...))
}

func (r Release) check(id string) error {
	if r.Hospital != id {
		return fmt.Errorf("hospital %q, want %q (the folder's name)", r.Hospital, id)
	}
	if r.Version == "" {
		return errors.New("no version")
	}
	if !strings.Contains(r.Image, "@") {
		return fmt.Errorf("image %q by tag: %w", r.Image, ErrTagged)
	}
	if !digestPattern.MatchString(r.Digest) {
		return fmt.Errorf("digest %q: want sha256: and 64 hex digits", r.Digest)
	}
	if r.PreviousDigest != "" && !digestPattern.MatchString(r.PreviousDigest) {
		return fmt.Errorf("previous_digest %q: want sha256: and 64 hex digits", r.PreviousDigest)
	}
	d, err := ParseImageRef(r.Image)
	if err != nil {
		return fmt.Errorf("image %q: want repository@digest", r.Image)
	}
	if d.DigestStr() != r.Digest || d.Context().Name() != r.Repository() {
		return fmt.Errorf("image %q does not match digest %s", r.Image, r.Digest)
	}
	for m := range r.Metrics {
		if !metricPattern.MatchString(m) {
			return fmt.Errorf("metric %q: want a name of [a-z0-9_]", m)
		}
	}
	return nil
}

// newKustomization is the kustomization.yaml of a hospital's first deploy.
func newKustomization(id string) []byte {
	return fmt.Appendf(nil, `# %[1]s: the serving Deployment of %[2]s. ward deploy and ward rollback
# change the image below; anything else in this folder's kustomization is
# yours to change, and stays.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../base
namePrefix: %[2]s-
labels:
  - pairs:
      ward.dev/hospital: %[2]s
    includeSelectors: true
images:
  - name: %[3]s
    newName: ""
    digest: ""
`, HospitalDir(id), id, ImagePlaceholder)
}

// pinImage sets the repository and digest of the placeholder image in a
// kustomization.yaml and leaves the rest of the file as it is, so that a
// change a person made there survives the next deploy.
func pinImage(data []byte, repo, digest string) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	img, err := placeholderImage(&doc)
	if err != nil {
		return nil, err
	}
	setKey(img, "newName", repo)
	setKey(img, "digest", digest)
	deleteKey(img, "newTag")
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), enc.Close()
}

// pinnedImage returns the repository and digest that a kustomization.yaml
// pins the placeholder image to; a tag is refused.
func pinnedImage(data []byte) (repo, digest string, err error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return "", "", fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	img, err := placeholderImage(&doc)
	if err != nil {
		return "", "", err
	}
	if tag := value(img, "newTag"); tag != nil {
		return "", "", fmt.Errorf("line %d: image %s by tag %q: %w", tag.Line, ImagePlaceholder, tag.Value, ErrTagged)
	}
	n, d := value(img, "newName"), value(img, "digest")
	if n == nil || d == nil || n.Value == "" {
		return "", "", fmt.Errorf("line %d: image %s: want newName and digest", img.Line, ImagePlaceholder)
	}
	if !digestPattern.MatchString(d.Value) {
		return "", "", fmt.Errorf("line %d: digest %q: want sha256: and 64 hex digits", d.Line, d.Value)
	}
	if _, err := ParseImageRef(n.Value + "@" + d.Value); err != nil {
		return "", "", fmt.Errorf("line %d: newName %q: not an image repository", n.Line, n.Value)
	}
	return n.Value, d.Value, nil
}

// placeholderImage finds the images entry named ImagePlaceholder.
func placeholderImage(doc *yaml.Node) (*yaml.Node, error) {
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("want a Kustomization (a mapping)")
	}
	images := value(doc.Content[0], "images")
	if images == nil || images.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("no images list naming %s", ImagePlaceholder)
	}
	var found *yaml.Node
	for _, img := range images.Content {
		if n := value(img, "name"); img.Kind == yaml.MappingNode && n != nil && n.Value == ImagePlaceholder {
			if found != nil {
				return nil, fmt.Errorf("line %d: image %s listed twice", img.Line, ImagePlaceholder)
			}
			found = img
		}
	}
	if found == nil {
		return nil, fmt.Errorf("line %d: no image named %s", images.Line, ImagePlaceholder)
	}
	return found, nil
}

func value(m *yaml.Node, key string) *yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func setKey(m *yaml.Node, key, v string) {
	if n := value(m, key); n != nil {
		n.Kind, n.Tag, n.Value, n.Style = yaml.ScalarNode, "!!str", v, 0
		return
	}
	m.Content = append(m.Content,
		&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key},
		&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v})
}

func deleteKey(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}
