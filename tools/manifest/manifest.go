// Package manifest keeps the Git manifest repo, the record of which signed
// image each hospital runs. It comes after packaging in the loop: a deploy
// is a commit that pins a verified image by digest in hospitals/<id>/, a
// rollback is the revert of one, and the timeline of both is read back from
// the commits. Hospitals follow the repo with ward's agent, or with Argo CD
// or Flux through Kustomize.
package manifest

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/wardml/ward/models/trained"
)

// The errors that say why a command changed nothing; the CLI maps them to
// exit codes (ErrUsage, ErrUnreachable and ErrNotInitialized to 2, the
// others to 1).
var (
	// ErrUsage: a bad hospital id, an image by tag, no verifier.
	ErrUsage = errors.New("usage")
	// ErrUnreachable: the manifest repo cannot be cloned or fetched.
	ErrUnreachable = errors.New("manifest repo unreachable")
	// ErrNotInitialized: the repo has no base/ (run ward manifest init).
	ErrNotInitialized = errors.New("manifest repo not initialized")
	// ErrUnverified: the image's signature, digest or hospital did not check.
	ErrUnverified = errors.New("image not verified")
	// ErrRejected: the digest was rolled back and --force was not given.
	ErrRejected = errors.New("digest was rolled back")
	// ErrConflict: a rollback whose files changed since the deploy.
	ErrConflict = errors.New("rollback conflict")
	// ErrInvalid: the manifest content of a hospital does not check.
	ErrInvalid = errors.New("invalid manifest content")
	// ErrMoved: the hospital's release is no longer the one a deploy or
	// rollback expected to replace (another landed first).
	ErrMoved = errors.New("the hospital's release moved")
	// ErrTagged: content that names the image by tag. It comes inside an
	// ErrInvalid (errors.Is tells both), so that the agent can say which
	// of the two refused a hand edit.
	ErrTagged = errors.New("pin it by digest")
)

// Error is a failure of a kind above: errors.Is(err, ErrRejected) tells
// the kind, the message says the rest.
type Error struct {
	Kind error
	Err  error
}

func (e *Error) Error() string        { return e.Err.Error() }
func (e *Error) Unwrap() error        { return e.Err }
func (e *Error) Is(target error) bool { return target == e.Kind }

func fail(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Err: fmt.Errorf(format, args...)}
}

// The annotations of a packaged image that a deploy records. The model
// version is ward's own annotation, else the OCI version.
const (
	AnnotationHospital     = trained.AnnotationHospital
	AnnotationModelVersion = trained.AnnotationModelVersion
	AnnotationVersion      = trained.AnnotationVersion
	AnnotationMetricPrefix = trained.AnnotationMetricPrefix
)

// Image is what a deploy records about a verified image.
type Image struct {
	// Ref is repository@sha256:..., pinned by digest.
	Ref      string
	Digest   string
	Hospital string
	Version  string
	Metrics  map[string]float64
	// Window is the data window of its model (ModelWindow), when known:
	// with the version it orders models (CompareModels).
	Window Window
}

// Verifier checks the signature of the image at ref (repository@digest)
// and returns what its verified annotations say. It must fail for an
// unsigned image, a signature by another key and a digest that does not
// match; ImageFromAnnotations turns the annotations into an Image.
type Verifier func(ctx context.Context, ref string) (Image, error)

var (
	idPattern     = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	digestPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	metricPattern = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)
)

// CheckHospital refuses ids that are not a folder name of hospitals/ (the
// agent names its data folder by the id too).
func CheckHospital(id string) error {
	if !idPattern.MatchString(id) {
		return fail(ErrUsage, "hospital %q: want lower-case letters, digits and dashes (a folder under hospitals/)", id)
	}
	return nil
}

// ParseImageRef reads REPOSITORY@sha256:DIGEST and returns it without a
// tag, the form a deploy pins. A reference by tag alone is refused: a tag
// can move, a digest cannot.
func ParseImageRef(ref string) (name.Digest, error) {
	if !strings.Contains(ref, "@") {
		return name.Digest{}, fail(ErrUsage, "image %q is a reference by tag: deploys pin a digest (REPOSITORY@sha256:...), as ward package prints it", ref)
	}
	d, err := name.NewDigest(ref)
	if err != nil {
		return name.Digest{}, fail(ErrUsage, "image %q: %w", ref, err)
	}
	if !digestPattern.MatchString(d.DigestStr()) {
		return name.Digest{}, fail(ErrUsage, "image %q: want a sha256 digest (sha256: and 64 hex digits)", ref)
	}
	// Drop a tag given beside the digest: the digest is what runs.
	return name.NewDigest(d.Context().Name() + "@" + d.DigestStr())
}

// ImageFromAnnotations reads a verified image's annotations: the hospital
// (dev.ward.hospital), the model version (dev.ward.model.version, else
// org.opencontainers.image.version) and the metrics (dev.ward.metrics.*).
func ImageFromAnnotations(ref name.Digest, annotations map[string]string) (Image, error) {
	img := Image{
		Ref:      ref.Context().Name() + "@" + ref.DigestStr(),
		Digest:   ref.DigestStr(),
		Hospital: annotations[AnnotationHospital],
		Version:  annotations[AnnotationModelVersion],
	}
	if img.Version == "" {
		img.Version = annotations[AnnotationVersion]
	}
	if img.Hospital == "" {
		return Image{}, fmt.Errorf("image %s: no %s annotation: not an image of ward package", img.Ref, AnnotationHospital)
	}
	if img.Version == "" {
		return Image{}, fmt.Errorf("image %s: no %s or %s annotation", img.Ref, AnnotationModelVersion, AnnotationVersion)
	}
	keys := make([]string, 0, len(annotations))
	for k := range annotations {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		m, ok := strings.CutPrefix(k, AnnotationMetricPrefix)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(annotations[k], 64)
		if err != nil || !metricPattern.MatchString(m) {
			return Image{}, fmt.Errorf("image %s: annotation %s=%q: want a metric name of [a-z0-9_] and a number", img.Ref, k, annotations[k])
		}
		if img.Metrics == nil {
			img.Metrics = map[string]float64{}
		}
		img.Metrics[m] = v
	}
	return img, nil
}
