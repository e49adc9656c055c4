package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/store"
	"github.com/wardml/ward/pipelines/train"
	"github.com/wardml/ward/pipelines/train/report"
	"github.com/wardml/ward/tools/image"
	"github.com/wardml/ward/tools/registry"
)

// trainCmd is one command line of ward train: its flags.
type trainCmd struct {
	ids, baselines stringList
	all            bool
	out            string
	parallel       int
	list           bool
}

func init() {
	register(&Command{
		Name:    "train",
		Summary: "Train each hospital's model from the database: artifact, report with plots, gate",
		Usage:   "train (--hospital ID ... | --all) (--out DIR | --list) [--baseline FILE ...] [--parallel N] [--output json]",
		Help: `Reads each hospital's cases from the database (WARD_DATABASE), cleans them
as its contract says, validates on the last window of time (split.validation),
and fits a ridge model. Beside it the report shows the same model under a
random split, a pooled model over the hospitals with compatible features
(their rows are read too, so one hospital per CI job gets the same baseline),
a rolling-origin backtest (split.folds), and the gate: the new model against
the one in production, on the same window, by the contract's gate metric and
max_regression. The model in production is --baseline FILE (the artifact it
was deployed with), else, when WARD_MANIFEST_REPO is set, the model in the
image that the hospital's folder pins (verified with WARD_VERIFY_KEY).

Writes DIR/<id>/model.json (the artifact: the same data and contract give the
same bytes, and the same version, YYYY.MM-HASH: the month the data ends and
the artifact's content hash), DIR/<id>/report/ (report.md, report.html with
the plots inlined, metrics.json, the PNG plots), which ward package attaches
to the image, and DIR/summary.json. A hospital that fails keeps what an earlier run
wrote. A model whose gate failed is written all the same, marked failed in
metrics.json and summary.json, for a person to look at.

With --all, the hospitals that ward feedback --apply marked for retraining
(their model drifted, and their contract says feedback.on_drift: retrain)
come first, the oldest mark first; a hospital's mark is cleared once a model
of it is trained. --list prints that order and trains nothing.

Exit codes: 0 every model trained and passed its gate; 1 a hospital could not
be trained (bad data: its error says what to do; the others are written);
3 every model trained and a gate failed; 2 bad flags, contracts, baseline
files or database.`,
		Example: `ward train --all --out .ward/models
ward train --hospital st-olaf --out .ward/models --baseline deployed/st-olaf/model.json
ward train --all --out .ward/models --parallel 2 --output json`,
		Output: true,
		New:    func() Runner { return &trainCmd{} },
	})
}

func (cmd *trainCmd) Flags(fs *flag.FlagSet) {
	fs.Var(&cmd.ids, "hospital", "hospital `ID` to train (repeatable)")
	fs.BoolVar(&cmd.all, "all", false, "train every hospital")
	fs.StringVar(&cmd.out, "out", "", "output `DIR`")
	fs.Var(&cmd.baselines, "baseline", "the model in production of a hospital, an artifact `FILE` (repeatable)")
	fs.IntVar(&cmd.parallel, "parallel", runtime.NumCPU(), "hospitals read, fitted and rendered at once")
	fs.BoolVar(&cmd.list, "list", false, "print the hospitals in the order they would be trained, as a JSON array (a CI matrix), and train nothing")
}

func (cmd *trainCmd) Run(ctx context.Context, app *App, _ []string) error {
	if cmd.out == "" && !cmd.list {
		return exit.With(exit.Config, errors.New("--out: missing (the folder to write the models and reports to)"))
	}
	if cmd.all && len(cmd.ids) > 0 {
		return exit.With(exit.Config, errors.New("give --hospital ID or --all, not both"))
	}
	group, err := contract.LoadAll(app.Config.Hospitals())
	if err != nil {
		return exit.With(exit.Config, err)
	}
	selected, err := contract.Select(app.Config.Hospitals(), cmd.ids, cmd.all)
	if err != nil {
		return exit.With(exit.Config, err)
	}
	st, err := store.Open(ctx, app.Config.Database())
	if err != nil {
		return err
	}
	defer st.Close()
	marks, err := st.RetrainMarks(ctx)
	if err != nil {
		return err
	}
	if cmd.all {
		selected = retrainFirst(selected, marks)
	}
	if cmd.list {
		names := make([]string, len(selected))
		for i, h := range selected {
			names[i] = h.ID
		}
		return app.Print(names, func(w io.Writer) {
			b, _ := json.Marshal(names)
			fmt.Fprintf(w, "%s\n", b)
		})
	}
	opts := []train.Option{train.WithParallel(cmd.parallel)}
	for _, f := range cmd.baselines {
		a, err := readArtifact(f)
		if err != nil {
			return exit.With(exit.Config, fmt.Errorf("--baseline %s: %w", f, err))
		}
		opts = append(opts, train.WithBaseline(a))
	}
	if len(cmd.baselines) == 0 && app.Config.ManifestRepo() != "" {
		deployed, err := deployedModels(ctx, app, selected)
		if err != nil {
			return err
		}
		for _, a := range deployed {
			opts = append(opts, train.WithBaseline(a))
		}
	}
	names := make([]string, len(selected))
	for i, h := range selected {
		names[i] = h.ID
	}
	started := time.Now()
	results, err := train.Run(ctx, st, group, names, opts...)
	if err != nil {
		return exit.With(exit.Config, err)
	}
	for _, r := range results {
		if r.Err == nil && slices.ContainsFunc(marks, func(m store.RetrainMark) bool { return m.Hospital == r.Hospital }) {
			if err := st.ClearRetrain(ctx, r.Hospital, started); err != nil {
				return err
			}
			app.Log.Info("retrain mark cleared", "event.action", "train", "ward.hospital", r.Hospital, "ward.version", r.Version)
		}
	}
	sum, werr := report.Write(cmd.out, results, report.WithParallel(cmd.parallel))
	failed, gated := 0, 0
	for i, l := range sum.Hospitals {
		switch {
		case l.Error != "":
			failed++
			app.Log.Error("training failed", "event.action", "train", "event.outcome", "failure", "ward.hospital", l.Hospital, "error.message", l.Error)
		case l.Gate == report.GateFailed:
			gated++
			app.Log.Warn("gate failed", "event.action", "train", "event.outcome", "failure", "ward.hospital", l.Hospital,
				"ward.version", l.Version, "ward.gate", results[i].Gate.Reason)
		default:
			app.Log.Info("model trained", "event.action", "train", "event.outcome", "success", "ward.hospital", l.Hospital,
				"ward.version", l.Version, "ward.model", l.Model, "ward.gate", results[i].Gate.Reason)
		}
	}
	if err := app.Print(sum, func(w io.Writer) { sum.WriteTable(w) }); err != nil {
		return err
	}
	switch {
	case failed > 0:
		return exit.With(exit.Failure, fmt.Errorf("%d of %d hospitals could not be trained (the others were written to %s): %w", failed, len(results), cmd.out, errors.Join(failedErrors(results, werr)...)))
	case gated > 0:
		return exit.With(exit.GateFailed, fmt.Errorf("the gate failed for %d of %d hospitals: their models are in %s, marked failed", gated, len(results), cmd.out))
	}
	return nil
}

// retrainFirst orders the hospitals that feedback marked for retraining
// first, the oldest mark first, then the others as they were.
func retrainFirst(hs []*contract.Hospital, marks []store.RetrainMark) []*contract.Hospital {
	out := make([]*contract.Hospital, 0, len(hs))
	for _, m := range marks {
		if i := slices.IndexFunc(hs, func(h *contract.Hospital) bool { return h.ID == m.Hospital }); i >= 0 {
			out = append(out, hs[i])
		}
	}
	for _, h := range hs {
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

// failedErrors are the errors of the hospitals that could not be trained
// or written.
func failedErrors(results []*train.Result, written error) []error {
	var errs []error
	for _, r := range results {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	return append(errs, written)
}

// readArtifact reads and checks a model artifact.
func readArtifact(file string) (*models.Artifact, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return models.Decode(data)
}

// deployedModels reads the model in production of each hospital
// (image.Production), verified with WARD_VERIFY_KEY when it is set.
func deployedModels(ctx context.Context, app *App, hs []*contract.Hospital) ([]*models.Artifact, error) {
	repo, err := openManifest(app, &manifestFlags{branch: "main"})
	if err != nil {
		return nil, err
	}
	client, err := registry.FromConfig(app.Config)
	if err != nil {
		return nil, exit.With(exit.Config, err)
	}
	opts := []image.ProductionOption{image.ProductionLog(app.Log)}
	if app.Config.Get("verify_key") != "" {
		pub, err := verifyKey(app, "")
		if err != nil {
			return nil, err
		}
		opts = append(opts, image.VerifiedBy(pub))
	}
	ids := make([]string, len(hs))
	for i, h := range hs {
		ids[i] = h.ID
	}
	out, err := image.Production(ctx, repo, client, ids, opts...)
	return out, deployedError(err)
}

// deployedError maps the errors of reading a deployed model to exit codes:
// the manifest's as manifestError does, a signature's as verifyError does,
// and the rest (the registry, the artifact) to 2.
func deployedError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, image.ErrManifest):
		return manifestError(err)
	case errors.Is(err, image.ErrUnverified):
		return verifyError(err)
	}
	return exit.With(exit.Config, err)
}
