// Package image is the package stage of the loop: it turns one hospital's
// model and the serving binary into a reproducible, multi-arch OCI image
// (Build), pushes it, signs it and attaches its papers to it (Publisher),
// and checks an image before deploy or the agent runs it (Verify).
//
// An image has, for each platform, two layers on an empty base: the static
// serving binary at /ward/serve (the same bytes for every hospital, so a
// registry stores it once and a push sends it once), then the model under
// /models/. Everything is reproducible: no wall-clock time (the caller
// gives the time, from SOURCE_DATE_EPOCH or the commit), fixed modes and
// owners, sorted tar entries, so the same model and source give the same
// digests. Docker is never needed: github.com/google/go-containerregistry
// builds and pushes.
package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/wardml/ward/models/trained"
)

// Paths and settings inside the image (the paths and the annotation keys
// are defined in models/trained, which the agent and deploy read too).
const (
	ServerPath = trained.ServerPath
	ModelPath  = trained.ModelPath
	CardPath   = trained.CardPath
	Port       = 8080
	// User is the numeric user and group the server runs as (distroless's
	// "nonroot"): never root.
	User = "65532:65532"
)

// Annotation keys: the OCI ones, and ward's own.
const (
	AnnotationCreated     = trained.AnnotationCreated
	AnnotationVersion     = trained.AnnotationVersion
	AnnotationRevision    = trained.AnnotationRevision
	AnnotationSource      = trained.AnnotationSource
	AnnotationTitle       = trained.AnnotationTitle
	AnnotationDescription = trained.AnnotationDescription

	AnnotationHospital     = trained.AnnotationHospital
	AnnotationModelVersion = trained.AnnotationModelVersion
	AnnotationModelFamily  = trained.AnnotationModelFamily
	AnnotationMetricPrefix = trained.AnnotationMetricPrefix
)

// Model is what one hospital's image carries besides the server.
type Model struct {
	Hospital string
	Version  string
	Family   string
	// Metrics are the validation metrics (mae, rmse, under_rate, ...).
	Metrics map[string]float64
	// Artifact is the model file the server loads; Card is its model card
	// (Markdown).
	Artifact []byte
	Card     []byte
}

// Server is the serving binary, one static build per platform. It keeps
// the layers it was packed into, so that packaging many hospitals
// compresses the binary once.
type Server struct {
	// Binaries are keyed by platform: "linux/amd64", "linux/arm64".
	Binaries map[string][]byte

	mu     sync.Mutex
	layers map[string]v1.Layer
}

// NewServer wraps binaries keyed by platform.
func NewServer(binaries map[string][]byte) *Server {
	return &Server{Binaries: binaries, layers: map[string]v1.Layer{}}
}

// layer returns the binary of platform packed as a layer with the time t.
func (s *Server) layer(platform string, t time.Time) (v1.Layer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := platform + "@" + t.String()
	if l, ok := s.layers[key]; ok {
		return l, nil
	}
	l, err := newLayer(t, types.OCILayer, []file{
		{name: strings.TrimPrefix(ServerPath, "/"), mode: 0o755, data: s.Binaries[platform]},
	})
	if err != nil {
		return nil, err
	}
	s.layers[key] = l
	return l, nil
}

// Platforms are the platforms ward builds for by default.
var Platforms = []string{"linux/amd64", "linux/arm64"}

// Image is a built image: its index and what it was built from, which the
// publisher needs for the attachments.
type Image struct {
	Index v1.ImageIndex
	Model Model
	// Platforms maps each platform to its image.
	Platforms map[string]v1.Image
	// ServerLayers are the binary layers (one per platform): the same for
	// every hospital, so the publisher mounts them across repositories.
	ServerLayers []v1.Layer
	// ModelLayer is the model's layer, which the ModelPack manifest points
	// at too.
	ModelLayer v1.Layer
	server     *Server
	created    time.Time
	source     string
	revision   string
}

// BuildOption sets what a build records about its source.
type BuildOption func(*buildConfig)

type buildConfig struct {
	created  time.Time
	source   string
	revision string
}

// Created sets the time recorded in the image (config, history, tar
// entries, annotation). Callers take it from SOURCE_DATE_EPOCH or the
// commit time, never the clock; the default is the Unix epoch.
func Created(t time.Time) BuildOption { return func(c *buildConfig) { c.created = t.UTC() } }

// Source sets the URL of the source (org.opencontainers.image.source).
func Source(url string) BuildOption { return func(c *buildConfig) { c.source = url } }

// Revision sets the source revision, a commit (org.opencontainers.image.revision).
func Revision(rev string) BuildOption { return func(c *buildConfig) { c.revision = rev } }

// Build makes the image of one hospital's model with the server: the
// server's image (ServerImage) with the model appended (BuildOn). It is
// pure: the same inputs give the same digests.
func Build(m Model, srv *Server, opts ...BuildOption) (*Image, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	if srv == nil || len(srv.Binaries) == 0 {
		return nil, fmt.Errorf("image %s: no serving binary", m.Hospital)
	}
	base, err := ServerImage(srv, opts...)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", m.Hospital, err)
	}
	return BuildOn(base, m, opts...)
}

// BuildOn makes the image of one hospital's model on the server's image:
// on each of its platforms, the model's layer appended, the config's labels
// and the annotations the model's. The server's layers are the base's own
// blobs, so a registry that has the base stores and receives them once for
// every hospital. It is pure: the same base and model give the same digests.
func BuildOn(base *Base, m Model, opts ...BuildOption) (*Image, error) {
	cfg := buildConfig{created: time.Unix(0, 0).UTC()}
	for _, o := range opts {
		o(&cfg)
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	card := m.Card
	if len(card) == 0 {
		card = DefaultCard(m)
	}
	modelLayer, err := newLayer(cfg.created, types.OCILayer, []file{
		{name: strings.TrimPrefix(ModelPath, "/"), mode: 0o644, data: m.Artifact},
		{name: strings.TrimPrefix(CardPath, "/"), mode: 0o644, data: card},
	})
	if err != nil {
		return nil, err
	}
	anns := annotations(m, cfg)
	if base.Ref != nil {
		anns[trained.AnnotationBaseName] = base.Ref.Context().Name()
		anns[trained.AnnotationBaseDigest] = base.Ref.DigestStr()
	}
	img := &Image{
		Model: m, Platforms: map[string]v1.Image{}, ModelLayer: modelLayer, server: base.server,
		created: cfg.created, source: cfg.source, revision: cfg.revision,
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range base.platformNames() {
		pi, err := withModel(base.platforms[p], modelLayer, anns, cfg.created)
		if err != nil {
			return nil, fmt.Errorf("image %s %s: %w", m.Hospital, p, err)
		}
		img.Platforms[p] = pi
		img.ServerLayers = append(img.ServerLayers, base.layers[p])
		plat := base.platform(p)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: pi, Descriptor: v1.Descriptor{Platform: &plat}})
	}
	img.Index = mutate.Annotations(idx, anns).(v1.ImageIndex)
	return img, nil
}

func (m Model) check() error {
	switch {
	case m.Hospital == "":
		return fmt.Errorf("image: the model names no hospital")
	case m.Version == "":
		return fmt.Errorf("image %s: the model has no version", m.Hospital)
	case len(m.Artifact) == 0:
		return fmt.Errorf("image %s: the model artifact is empty", m.Hospital)
	}
	return nil
}

// withModel appends the model layer to a platform image of the server, and
// gives it the model's time, labels and annotations.
func withModel(server v1.Image, model v1.Layer, anns map[string]string, created time.Time) (v1.Image, error) {
	img, err := mutate.Append(server,
		mutate.Addendum{Layer: model, History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "ward package: model " + ModelPath}},
	)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: created}
	cf.Config.Labels = anns
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, anns).(v1.Image), nil
}

func annotations(m Model, cfg buildConfig) map[string]string {
	a := map[string]string{
		AnnotationCreated:      cfg.created.Format(time.RFC3339),
		AnnotationVersion:      m.Version,
		AnnotationTitle:        "ward-serve " + m.Hospital,
		AnnotationDescription:  fmt.Sprintf("Total-bill model %s (%s) of hospital %s, served by ward-serve on port %d", m.Version, m.Family, m.Hospital, Port),
		AnnotationHospital:     m.Hospital,
		AnnotationModelVersion: m.Version,
	}
	if m.Family != "" {
		a[AnnotationModelFamily] = m.Family
	}
	if cfg.source != "" {
		a[AnnotationSource] = cfg.source
	}
	if cfg.revision != "" {
		a[AnnotationRevision] = cfg.revision
	}
	for k, v := range m.Metrics {
		a[AnnotationMetricPrefix+k] = strconv.FormatFloat(v, 'g', -1, 64)
	}
	return a
}

// DefaultCard is the model card of a model that comes without one.
func DefaultCard(m Model) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# Model card: %s %s\n\n", m.Hospital, m.Version)
	fmt.Fprintf(&b, "- Hospital: %s\n- Version: %s\n- Family: %s\n", m.Hospital, m.Version, m.Family)
	b.WriteString("- Predicts: the total bill of a case at pre-admission\n")
	b.WriteString("- Served by: ward-serve, POST /v1/predict (GET /v1/model lists the inputs)\n")
	if len(m.Metrics) > 0 {
		b.WriteString("\n## Validation metrics\n\n| metric | value |\n|---|---|\n")
		for _, k := range slices.Sorted(maps.Keys(m.Metrics)) {
			fmt.Fprintf(&b, "| %s | %s |\n", k, strconv.FormatFloat(m.Metrics[k], 'g', 6, 64))
		}
	}
	return []byte(b.String())
}

// file is one regular file of a layer.
type file struct {
	name string
	mode int64
	data []byte
}

// newLayer writes files (and their parent folders) into a gzipped tar
// with sorted entries, owner root, fixed modes and the given time, so the
// same files always give the same digest.
func newLayer(mtime time.Time, mt types.MediaType, files []file) (v1.Layer, error) {
	dirs := map[string]bool{}
	for _, f := range files {
		for d := f.name; strings.Contains(d, "/"); {
			d = d[:strings.LastIndex(d, "/")]
			dirs[d+"/"] = true
		}
	}
	type entry struct {
		hdr  tar.Header
		data []byte
	}
	var entries []entry
	for d := range dirs {
		entries = append(entries, entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}})
	}
	for _, f := range files {
		entries = append(entries, entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.data))}, data: f.data})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].hdr.Name < entries[j].hdr.Name })

	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, e := range entries {
		e.hdr.ModTime = mtime
		e.hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(&e.hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return &layer{gz: gz.Bytes(), raw: raw.Bytes(), mt: mt, digest: hash(gz.Bytes()), diffID: hash(raw.Bytes())}, nil
}

// layer is a layer held in memory, compressed and not: ward's layers are a
// binary and a model, a few MiB each.
type layer struct {
	gz, raw        []byte
	mt             types.MediaType
	digest, diffID v1.Hash
}

func (l *layer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *layer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *layer) Size() (int64, error)                { return int64(len(l.gz)), nil }
func (l *layer) MediaType() (types.MediaType, error) { return l.mt, nil }
func (l *layer) Compressed() (io.ReadCloser, error)  { return io.NopCloser(bytes.NewReader(l.gz)), nil }
func (l *layer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.raw)), nil
}

func hash(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sum)}
}
