package image

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	orasremote "oras.land/oras-go/v2/registry/remote"

	"github.com/wardml/ward/internal/version"
	"github.com/wardml/ward/tools/signing"
)

// Artifact types of what ward attaches to an image (and
// signing.BundleMediaType for the signature bundles), with the OCI 1.1
// referrers API, or its tag-schema fallback (sha256-<hex>) on a registry
// without it, through oras-go.
const (
	// ModelPackArtifactType is the CNCF ModelPack model manifest: KitOps
	// and other ModelPack tools read the model from it without the server.
	ModelPackArtifactType = "application/vnd.cncf.model.manifest.v1+json"
	modelPackConfigType   = "application/vnd.cncf.model.config.v1+json"
	modelPackWeightType   = "application/vnd.cncf.model.weight.v1.tar+gzip"
	modelPackFilepath     = "org.cncf.model.filepath"
	// SBOMArtifactType is an SPDX 2.3 JSON document of the serving binary.
	SBOMArtifactType = "application/spdx+json"
	// ReportArtifactType is the training report: HTML, plots, metrics.
	ReportArtifactType = "application/vnd.dev.ward.report.v1"
	emptyConfigType    = "application/vnd.oci.empty.v1+json"
)

// artifact is one manifest to attach.
type artifact struct {
	artifactType string
	subject      v1.Descriptor
	config       v1.Layer
	layers       []v1.Layer
	layerAnns    []map[string]string
	annotations  map[string]string
}

// attachments builds what Publish attaches: the ModelPack manifest and
// the report to the index, an SBOM to each platform's manifest.
func (img *Image) attachments(report Report) ([]artifact, error) {
	idxDesc, err := descriptorOf(img.Index)
	if err != nil {
		return nil, err
	}
	created := img.created.Format(time.RFC3339)
	var out []artifact

	mp, err := img.modelPack(idxDesc)
	if err != nil {
		return nil, err
	}
	out = append(out, mp)

	for _, plat := range slices.Sorted(maps.Keys(img.Platforms)) {
		a, err := sbomOf(img.Platforms[plat], img.server.Binaries[plat], plat, img.created)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}

	if len(report) > 0 {
		a := artifact{
			artifactType: ReportArtifactType,
			subject:      idxDesc,
			config:       static.NewLayer([]byte("{}"), emptyConfigType),
			annotations:  map[string]string{AnnotationCreated: created, AnnotationHospital: img.Model.Hospital, AnnotationModelVersion: img.Model.Version},
		}
		for _, f := range slices.Sorted(maps.Keys(report)) {
			a.layers = append(a.layers, static.NewLayer(report[f], mediaTypeOf(f)))
			a.layerAnns = append(a.layerAnns, map[string]string{AnnotationTitle: f})
		}
		out = append(out, a)
	}
	return out, nil
}

// sbomOf is the SBOM of a platform's server binary, attached to that
// platform's manifest.
func sbomOf(subject describable, bin []byte, plat string, created time.Time) (artifact, error) {
	desc, err := descriptorOf(subject)
	if err != nil {
		return artifact{}, err
	}
	doc, err := SBOM(bin, plat, created)
	if err != nil {
		return artifact{}, err
	}
	return artifact{
		artifactType: SBOMArtifactType,
		subject:      desc,
		config:       static.NewLayer([]byte("{}"), emptyConfigType),
		layers:       []v1.Layer{static.NewLayer(doc, SBOMArtifactType)},
		layerAnns:    []map[string]string{{AnnotationTitle: "ward-serve." + path.Base(plat) + ".spdx.json"}},
		annotations:  map[string]string{AnnotationCreated: created.Format(time.RFC3339)},
	}, nil
}

// modelPack describes the model layer (the same blob as in the image) as a
// ModelPack model, so that model tools find it without running the server.
func (img *Image) modelPack(subject v1.Descriptor) (artifact, error) {
	m := img.Model
	diffID, err := img.ModelLayer.DiffID()
	if err != nil {
		return artifact{}, err
	}
	created := img.created
	desc := map[string]any{
		"createdAt":   created,
		"family":      m.Family,
		"name":        m.Hospital,
		"version":     m.Version,
		"title":       "ward model " + m.Hospital + " " + m.Version,
		"description": fmt.Sprintf("Total-bill model of hospital %s; the model file is %s, its card %s", m.Hospital, ModelPath, CardPath),
		"vendor":      "ward",
	}
	if img.source != "" {
		desc["sourceURL"] = img.source
	}
	if img.revision != "" {
		desc["revision"] = img.revision
	}
	cfg := map[string]any{
		"descriptor": desc,
		"config":     map[string]any{"architecture": m.Family, "format": "ward-model-json"},
		"modelfs":    map[string]any{"type": "layers", "diffIds": []string{diffID.String()}},
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return artifact{}, err
	}
	return artifact{
		artifactType: ModelPackArtifactType,
		subject:      subject,
		config:       static.NewLayer(b, modelPackConfigType),
		layers:       []v1.Layer{retyped{img.ModelLayer, modelPackWeightType}},
		layerAnns:    []map[string]string{{modelPackFilepath: "models"}},
		annotations: map[string]string{
			AnnotationCreated: created.Format(time.RFC3339), AnnotationTitle: m.Hospital + " " + m.Version,
			AnnotationHospital: m.Hospital, AnnotationModelVersion: m.Version,
		},
	}, nil
}

// retyped is a layer under another media type: the same blob, described
// as a ModelPack weight.
type retyped struct {
	v1.Layer
	mt types.MediaType
}

func (r retyped) MediaType() (types.MediaType, error) { return r.mt, nil }

// bundleArtifact is a Sigstore bundle that signs subject, as cosign v3
// attaches it.
func bundleArtifact(subject v1.Descriptor, raw []byte, created time.Time) artifact {
	return artifact{
		artifactType: signing.BundleMediaType,
		subject:      subject,
		config:       static.NewLayer([]byte("{}"), emptyConfigType),
		layers:       []v1.Layer{static.NewLayer(raw, signing.BundleMediaType)},
		layerAnns:    []map[string]string{nil},
		annotations: map[string]string{
			AnnotationCreated:                 created.Format(time.RFC3339),
			signing.BundleContentAnnotation:   "dsse-envelope",
			signing.BundlePredicateAnnotation: signing.SignPredicateType,
		},
	}
}

// attach pushes the artifact's blobs and its manifest (by digest, with its
// subject) through oras-go, which keeps the sha256-<hex> fallback index
// where the registry has no referrers API. What the registry has already is
// not sent again; a manifest that is there but missing from the listing (a
// run cut between the two) is pushed again, so that oras indexes it.
func attach(ctx context.Context, repo *orasremote.Repository, a artifact) (Attachment, error) {
	cfgDesc, err := layerDescriptor(a.config, nil)
	if err != nil {
		return Attachment{}, err
	}
	if err := pushBlob(ctx, repo, a.config, cfgDesc); err != nil {
		return Attachment{}, err
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  a.artifactType,
		Config:        cfgDesc,
		Layers:        []v1.Descriptor{},
		Annotations:   a.annotations,
		Subject:       &a.subject,
	}
	for i, l := range a.layers {
		d, err := layerDescriptor(l, a.layerAnns[i])
		if err != nil {
			return Attachment{}, err
		}
		if err := pushBlob(ctx, repo, l, d); err != nil {
			return Attachment{}, err
		}
		m.Layers = append(m.Layers, d)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return Attachment{}, err
	}
	d := hash(raw)
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.Digest(d.String()), Size: int64(len(raw)), ArtifactType: a.artifactType}
	out := Attachment{ArtifactType: a.artifactType, Subject: a.subject.Digest, Digest: d}
	if ok, err := repo.Exists(ctx, desc); err != nil {
		return Attachment{}, err
	} else if ok {
		listed, err := referrerListed(ctx, repo, a.subject, d)
		if err != nil || listed {
			return out, err
		}
	}
	if err := repo.Push(ctx, desc, bytes.NewReader(raw)); err != nil {
		return Attachment{}, err
	}
	return out, nil
}

// pushBlob sends a blob the repository does not have.
func pushBlob(ctx context.Context, repo *orasremote.Repository, l v1.Layer, d v1.Descriptor) error {
	desc := ocispec.Descriptor{MediaType: string(d.MediaType), Digest: digest.Digest(d.Digest.String()), Size: d.Size}
	if ok, err := repo.Exists(ctx, desc); err != nil || ok {
		return err
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	return repo.Push(ctx, desc, rc)
}

// referrerListed says whether the subject's referrers (the API, or the
// fallback index) list the manifest d.
func referrerListed(ctx context.Context, repo *orasremote.Repository, subject v1.Descriptor, d v1.Hash) (bool, error) {
	found := false
	err := repo.Referrers(ctx, ocispec.Descriptor{MediaType: string(subject.MediaType), Digest: digest.Digest(subject.Digest.String()), Size: subject.Size}, "", func(refs []ocispec.Descriptor) error {
		for _, r := range refs {
			if r.Digest.String() == d.String() {
				found = true
			}
		}
		return nil
	})
	return found, err
}

// Referrers lists what is attached to ref, from the referrers API or the
// tag-schema fallback, optionally only of one artifact type.
func Referrers(ctx context.Context, ref name.Digest, artifactType string, opts ...remote.Option) ([]v1.Descriptor, error) {
	opts = append(slices.Clone(opts), remote.WithContext(ctx))
	if artifactType != "" {
		opts = append(opts, remote.WithFilter("artifactType", artifactType))
	}
	idx, err := remote.Referrers(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("referrers of %s: %w", ref, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("referrers of %s: %w", ref, err)
	}
	return im.Manifests, nil
}

func layerDescriptor(l v1.Layer, anns map[string]string) (v1.Descriptor, error) {
	d, err := l.Digest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	size, err := l.Size()
	if err != nil {
		return v1.Descriptor{}, err
	}
	mt, err := l.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Digest: d, Size: size, Annotations: anns}, nil
}

type describable interface {
	Digest() (v1.Hash, error)
	Size() (int64, error)
	MediaType() (types.MediaType, error)
}

func descriptorOf(x describable) (v1.Descriptor, error) {
	d, err := x.Digest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	size, err := x.Size()
	if err != nil {
		return v1.Descriptor{}, err
	}
	mt, err := x.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Digest: d, Size: size}, nil
}

func mediaTypeOf(file string) types.MediaType {
	switch path.Ext(file) {
	case ".html", ".htm":
		return "text/html"
	case ".png":
		return "image/png"
	case ".svg":
		return "image/svg+xml"
	case ".json":
		return "application/json"
	case ".md":
		return "text/markdown"
	case ".csv":
		return "text/csv"
	case ".txt":
		return "text/plain"
	}
	return "application/octet-stream"
}

// SBOM returns an SPDX 2.3 JSON document of a Go binary, from the build
// information the Go toolchain writes into it: the main module, the
// standard library and every module linked in.
func SBOM(bin []byte, platform string, created time.Time) ([]byte, error) {
	bi, err := buildinfo.Read(bytes.NewReader(bin))
	if err != nil {
		return nil, fmt.Errorf("SBOM of the %s server: no Go build information: %w", platform, err)
	}
	sum := hash(bin)
	type ref struct {
		Category string `json:"referenceCategory"`
		Type     string `json:"referenceType"`
		Locator  string `json:"referenceLocator"`
	}
	type checksum struct {
		Algorithm string `json:"algorithm"`
		Value     string `json:"checksumValue"`
	}
	type pkg struct {
		ID        string     `json:"SPDXID"`
		Name      string     `json:"name"`
		Version   string     `json:"versionInfo,omitempty"`
		Download  string     `json:"downloadLocation"`
		Analyzed  bool       `json:"filesAnalyzed"`
		Checksums []checksum `json:"checksums,omitempty"`
		Purpose   string     `json:"primaryPackagePurpose,omitempty"`
		Refs      []ref      `json:"externalRefs,omitempty"`
		Comment   string     `json:"comment,omitempty"`
	}
	type rel struct {
		From string `json:"spdxElementId"`
		Type string `json:"relationshipType"`
		To   string `json:"relatedSpdxElement"`
	}
	purl := func(path, v string) []ref {
		l := "pkg:golang/" + path
		if v != "" && v != "(devel)" {
			l += "@" + v
		}
		return []ref{{Category: "PACKAGE-MANAGER", Type: "purl", Locator: l}}
	}
	var settings []string
	for _, s := range bi.Settings {
		settings = append(settings, s.Key+"="+s.Value)
	}
	mainID := "SPDXRef-Package-ward-serve"
	pkgs := []pkg{{
		ID: mainID, Name: bi.Path, Version: bi.Main.Version, Download: "NOASSERTION",
		Checksums: []checksum{{Algorithm: "SHA256", Value: sum.Hex}}, Purpose: "APPLICATION",
		Refs: purl(bi.Main.Path, bi.Main.Version), Comment: "built for " + platform + " with " + fmt.Sprint(settings),
	}, {
		ID: "SPDXRef-Package-go-stdlib", Name: "stdlib", Version: bi.GoVersion, Download: "https://go.dev/dl/",
		Purpose: "LIBRARY", Refs: purl("stdlib", bi.GoVersion),
	}}
	rels := []rel{{From: "SPDXRef-DOCUMENT", Type: "DESCRIBES", To: mainID}, {From: mainID, Type: "CONTAINS", To: "SPDXRef-Package-go-stdlib"}}
	for i, d := range bi.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		id := fmt.Sprintf("SPDXRef-Package-%d-%s", i, spdxIDUnsafe.ReplaceAllString(d.Path, "-"))
		pkgs = append(pkgs, pkg{ID: id, Name: d.Path, Version: d.Version, Download: "NOASSERTION", Purpose: "LIBRARY", Refs: purl(d.Path, d.Version)})
		rels = append(rels, rel{From: mainID, Type: "CONTAINS", To: id})
	}
	doc := map[string]any{
		"spdxVersion":       "SPDX-2.3",
		"dataLicense":       "CC0-1.0",
		"SPDXID":            "SPDXRef-DOCUMENT",
		"name":              "ward-serve " + platform,
		"documentNamespace": "https://github.com/wardml/ward/spdx/ward-serve-" + sum.Hex,
		"creationInfo": map[string]any{
			"created":  created.UTC().Format(time.RFC3339),
			"creators": []string{"Tool: ward-" + version.Get().Version},
		},
		"packages":      pkgs,
		"relationships": rels,
	}
	return json.MarshalIndent(doc, "", "  ")
}

var spdxIDUnsafe = regexp.MustCompile(`[^A-Za-z0-9.-]`)
