package image

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/wardml/ward/internal/version"
)

// ServerTitle is the title annotation of the server's image: what
// PullBase asks of a base.
const ServerTitle = "ward-serve"

// Base is the server's image: per platform, the static binary in one
// layer with the server's config (entrypoint, environment, user, port).
// ward package-server pushes it once per ward version; ward package
// --base appends each hospital's model to it (BuildOn), with no Go
// toolchain; Build makes one in memory from binaries.
type Base struct {
	Index v1.ImageIndex
	// Ref is where the base was pulled from (nil for one built here).
	Ref *name.Digest
	// Version is the ward version of the server.
	Version   string
	platforms map[string]v1.Image
	layers    map[string]v1.Layer
	plats     map[string]v1.Platform
	// server holds the binaries, for the SBOMs of the images built on it.
	server  *Server
	created time.Time
}

func (b *Base) platformNames() []string { return slices.Sorted(maps.Keys(b.platforms)) }

func (b *Base) platform(p string) v1.Platform { return b.plats[p] }

// ServerImage makes the server's image from its binaries: pure, the same
// binaries and options give the same digests. The time is the build's
// (Created), the version this ward's.
func ServerImage(srv *Server, opts ...BuildOption) (*Base, error) {
	cfg := buildConfig{created: time.Unix(0, 0).UTC()}
	for _, o := range opts {
		o(&cfg)
	}
	if srv == nil || len(srv.Binaries) == 0 {
		return nil, fmt.Errorf("server image: no serving binary")
	}
	b := &Base{Version: version.Get().Version, platforms: map[string]v1.Image{}, layers: map[string]v1.Layer{},
		plats: map[string]v1.Platform{}, server: srv, created: cfg.created}
	anns := map[string]string{
		AnnotationCreated:     cfg.created.Format(time.RFC3339),
		AnnotationTitle:       ServerTitle,
		AnnotationVersion:     b.Version,
		AnnotationDescription: fmt.Sprintf("ward's model server on port %d; ward package --base appends a hospital's model under /models/", Port),
	}
	if cfg.source != "" {
		anns[AnnotationSource] = cfg.source
	}
	if cfg.revision != "" {
		anns[AnnotationRevision] = cfg.revision
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range slices.Sorted(maps.Keys(srv.Binaries)) {
		plat, err := v1.ParsePlatform(p)
		if err != nil || plat.OS == "" || plat.Architecture == "" {
			return nil, fmt.Errorf("server image: platform %q: want os/arch, e.g. linux/amd64", p)
		}
		layer, err := srv.layer(p, cfg.created)
		if err != nil {
			return nil, err
		}
		img, err := serverPlatform(*plat, layer, anns, cfg.created)
		if err != nil {
			return nil, fmt.Errorf("server image %s: %w", p, err)
		}
		b.platforms[p], b.layers[p], b.plats[p] = img, layer, *plat
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: plat}})
	}
	b.Index = mutate.Annotations(idx, anns).(v1.ImageIndex)
	return b, nil
}

// serverPlatform is one platform's image of the server: the binary's layer
// on an empty base, and the config that runs it.
func serverPlatform(plat v1.Platform, bin v1.Layer, labels map[string]string, created time.Time) (v1.Image, error) {
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base,
		mutate.Addendum{Layer: bin, History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "ward package: serving binary " + ServerPath}},
	)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
	cf.Created = v1.Time{Time: created}
	cf.Config = v1.Config{
		Entrypoint:   []string{ServerPath},
		Env:          []string{"WARD_MODEL=" + ModelPath, "PORT=" + strconv.Itoa(Port)},
		User:         User,
		WorkingDir:   "/",
		ExposedPorts: map[string]struct{}{strconv.Itoa(Port) + "/tcp": {}},
		Labels:       labels,
	}
	return mutate.ConfigFile(img, cf)
}

// PullBase verifies the server's image ref with pub (the index and each
// platform signed, as Verify checks), then reads it: each platform must be
// ward's server, one layer holding /ward/serve (within its bound) with
// the server's entrypoint. The binaries are read for the SBOMs of the
// images built on it; the layers stay the registry's blobs, so pushing an
// image built on it mounts them instead of sending them.
func PullBase(ctx context.Context, ref name.Digest, pub *ecdsa.PublicKey, opts ...remote.Option) (*Base, error) {
	v, err := Verify(ctx, ref, pub, opts...)
	if err != nil {
		return nil, fmt.Errorf("base %w", err)
	}
	if v.Annotations[AnnotationTitle] != ServerTitle {
		return nil, fmt.Errorf("base %s: titled %q, not %q: not an image of ward package-server", ref, v.Annotations[AnnotationTitle], ServerTitle)
	}
	idx, err := remote.Index(ref, append(slices.Clone(opts), remote.WithContext(ctx))...)
	if err != nil {
		return nil, fmt.Errorf("base %s: %w", ref, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("base %s: %w", ref, err)
	}
	b := &Base{Index: idx, Ref: &ref, Version: v.Annotations[AnnotationVersion], platforms: map[string]v1.Image{},
		layers: map[string]v1.Layer{}, plats: map[string]v1.Platform{}, server: NewServer(map[string][]byte{})}
	if b.created, err = time.Parse(time.RFC3339, v.Annotations[AnnotationCreated]); err != nil {
		return nil, fmt.Errorf("base %s: annotation %s %q: %w", ref, AnnotationCreated, v.Annotations[AnnotationCreated], err)
	}
	tmp, err := os.MkdirTemp("", "ward-base-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	for _, m := range im.Manifests {
		if m.Platform == nil {
			return nil, fmt.Errorf("base %s: manifest %s names no platform", ref, m.Digest)
		}
		p := m.Platform.OS + "/" + m.Platform.Architecture
		img, err := idx.Image(m.Digest)
		if err != nil {
			return nil, fmt.Errorf("base %s (%s): %w", ref, p, err)
		}
		layers, err := img.Layers()
		if err != nil {
			return nil, fmt.Errorf("base %s (%s): %w", ref, p, err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("base %s (%s): config: %w", ref, p, err)
		}
		if len(layers) != 1 || !slices.Equal(cf.Config.Entrypoint, []string{ServerPath}) {
			return nil, fmt.Errorf("base %s (%s): %d layers, entrypoint %v: want one layer and %s, as ward package-server makes it", ref, p, len(layers), cf.Config.Entrypoint, ServerPath)
		}
		dir := filepath.Join(tmp, strings.ReplaceAll(p, "/", "-"))
		if _, err := Unpack(img, dir, serverOnly()); err != nil {
			return nil, fmt.Errorf("base %s (%s): %w", ref, p, err)
		}
		if b.server.Binaries[p], err = os.ReadFile(filepath.Join(dir, filepath.FromSlash(serverFile))); err != nil {
			return nil, err
		}
		b.platforms[p], b.layers[p], b.plats[p] = img, layers[0], *m.Platform
	}
	if len(b.platforms) == 0 {
		return nil, fmt.Errorf("base %s: an index without platforms", ref)
	}
	return b, nil
}

// PublishServer pushes the server's image to repo, tagged with its ward
// version, signs the index and each platform, and attaches an SPDX SBOM to
// each platform: what ward package --base starts from.
func (p *Publisher) PublishServer(ctx context.Context, repo name.Repository, b *Base) (*Published, error) {
	opts := append(slices.Clone(p.remote), remote.WithContext(ctx))
	tag, err := name.NewTag(repo.String()+":"+TagFor(b.Version), name.StrictValidation)
	if err != nil {
		return nil, fmt.Errorf("push the server to %s: tag: %w", repo, err)
	}
	if err := remote.WriteIndex(tag, b.Index, opts...); err != nil {
		return nil, fmt.Errorf("push the server to %s: %w", repo, err)
	}
	d, err := b.Index.Digest()
	if err != nil {
		return nil, err
	}
	out := &Published{Ref: repo.Digest(d.String()), Tag: tag, Platforms: map[string]v1.Hash{}}
	for _, plat := range b.platformNames() {
		pd, err := b.platforms[plat].Digest()
		if err != nil {
			return nil, err
		}
		out.Platforms[plat] = pd
	}
	if err := p.signServer(ctx, out); err != nil {
		return nil, err
	}
	oras, err := p.orasRepository(repo)
	if err != nil {
		return nil, fmt.Errorf("attach to %s: %w", out.Ref, err)
	}
	for _, plat := range b.platformNames() {
		a, err := sbomOf(b.platforms[plat], b.server.Binaries[plat], plat, b.created)
		if err != nil {
			return nil, err
		}
		at, err := attach(ctx, oras, a)
		if err != nil {
			return nil, fmt.Errorf("attach %s to %s: %w", a.artifactType, out.Ref, err)
		}
		out.Attached = append(out.Attached, at)
	}
	return out, nil
}
