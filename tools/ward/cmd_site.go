package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/tools/heal"
	"github.com/wardml/ward/tools/manifest"
	"github.com/wardml/ward/tools/site"
)

// siteCmd is one command line of ward site: its flags.
type siteCmd struct {
	out               string
	training, results stringList
}

func init() {
	register(&Command{
		Name:    "site",
		Summary: "Write the fleet view: a static site of what each hospital runs, its history, reports and live error",
		Usage:   "site --out DIR [--models DIR ...] [--feedback DIR ...] [--output json]",
		Help: `Writes a static site into --out: plain HTML and the PNG plots of the reports,
no script, nothing fetched from elsewhere, so that it opens from file:// and
from any static host (GitHub Pages, the CI's artifacts).

index.html has a row per hospital (WARD_HOSPITALS): the live version and
digest, when and by which commit it was deployed, its validation MAE, its
live MAE and degraded/drifted flags by the last --feedback folder, and its
last rollback with the reason (the evidence of ward feedback --apply, or a
person's revert). hospitals/<id>.html has its history in the manifest repo
(WARD_MANIFEST_REPO: every deploy and rollback), the training reports of its
versions and its feedback plots; runs/<name>.html a page per --models folder
(ward train --out, model.json at any depth) and per --feedback folder
(ward feedback --out), oldest first.

Exit codes: 0 written; 1 a folder could not be read or the site written;
2 bad flags, contracts or manifest repo.`,
		Example: `ward site --out out/site --models out/models --feedback out/feedback
xdg-open out/site/index.html`,
		Output: true,
		New:    func() Runner { return &siteCmd{} },
	})
}

func (cmd *siteCmd) Flags(fs *flag.FlagSet) {
	fs.StringVar(&cmd.out, "out", "", "write the site to `DIR`")
	fs.Var(&cmd.training, "models", "a folder of ward train --out (`DIR`, repeatable): a run page, the reports")
	fs.Var(&cmd.results, "feedback", "a folder of ward feedback --out (`DIR`, repeatable, oldest first): a run page, live error")
}

func (cmd *siteCmd) Run(ctx context.Context, app *App, _ []string) error {
	if cmd.out == "" {
		return exit.With(exit.Config, errors.New("--out: missing (the folder to write the site to)"))
	}
	hs, err := contract.Select(app.Config.Hospitals(), nil, true)
	if err != nil {
		return exit.With(exit.Config, err)
	}
	in := site.Input{Hospitals: hs, Training: cmd.training, Feedback: cmd.results, Timelines: map[string]*manifest.Timeline{}}
	if app.Config.ManifestRepo() != "" {
		repo, err := openManifest(app, &manifestFlags{branch: "main"})
		if err != nil {
			return err
		}
		ids := make([]string, len(hs))
		for i, h := range hs {
			ids[i] = h.ID
		}
		if in.Timelines, err = heal.Histories(ctx, repo, ids); err != nil {
			return manifestError(err)
		}
	} else {
		app.Log.Warn("no manifest repo (WARD_MANIFEST_REPO): the site shows no releases or history")
	}
	s, err := site.Write(cmd.out, in)
	if err != nil {
		return exit.With(exit.Failure, err)
	}
	app.Log.Info("site written", "event.action", "site", "event.outcome", "success", "ward.pages", len(s.Pages), "file.path", s.Index)
	return app.Print(s, func(w io.Writer) { fmt.Fprintf(w, "%d pages; open %s\n", len(s.Pages), s.Index) })
}
