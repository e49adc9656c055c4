package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/tools/image"
	"github.com/wardml/ward/tools/registry"
)

// packageServerCmd is one command line of ward package-server: its flags.
type packageServerCmd struct {
	servers                    stringList
	serverPkg, platforms, repo string
	sourceURL, revision        string
}

func init() {
	register(&Command{
		Name:    "package-server",
		Summary: "Build, push and sign the model server's image, once per ward version, for ward package --base",
		Usage:   "package-server [--repository ward/serve] [--server PLATFORM=FILE ...] [--output json]",
		Help: `Builds the model server's multi-arch image without Docker: per platform
(linux/amd64 and linux/arm64), the static binary at /ward/serve in one
layer, with its entrypoint, user (65532) and port (8080), built from
--server-package (Go and ward's source needed) unless --server gives
prebuilt ones. Pushes it to WARD_REGISTRY/<--repository>, tagged with
ward's version, signs the index and each platform in cosign's format with
WARD_SIGNING_KEY, and attaches an SPDX SBOM to each platform. Prints
REF@sha256:DIGEST: give it to ward package --base, which then appends each
hospital's model with no Go toolchain, and whose images share this
server layer (a registry stores it once). The same source and
SOURCE_DATE_EPOCH give the same digest.`,
		Example: `ward package-server                      # in the release pipeline of a ward version
ward package --all --models out/models --base registry.example/ml/ward/serve@sha256:...`,
		Output: true,
		New:    func() Runner { return &packageServerCmd{} },
	})
}

func (cmd *packageServerCmd) Flags(fs *flag.FlagSet) {
	fs.StringVar(&cmd.repo, "repository", "ward/serve", "repository under WARD_REGISTRY")
	fs.Var(&cmd.servers, "server", "prebuilt serving binary, PLATFORM=FILE (repeatable)")
	fs.StringVar(&cmd.serverPkg, "server-package", image.DefaultServerPackage, "Go main package of the server to build")
	fs.StringVar(&cmd.platforms, "platform", strings.Join(image.Platforms, ","), "platforms to build the server for")
	fs.StringVar(&cmd.sourceURL, "source", "", "source URL to record (default from GITHUB_SERVER_URL/GITHUB_REPOSITORY)")
	fs.StringVar(&cmd.revision, "revision", "", "source revision to record (default GITHUB_SHA, else git rev-parse HEAD)")
}

func (cmd *packageServerCmd) Run(ctx context.Context, app *App, _ []string) error {
	client, err := registry.FromConfig(app.Config)
	if err != nil {
		return exit.With(exit.Config, err)
	}
	r, err := client.Repository(app.Config.Registry(), cmd.repo)
	if err != nil {
		return exit.With(exit.Config, err)
	}
	key, err := signingKey(app)
	if err != nil {
		return exit.With(exit.Config, err)
	}
	srv, err := serverBinaries(ctx, app, cmd.servers, cmd.serverPkg, cmd.platforms)
	if err != nil {
		return exit.With(exit.Config, err)
	}
	opts := []image.BuildOption{image.Created(sourceTime(ctx, app.Log))}
	if s := sourceOf(cmd.sourceURL); s != "" {
		opts = append(opts, image.Source(s))
	}
	if rev := revisionOf(ctx, cmd.revision); rev != "" {
		opts = append(opts, image.Revision(rev))
	}
	base, err := image.ServerImage(srv, opts...)
	if err != nil {
		return exit.With(exit.Config, err)
	}
	res, err := image.NewPublisher(image.WithRegistry(client), image.WithSigner(key)).PublishServer(ctx, r, base)
	if err != nil {
		return err
	}
	app.Log.Info("server image pushed", "image", res.Ref.String(), "version", base.Version, "event.outcome", "success")
	line := res.Line()
	line.Version = base.Version
	return app.Print(line, func(w io.Writer) { fmt.Fprintln(w, res.Ref.String()) })
}
