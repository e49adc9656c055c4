package main

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/internal/logging"
	"github.com/wardml/ward/internal/version"
	"github.com/wardml/ward/tools/image"
	"github.com/wardml/ward/tools/registry"
	"github.com/wardml/ward/tools/signing"
)

// packageCmd is one command line of ward package: its flags.
type packageCmd struct {
	hospital             string
	servers              stringList
	all, force           bool
	model, models        string
	card, report         string
	serverPkg, platforms string
	sourceURL, revision  string
	sigFormat            string
	base                 string
}

func init() {
	register(&Command{
		Name:    "package",
		Summary: "Build, push and sign each hospital's model image",
		Usage:   "package (--hospital ID --model FILE | --all --models DIR) [--base IMAGE@DIGEST | --server PLATFORM=FILE ...] [--output json]",
		Help: `Builds one OCI image per hospital without Docker: the serving binary
and the model under /models/. With --base (the server's image that ward
package-server pushed, by digest), the model's layer is appended to it:
no Go toolchain is needed, and the base's signature is checked first
(WARD_VERIFY_KEY, else the public half of WARD_SIGNING_KEY). Without it,
the server is built from --server-package (linux/amd64 and linux/arm64, Go
and ward's source needed) unless --server gives prebuilt ones. Pushes
it to WARD_REGISTRY/<the contract's image.repository>, tagged with the model
version, signs the index and each platform with WARD_SIGNING_KEY in
cosign's formats (--signature-format: legacy, the sha256-<hex>.sig tag that
cosign v2 and Flux read; bundle, the Sigstore bundle referrer that cosign v3
writes; both, the default, for every verifier), and attaches, as OCI 1.1
referrers through oras-go, an SPDX SBOM of the server, a ModelPack manifest
of the model and the training report. Prints one line per
hospital, REF@sha256:DIGEST: deploys use the digest.

A model folder holds model.json, optionally MODEL_CARD.md and a report/
folder (HTML, PNG, JSON); --all --models DIR reads DIR/<id>/. Digests are
reproducible: times come from SOURCE_DATE_EPOCH, else the last commit.
Unchanged inputs upload nothing.

A model whose training gate failed (report/metrics.json, written by ward
train) is refused, and skipped by --all, unless --force: a scheduled run
ships only the models that passed.`,
		Example: `ward package --hospital st-olaf --model .ward/models/st-olaf/model.json
ward package --all --models .ward/models --output json`,
		Output: true,
		New:    func() Runner { return &packageCmd{} },
	})
}

func (cmd *packageCmd) Flags(fs *flag.FlagSet) {
	fs.StringVar(&cmd.hospital, "hospital", "", "hospital id, with --model")
	fs.BoolVar(&cmd.all, "all", false, "every hospital that has a model in --models")
	fs.StringVar(&cmd.model, "model", "", "model artifact of the one --hospital")
	fs.StringVar(&cmd.models, "models", "", "folder of <id>/model.json, for --all")
	fs.StringVar(&cmd.card, "card", "", "model card (Markdown); default MODEL_CARD.md beside the model, else one made from it")
	fs.StringVar(&cmd.report, "report", "", "training report folder to attach; default report/ beside the model")
	fs.StringVar(&cmd.base, "base", "", "the server's image to build on, REPOSITORY@sha256:DIGEST (from ward package-server)")
	fs.Var(&cmd.servers, "server", "prebuilt serving binary, PLATFORM=FILE (repeatable)")
	fs.StringVar(&cmd.serverPkg, "server-package", image.DefaultServerPackage, "Go main package of the server to build")
	fs.StringVar(&cmd.platforms, "platform", strings.Join(image.Platforms, ","), "platforms to build the server for")
	fs.StringVar(&cmd.sourceURL, "source", "", "source URL to record (default from GITHUB_SERVER_URL/GITHUB_REPOSITORY)")
	fs.StringVar(&cmd.revision, "revision", "", "source revision to record (default GITHUB_SHA, else git rev-parse HEAD)")
	fs.BoolVar(&cmd.force, "force", false, "package a model whose training gate failed (--all skips such models)")
	fs.StringVar(&cmd.sigFormat, "signature-format", string(image.SignBoth), "cosign signature format: legacy, bundle or both")
}

func (cmd *packageCmd) Run(ctx context.Context, app *App, _ []string) error {
	var jobs []packageJob
	switch {
	case cmd.all && cmd.models != "" && cmd.model == "" && cmd.hospital == "":
		hs, err := contract.Select(app.Config.Hospitals(), nil, true)
		if err != nil {
			return exit.With(exit.Config, err)
		}
		for _, h := range hs {
			f := filepath.Join(cmd.models, h.ID, "model.json")
			if _, err := os.Stat(f); err != nil {
				app.Log.Warn("no model to package", "hospital", h.ID, "file.path", f)
				continue
			}
			jobs = append(jobs, packageJob{hospital: h, model: f, force: cmd.force})
		}
		if len(jobs) == 0 {
			return exit.With(exit.Config, fmt.Errorf("--models %s: no <id>/model.json for any hospital of %s", cmd.models, app.Config.Hospitals()))
		}
	case cmd.hospital != "" && cmd.model != "" && !cmd.all && cmd.models == "":
		hs, err := contract.Select(app.Config.Hospitals(), []string{cmd.hospital}, false)
		if err != nil {
			return exit.With(exit.Config, err)
		}
		jobs = []packageJob{{hospital: hs[0], model: cmd.model, card: cmd.card, report: cmd.report, force: cmd.force}}
	default:
		return exit.With(exit.Config, errors.New("give --hospital ID --model FILE, or --all --models DIR"))
	}

	format, err := image.ParseSignatureFormat(cmd.sigFormat)
	if err != nil {
		return exit.With(exit.Config, fmt.Errorf("--signature-format: %w", err))
	}
	client, err := registry.FromConfig(app.Config)
	if err != nil {
		return exit.With(exit.Config, err)
	}
	key, err := signingKey(app)
	if err != nil {
		return exit.With(exit.Config, err)
	}
	for _, j := range jobs {
		if _, err := client.Repository(app.Config.Registry(), j.hospital.Image.Repository); err != nil {
			return exit.With(exit.Config, err)
		}
	}
	opts := []image.BuildOption{image.Created(sourceTime(ctx, app.Log))}
	if s := sourceOf(cmd.sourceURL); s != "" {
		opts = append(opts, image.Source(s))
	}
	if r := revisionOf(ctx, cmd.revision); r != "" {
		opts = append(opts, image.Revision(r))
	}
	pubOpts := []image.PublishOption{image.WithRegistry(client), image.WithSigner(key), image.WithSignatureFormat(format), image.WithBuild(opts...)}
	if cmd.base != "" {
		if len(cmd.servers) > 0 {
			return exit.With(exit.Config, errors.New("give --base or --server, not both"))
		}
		b, err := baseImage(ctx, app, client, key, cmd.base)
		if err != nil {
			return err
		}
		app.Log.Info("building on the server's image", "image", cmd.base, "version", b.Version)
		pubOpts = append(pubOpts, image.WithBase(b))
	} else {
		srv, err := serverBinaries(ctx, app, cmd.servers, cmd.serverPkg, cmd.platforms)
		if err != nil {
			return exit.With(exit.Config, err)
		}
		pubOpts = append(pubOpts, image.WithServer(srv))
	}
	if logging.IsTerminal(app.Stderr) && !app.JSON() {
		pubOpts = append(pubOpts, image.WithProgress(app.Stderr))
	}
	pub := image.NewPublisher(pubOpts...)

	var results []image.Line
	failed := 0
	start := time.Now()
	for _, j := range jobs {
		r, err := j.run(ctx, app, client, pub)
		if errors.Is(err, image.ErrGateFailed) && cmd.all {
			// A scheduled run ships the models that passed; the
			// others wait for a person (or --force).
			app.Log.Warn("package skipped", "hospital", j.hospital.ID, "error", err.Error(), "event.outcome", "unknown")
			results = append(results, image.Line{Hospital: j.hospital.ID, Skipped: err.Error()})
			continue
		}
		if err != nil {
			failed++
			app.Log.Error("package failed", "hospital", j.hospital.ID, "error", err.Error(), "event.outcome", "failure")
			results = append(results, image.Line{Hospital: j.hospital.ID, Error: err.Error()})
			continue
		}
		app.Log.Info("packaged", "hospital", r.Hospital, "version", r.Version, "image", r.Image, "event.outcome", "success")
		results = append(results, r)
	}
	app.Log.Info("package done", "images", len(jobs)-failed, "failed", failed, "event.duration", time.Since(start).Nanoseconds())
	perr := app.Print(results, func(w io.Writer) {
		for _, r := range results {
			if r.Image != "" {
				fmt.Fprintln(w, r.Image)
			}
		}
	})
	if failed > 0 {
		return fmt.Errorf("%d of %d hospitals failed to package (the others were pushed)", failed, len(jobs))
	}
	return perr
}

type packageJob struct {
	hospital            *contract.Hospital
	model, card, report string
	force               bool
}

func (j packageJob) run(ctx context.Context, app *App, client *registry.Client, pub *image.Publisher) (image.Line, error) {
	tr, err := image.ReadTrained(j.model, j.card, j.report)
	if err != nil {
		return image.Line{}, err
	}
	if tr.Model.Hospital != j.hospital.ID {
		return image.Line{}, fmt.Errorf("model %s is for hospital %q, not %q", j.model, tr.Model.Hospital, j.hospital.ID)
	}
	repo, err := client.Repository(app.Config.Registry(), j.hospital.Image.Repository)
	if err != nil {
		return image.Line{}, err
	}
	var opts []image.PackageOption
	if j.force {
		opts = append(opts, image.Force())
	}
	res, err := image.Package(ctx, tr, repo, pub, opts...)
	if errors.Is(err, image.ErrGateFailed) {
		return image.Line{}, fmt.Errorf("%w; package it anyway with --force", err)
	}
	if err != nil {
		return image.Line{}, err
	}
	return res.Line(), nil
}

// baseImage pulls the server's image named by digest, after checking its
// signature: with WARD_VERIFY_KEY, else with the public half of the
// signing key (the group signs its server and its models alike).
func baseImage(ctx context.Context, app *App, client *registry.Client, key *ecdsa.PrivateKey, ref string) (*image.Base, error) {
	d, err := client.ParseDigest(ref)
	if err != nil {
		return nil, exit.With(exit.Config, fmt.Errorf("--base %s: %w", ref, err))
	}
	pub := &key.PublicKey
	if app.Config.Get("verify_key") != "" {
		if pub, err = verifyKey(app, ""); err != nil {
			return nil, err
		}
	}
	b, err := image.PullBase(ctx, d, pub, client.Remote(ctx)...)
	if err != nil {
		return nil, verifyError(fmt.Errorf("--base: %w", err))
	}
	return b, nil
}

// signingKey reads WARD_SIGNING_KEY: ward signs every image it pushes.
func signingKey(app *App) (*ecdsa.PrivateKey, error) {
	file := app.Config.Get("signing_key")
	if file == "" {
		return nil, errors.New("no signing key: set WARD_SIGNING_KEY (make one with ward keys generate --out DIR)")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	key, err := signing.ParsePrivateKey(b, signingPassword(app))
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", file, err)
	}
	return key, nil
}

func serverBinaries(ctx context.Context, app *App, files stringList, pkg, platforms string) (*image.Server, error) {
	if len(files) > 0 {
		m := map[string]string{}
		for _, f := range files {
			p, file, ok := strings.Cut(f, "=")
			if !ok {
				return nil, fmt.Errorf("--server %q: want PLATFORM=FILE, e.g. linux/amd64=dist/ward-serve", f)
			}
			m[p] = file
		}
		return image.LoadServer(m)
	}
	app.Log.Info("building the server", "package", pkg, "platforms", platforms)
	return image.BuildServer(ctx, ".", pkg, strings.Split(platforms, ","))
}

// sourceTime is the time recorded in images: SOURCE_DATE_EPOCH, else the
// time of the last commit, else the Unix epoch; never the clock, so that
// the same inputs give the same digests.
func sourceTime(ctx context.Context, log *slog.Logger) time.Time {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(n, 0).UTC()
		}
		log.Warn("SOURCE_DATE_EPOCH is not a number of seconds; using the commit time", "value", s)
	}
	if out, err := exec.CommandContext(ctx, "git", "log", "-1", "--format=%ct").Output(); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil {
			return time.Unix(n, 0).UTC()
		}
	}
	log.Warn("no SOURCE_DATE_EPOCH and no git commit: images record 1970-01-01")
	return time.Unix(0, 0).UTC()
}

func sourceOf(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if s, r := os.Getenv("GITHUB_SERVER_URL"), os.Getenv("GITHUB_REPOSITORY"); s != "" && r != "" {
		return s + "/" + r
	}
	return ""
}

func revisionOf(ctx context.Context, flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if s := os.Getenv("GITHUB_SHA"); s != "" {
		return s
	}
	if out, err := exec.CommandContext(ctx, "git", "rev-parse", "HEAD").Output(); err == nil {
		return strings.TrimSpace(string(out))
	}
	if c := version.Get().Commit; c != "unknown" {
		return c
	}
	return ""
}
