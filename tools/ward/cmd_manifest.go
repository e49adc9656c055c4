package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/tools/manifest"
)

// manifestCmd is one command line of ward manifest: its flags.
type manifestCmd struct {
	f manifestFlags
}

func init() {
	register(&Command{
		Name:    "manifest",
		Summary: "Create the manifest repo's layout: manifest init",
		Usage:   "manifest init [--trust FILE] [--branch NAME] [--dry-run] [--output json]",
		Help: `The manifest repo (WARD_MANIFEST_REPO: a Git URL or a path) records which
signed image each hospital runs. init commits base/ (the serving Deployment
and Service, with probes, resources and a restrictive securityContext) and a
README; each hospital's folder, hospitals/<id>/, comes with its first
ward deploy. An initialized repo is left as it is.

SSH remotes authenticate with WARD_MANIFEST_SSH_KEY, else ssh-agent, and
check the host key against WARD_KNOWN_HOSTS (else SSH_KNOWN_HOSTS,
~/.ssh/known_hosts); HTTPS remotes take WARD_MANIFEST_TOKEN. Commits are
signed with WARD_MANIFEST_SIGN_KEY (OpenPGP or OpenSSH) when it is set.

--trust FILE writes the first trust file, base/trust.txt: the keys allowed
to write the repo (armored OpenPGP public keys, gpg --armor --export; SSH
allowed-signers lines, "principal ssh-ed25519 AAAA..."). From then on every
reader (ward agent, deploy, rollback, history, train) follows only a
history whose deciding commits are signed by a listed key. The init commit
must be signed by one of them (WARD_MANIFEST_SIGN_KEY).`,
		Example: "WARD_MANIFEST_REPO=ssh://git@git.example/group/manifest.git WARD_MANIFEST_SIGN_KEY=keys/ci_ed25519 \\\n  ward manifest init --trust keys/trust.txt",
		Output:  true,
		New:     func() Runner { return &manifestCmd{} },
	})
}

func (cmd *manifestCmd) Flags(fs *flag.FlagSet) {
	cmd.f.bind(fs, false)
	fs.StringVar(&cmd.f.trust, "trust", "", "write `FILE` as the repo's first trust file (base/trust.txt)")
}

func (cmd *manifestCmd) Run(ctx context.Context, app *App, args []string) error {
	if len(args) != 1 || args[0] != "init" {
		return exit.With(exit.Config, errors.New("want: ward manifest init"))
	}
	r, err := openManifest(app, &cmd.f)
	if err != nil {
		return err
	}
	var trust []byte
	if cmd.f.trust != "" {
		if trust, err = os.ReadFile(cmd.f.trust); err != nil {
			return exit.With(exit.Config, fmt.Errorf("--trust: %w", err))
		}
	}
	res, err := r.InitTrust(ctx, cmd.f.dryRun, trust)
	if err != nil {
		return manifestError(err)
	}
	return printResult(app, r, res)
}

// manifestFlags are the flags of the commands that change the manifest.
type manifestFlags struct {
	hospital string
	author   string
	branch   string
	dryRun   bool
	force    bool
	to       string
	image    string
	expect   string
	trust    string
	// allowDowngrade: ward deploy --allow-downgrade.
	allowDowngrade bool
}

func (f *manifestFlags) bind(fs *flag.FlagSet, hospital bool) {
	if hospital {
		fs.StringVar(&f.hospital, "hospital", "", "the hospital's id (its folder under hospitals/)")
	}
	fs.StringVar(&f.author, "author", "", `author and committer, "Name <email>" (default GIT_AUTHOR_NAME and GIT_AUTHOR_EMAIL, else "ward <ward@localhost>")`)
	fs.StringVar(&f.branch, "branch", "main", "branch of the manifest repo")
	fs.BoolVar(&f.dryRun, "dry-run", false, "print the diff, commit nothing")
}

// openManifest opens the manifest repo the configuration names.
func openManifest(app *App, f *manifestFlags, opts ...manifest.Option) (*manifest.Repo, error) {
	cfg := app.Config
	opts = append([]manifest.Option{
		manifest.WithBranch(f.branch),
		manifest.WithAuthor(f.author),
		manifest.WithSSHKey(cfg.Get("manifest_ssh_key")),
		manifest.WithKnownHosts(cfg.Get("known_hosts")),
		manifest.WithToken(cfg.Get("manifest_token")),
		manifest.WithSignKey(cfg.Get("manifest_sign_key")),
		manifest.WithTrust(cfg.Get("manifest_trust")),
		manifest.WithLogger(app.Log),
	}, opts...)
	r, err := manifest.New(cfg.ManifestRepo(), opts...)
	return r, manifestError(err)
}

// manifestError maps the manifest's errors to exit codes: 2 for usage, an
// unreachable or uninitialized repo; 1 for a refused image, a rolled-back
// digest, a conflict or invalid content.
func manifestError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, manifest.ErrUsage), errors.Is(err, manifest.ErrUnreachable), errors.Is(err, manifest.ErrNotInitialized):
		return exit.With(exit.Config, err)
	}
	return exit.With(exit.Failure, err)
}

// printResult prints what a command did: one line, the diff of a dry run.
func printResult(app *App, r *manifest.Repo, res *manifest.Result) error {
	return app.Print(res, func(w io.Writer) {
		what := res.Action
		if res.Hospital != "" {
			what += " " + res.Hospital
		}
		switch res.Status {
		case manifest.StatusUnchanged:
			fmt.Fprintf(w, "%s: nothing to do: %s\n", what, res.Reason)
		case manifest.StatusDryRun:
			fmt.Fprint(w, res.Diff)
			fmt.Fprintf(w, "%s: dry run: %s; nothing committed\n", what, change(res))
		default:
			fmt.Fprintf(w, "%s: %s; pushed %s to %s\n", what, change(res), shortList(res.Commits), r.URL())
		}
	})
}

// change says which release a result replaced with which.
func change(res *manifest.Result) string {
	rel := func(r *manifest.Release) string {
		if r == nil {
			return "nothing"
		}
		return r.Version + " (" + r.Image + ")"
	}
	if res.Release == nil && res.Previous == nil {
		return fmt.Sprintf("%d commit(s)", len(res.Commits))
	}
	return rel(res.Previous) + " -> " + rel(res.Release)
}

func shortList(shas []string) string {
	out := make([]string, len(shas))
	for i, s := range shas {
		out[i] = shortSHA(s)
	}
	return strings.Join(out, ", ")
}

func shortSHA(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
