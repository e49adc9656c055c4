package image

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	orasremote "oras.land/oras-go/v2/registry/remote"

	"github.com/wardml/ward/tools/registry"
	"github.com/wardml/ward/tools/signing"
)

// Publisher pushes built images to a registry, signs them and attaches
// their papers. One publisher serves a whole run (ward package --all): it
// remembers where the server layers went, so that the next hospital's
// repository mounts them instead of receiving them again.
type Publisher struct {
	remote   []remote.Option
	key      *ecdsa.PrivateKey
	progress io.Writer
	client   *registry.Client
	format   SignatureFormat

	mu     sync.Mutex
	mounts map[v1.Hash]name.Repository
	oras   map[name.Repository]*orasremote.Repository

	// What Package builds on (package.go).
	base   *Base
	server *Server
	build  []BuildOption
}

// PublishOption configures a Publisher.
type PublishOption func(*Publisher)

// WithRemote sets how to reach the registry (registry.Client.Remote).
func WithRemote(opts ...remote.Option) PublishOption {
	return func(p *Publisher) { p.remote = append(p.remote, opts...) }
}

// WithSigner signs every image (its index and each platform's manifest)
// with key, in the formats WithSignatureFormat says (both by default).
// Without it images are pushed unsigned, and deploy refuses them.
func WithSigner(key *ecdsa.PrivateKey) PublishOption { return func(p *Publisher) { p.key = key } }

// WithProgress draws a progress bar of each push on w (a terminal).
func WithProgress(w io.Writer) PublishOption { return func(p *Publisher) { p.progress = w } }

// NewPublisher returns a publisher with the options applied.
func NewPublisher(opts ...PublishOption) *Publisher {
	p := &Publisher{mounts: map[v1.Hash]name.Repository{}, oras: map[name.Repository]*orasremote.Repository{}, format: SignBoth}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Published is what a publish did.
type Published struct {
	// Hospital and Version are the model's (empty for the server's image).
	Hospital, Version string
	// Ref is the image by digest: what deploys record.
	Ref name.Digest
	Tag name.Tag
	// Platforms maps each platform to its manifest digest.
	Platforms map[string]v1.Hash
	Signed    bool
	// Attached are the referrers pushed beside the image.
	Attached []Attachment
}

// Attachment is one artifact attached to an image or one of its platforms.
type Attachment struct {
	ArtifactType string
	Subject      v1.Hash
	Digest       v1.Hash
}

// Report is the training report attached to an image: file name -> bytes
// (report.html, metrics.json, plots as PNG).
type Report map[string][]byte

// Publish pushes img to repo, tagged with the model version, signs it and
// attaches the SBOMs, the ModelPack manifest and the report (when given).
// Blobs the registry has are not sent again; run it again with the same
// inputs and it uploads nothing.
func (p *Publisher) Publish(ctx context.Context, repo name.Repository, img *Image, report Report) (*Published, error) {
	opts := append(slices.Clone(p.remote), remote.WithContext(ctx))
	what := fmt.Sprintf("push %s to %s", img.Model.Hospital, repo)
	if err := p.mountServer(repo, img, opts); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	tag, err := name.NewTag(repo.String()+":"+TagFor(img.Model.Version), name.StrictValidation)
	if err != nil {
		return nil, fmt.Errorf("%s: tag: %w", what, err)
	}
	push := opts
	var bar *progressBar
	if p.progress != nil {
		bar = newProgressBar(p.progress, img.Model.Hospital)
		push = append(push, remote.WithProgress(bar.updates))
	}
	err = remote.WriteIndex(tag, img.Index, push...)
	if bar != nil {
		bar.wait()
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	p.remember(repo, img)

	d, err := img.Index.Digest()
	if err != nil {
		return nil, err
	}
	out := &Published{Hospital: img.Model.Hospital, Version: img.Model.Version, Ref: repo.Digest(d.String()), Tag: tag, Platforms: map[string]v1.Hash{}}
	for plat, pi := range img.Platforms {
		pd, err := pi.Digest()
		if err != nil {
			return nil, err
		}
		out.Platforms[plat] = pd
	}
	arts, err := img.attachments(report)
	if err != nil {
		return nil, fmt.Errorf("attach to %s: %w", out.Ref, err)
	}
	if p.key != nil {
		bundles, err := p.sign(ctx, out, img)
		if err != nil {
			return nil, err
		}
		arts = append(arts, bundles...)
		out.Signed = true
	}
	oras, err := p.orasRepository(repo)
	if err != nil {
		return nil, fmt.Errorf("attach to %s: %w", out.Ref, err)
	}
	for _, a := range arts {
		at, err := attach(ctx, oras, a)
		if err != nil {
			return nil, fmt.Errorf("attach %s to %s: %w", a.artifactType, out.Ref, err)
		}
		out.Attached = append(out.Attached, at)
	}
	return out, nil
}

// signServer signs the server's image, the index and each platform, in
// the legacy format, when the publisher has a key.
func (p *Publisher) signServer(ctx context.Context, out *Published) error {
	if p.key == nil {
		return nil
	}
	refs := []name.Digest{out.Ref}
	for _, pd := range out.Platforms {
		refs = append(refs, out.Ref.Context().Digest(pd.String()))
	}
	for _, r := range refs {
		if err := signing.Sign(ctx, r, p.key, p.remote...); err != nil {
			return err
		}
	}
	out.Signed = true
	return nil
}

// mountServer asks the registry to mount the server layers into repo from
// a repository that already has them, where the registry allows it (a
// registry that does not is sent them, as any push would).
func (p *Publisher) mountServer(repo name.Repository, img *Image, opts []remote.Option) error {
	for _, l := range img.ServerLayers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		p.mu.Lock()
		from, ok := p.mounts[d]
		p.mu.Unlock()
		if !ok || from == repo {
			continue
		}
		if err := remote.WriteLayer(repo, &remote.MountableLayer{Layer: l, Reference: from.Digest(d.String())}, opts...); err != nil {
			return fmt.Errorf("server layer %s: %w", d, err)
		}
	}
	return nil
}

func (p *Publisher) remember(repo name.Repository, img *Image) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range img.ServerLayers {
		if d, err := l.Digest(); err == nil {
			if _, ok := p.mounts[d]; !ok {
				p.mounts[d] = repo
			}
		}
	}
}

var tagInvalid = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// TagFor turns a model version into a valid tag (deploys never use it:
// they pin digests; it is for people browsing the registry).
func TagFor(version string) string {
	t := tagInvalid.ReplaceAllString(version, "-")
	if t == "" || t[0] == '.' || t[0] == '-' {
		t = "v" + t
	}
	if len(t) > 128 {
		t = t[:128]
	}
	return t
}
