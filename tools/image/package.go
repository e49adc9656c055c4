package image

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
)

// WithBase builds every image Package makes on the server's image b
// (PullBase: ward package --base), so that packaging needs no Go toolchain.
func WithBase(b *Base) PublishOption { return func(p *Publisher) { p.base = b } }

// WithServer builds every image Package makes with the server binaries
// srv (BuildServer from source, or LoadServer), when there is no base.
func WithServer(srv *Server) PublishOption { return func(p *Publisher) { p.server = srv } }

// WithBuild sets what the images Package builds record (Created, Source,
// Revision).
func WithBuild(opts ...BuildOption) PublishOption {
	return func(p *Publisher) { p.build = append(p.build, opts...) }
}

// PackageOption changes what Package accepts.
type PackageOption func(*packageConfig)

type packageConfig struct{ force bool }

// Force packages a model whose training gate failed (ward package --force).
func Force() PackageOption { return func(c *packageConfig) { c.force = true } }

// Package is the package stage for one hospital's trained model: it
// refuses a model whose recorded gate failed (ErrGateFailed) unless Force,
// builds its image on the publisher's base (WithBase) or with its server
// (WithServer), and publishes it to repo: pushed, signed, its papers
// attached. ward package, the demo and the benchmarks all call it; the
// result's Line is what images.json holds.
func Package(ctx context.Context, t *Trained, repo name.Repository, p *Publisher, opts ...PackageOption) (*Published, error) {
	var cfg packageConfig
	for _, o := range opts {
		o(&cfg)
	}
	if err := t.GateError(); err != nil && !cfg.force {
		return nil, err
	}
	var img *Image
	var err error
	switch {
	case p.base != nil:
		img, err = BuildOn(p.base, t.Model, p.build...)
	case p.server != nil:
		img, err = Build(t.Model, p.server, p.build...)
	default:
		return nil, fmt.Errorf("package %s: no server: give the publisher a base image (WithBase) or server binaries (WithServer)", t.Model.Hospital)
	}
	if err != nil {
		return nil, err
	}
	return p.Publish(ctx, repo, img, t.Report)
}
