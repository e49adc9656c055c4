package main

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/feedback"
	"github.com/wardml/ward/pipelines/feedback/report"
	"github.com/wardml/ward/pipelines/store"
	"github.com/wardml/ward/tools/heal"
	"github.com/wardml/ward/tools/image"
	"github.com/wardml/ward/tools/manifest"
	"github.com/wardml/ward/tools/registry"
)

// feedbackCmd is one command line of ward feedback: its flags.
type feedbackCmd struct {
	ids              stringList
	all              bool
	modelsDir, out   string
	fromFlag, toFlag string
	apply            bool
	maxRollbacks     int
	author           string
}

func init() {
	register(&Command{
		Name:    "feedback",
		Summary: "Join served predictions with real outcomes: live error, degradation and drift per model",
		Usage:   "feedback (--hospital ID ... | --all) [--models DIR] [--out DIR] [--from YYYY-MM] [--to YYYY-MM] [--apply [--max-rollbacks N]] [--output json]",
		Help: `Joins each hospital's predictions in the database (WARD_DATABASE: those ward
ingest loaded from the model servers' prediction logs, or the servers wrote)
with the outcomes that later extracts brought, by case id, and says how each
model version really performs: per version and per month of the cases, the
live MAE, RMSE and under-estimate rate beside the validation metrics its
artifact carries. The artifacts come from --models DIR, the layout of ward
train --out (DIR/<id>/model.json, at any depth): each version found there is
matched to the predictions' model version; a version with no artifact is
shown, not judged.

A model is degraded when its live MAE is above its validation MAE by more
than the contract's feedback.degradation over at least feedback.min_cases
cases with an outcome. It has drifted when an input feature's population
stability index, the logged inputs against the training distribution its
artifact keeps, is over 0.25 (under 0.1 stable, 0.1 to 0.25 watch), over at
least min_cases rows and 10 rows a bin (hashed inputs: not computed). A
hospital's verdict is its current model's, the version that served its latest
prediction, so that a model replaced after a retrain no longer counts.

The counts beside: predictions without a case id, awaiting their outcome,
repeated for a case (the latest counts), of versions with no artifact, and
the outcomes that no prediction names.

--from and --to select the predictions by the month they were served
(both included); default every prediction. With --out, writes
DIR/<id>/feedback.md, feedback.html (plots inlined) and the PNG plots, and
DIR/feedback.json.

With WARD_MANIFEST_REPO set, the models of every release in each
hospital's history are read from their images in the registry (verified with
WARD_VERIFY_KEY), beside --models, and the contract's feedback policy is
planned: on_degraded (rollback, alert, none) and on_drift (retrain, alert,
none). --apply carries it out. A rollback is the revert commit of the
degraded model's deploy (signed with WARD_MANIFEST_SIGN_KEY when set), its
message giving the evidence: live and validation MAE, cases, the window of
the predictions. It is made only for a degraded current model judged on at
least min_cases cases, live in the manifest repo, not itself live by a
rollback (a rollback is never rolled back), whose earlier release was not
degraded too; and for at most --max-rollbacks hospitals a run (default 1),
the worst first: more at once is a fleet-wide fault, an incident that
alerts, not a revert each. A retrain marks the hospital in the database, so
that the next ward train --all takes it first. Everything done or declined
is in the output (--output json: "plan"), in DIR/plan.json with --out, and
in the one log line of each hospital.

Exit codes: 0 every hospital's current model is healthy (or has too few
cases to judge, or its contract's policy for what it has is none); 4 a
current model is degraded or drifted (rolled back or not: the plan says);
1 a hospital could not be read, the report not written, or a rollback or
mark failed; 2 bad flags, contracts, models, database or manifest repo.`,
		Example: `ward feedback --all --models .ward/models --out .ward/feedback
WARD_MANIFEST_REPO=ssh://git@git.example/ml/manifest.git ward feedback --all --out out/feedback --apply --max-rollbacks 2
ward feedback --hospital st-olaf --models .ward/models --from 2025-07 --output json`,
		Output: true,
		New:    func() Runner { return &feedbackCmd{} },
	})
}

func (cmd *feedbackCmd) Flags(fs *flag.FlagSet) {
	fs.Var(&cmd.ids, "hospital", "hospital `ID` to assess (repeatable)")
	fs.BoolVar(&cmd.all, "all", false, "assess every hospital")
	fs.StringVar(&cmd.modelsDir, "models", "", "folder of the model artifacts, as ward train --out writes it (`DIR`/<id>/model.json)")
	fs.StringVar(&cmd.out, "out", "", "write the reports and feedback.json to `DIR`")
	fs.StringVar(&cmd.fromFlag, "from", "", "first month of predictions served, `YYYY-MM`")
	fs.StringVar(&cmd.toFlag, "to", "", "last month of predictions served, `YYYY-MM`")
	fs.BoolVar(&cmd.apply, "apply", false, "carry out the contracts' feedback policies: revert commits, retrain marks (needs WARD_MANIFEST_REPO)")
	fs.IntVar(&cmd.maxRollbacks, "max-rollbacks", -1, "the most hospitals rolled back in one run; more degraded at once is an incident (`N`; default the max_rollbacks setting, WARD_MAX_ROLLBACKS, 1)")
	fs.StringVar(&cmd.author, "author", "", "author of the revert commits, `\"Name <email>\"` (default GIT_AUTHOR_NAME/EMAIL, else ward)")
}

func (cmd *feedbackCmd) Run(ctx context.Context, app *App, _ []string) error {
	if cmd.modelsDir == "" && app.Config.ManifestRepo() == "" {
		return exit.With(exit.Config, errors.New("--models: missing (the folder of the model artifacts, as ward train --out writes it; or set WARD_MANIFEST_REPO to read them from the images deployed)"))
	}
	if cmd.apply && app.Config.ManifestRepo() == "" {
		return exit.With(exit.Config, errors.New("--apply: no manifest repo: set WARD_MANIFEST_REPO, where the rollbacks go"))
	}
	if cmd.maxRollbacks < 0 {
		v := cmp.Or(app.Config.Get("max_rollbacks"), "1")
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return exit.With(exit.Config, fmt.Errorf("max_rollbacks %q (WARD_MAX_ROLLBACKS or ward.yaml): want a whole number, 0 or more", v))
		}
		cmd.maxRollbacks = n
	}
	if cmd.all && len(cmd.ids) > 0 {
		return exit.With(exit.Config, errors.New("give --hospital ID or --all, not both"))
	}
	from, to, err := window(cmd.fromFlag, cmd.toFlag)
	if err != nil {
		return exit.With(exit.Config, err)
	}
	selected, err := contract.Select(app.Config.Hospitals(), cmd.ids, cmd.all)
	if err != nil {
		return exit.With(exit.Config, err)
	}
	var arts []*models.Artifact
	if cmd.modelsDir != "" {
		if arts, err = feedback.ReadModels(cmd.modelsDir); err != nil {
			return exit.With(exit.Config, fmt.Errorf("--models: %w", err))
		}
	}
	// With the manifest repo, the policy knows what each hospital
	// runs, and every release's model comes from its image.
	var (
		repo *manifest.Repo
		tls  map[string]*manifest.Timeline
	)
	if app.Config.ManifestRepo() != "" {
		if repo, err = openManifest(app, &manifestFlags{branch: "main", author: cmd.author}); err != nil {
			return err
		}
		names := make([]string, len(selected))
		for i, h := range selected {
			names[i] = h.ID
		}
		if tls, err = heal.Histories(ctx, repo, names); err != nil {
			return manifestError(err)
		}
		read, err := imageModels(app)
		if err != nil {
			return err
		}
		deployed, err := heal.Models(ctx, tls, read)
		if err != nil {
			return err
		}
		// A folder's artifact of the same version wins: it is the same model.
		arts = append(deployed, arts...)
	}
	st, err := store.Open(ctx, app.Config.Database())
	if err != nil {
		return err
	}
	defer st.Close()

	r, err := feedback.Run(ctx, st, selected, feedback.WithModels(arts...), feedback.WithWindow(from, to))
	if err != nil {
		return err
	}
	var plan *feedback.Plan
	var aerr error
	if repo != nil {
		plan = feedback.Decide(r, selected, heal.Lives(tls), cmd.maxRollbacks)
		if cmd.apply {
			aerr = heal.Apply(ctx, plan, repo, st, time.Now())
		}
	}
	logFeedback(app, r, plan, cmd.apply)
	var werr error
	if cmd.out != "" {
		werr = report.Write(cmd.out, r)
		if plan != nil && werr == nil {
			werr = report.WritePlan(cmd.out, plan)
		}
	}
	res := feedbackResult{Report: r, Plan: plan, Applied: cmd.apply}
	if err := app.Print(res, func(w io.Writer) {
		report.WriteTable(w, r)
		if plan != nil {
			report.WritePlanTable(w, plan, cmd.apply)
		}
	}); err != nil {
		return err
	}
	if failed := r.Failed(); len(failed) > 0 || werr != nil || aerr != nil {
		var errs []error
		for _, h := range failed {
			errs = append(errs, errors.New(h.Error))
		}
		return exit.With(exit.Failure, errors.Join(append(errs, werr, aerr)...))
	}
	if flagged := unhealthy(r, selected); len(flagged) > 0 {
		names := make([]string, len(flagged))
		for i, h := range flagged {
			names[i] = h.Hospital + " (" + h.Verdict + ")"
		}
		return exit.With(exit.Unhealthy, fmt.Errorf("%d of %d hospitals unhealthy: %s", len(flagged), len(r.Hospitals), strings.Join(names, ", ")))
	}
	return nil
}

// feedbackResult is ward feedback's JSON: the report's fields, and the
// policy's plan beside them (with WARD_MANIFEST_REPO).
type feedbackResult struct {
	*feedback.Report
	Plan    *feedback.Plan `json:"plan,omitempty"`
	Applied bool           `json:"applied"`
}

// unhealthy are the flagged hospitals whose contract asks for anything
// (a policy of none for every flag raised keeps it out of exit code 4).
func unhealthy(r *feedback.Report, hs []*contract.Hospital) []*feedback.Hospital {
	var out []*feedback.Hospital
	for _, h := range r.Flagged() {
		i := slices.IndexFunc(hs, func(c *contract.Hospital) bool { return c.ID == h.Hospital })
		if i < 0 {
			continue
		}
		fb := hs[i].Feedback
		if h.Degraded && fb.OnDegraded != contract.PolicyNone || h.Drifted && fb.OnDrift != contract.PolicyNone {
			out = append(out, h)
		}
	}
	return out
}

// logFeedback writes one ECS line per hospital: its verdict, and what the
// policy did or declined to do; and one for an incident.
func logFeedback(app *App, r *feedback.Report, plan *feedback.Plan, applied bool) {
	decisions := map[string]*feedback.Decision{}
	if plan != nil {
		for i := range plan.Decisions {
			decisions[plan.Decisions[i].Hospital] = &plan.Decisions[i]
		}
	}
	for _, h := range r.Hospitals {
		attrs := []any{"event.action", "feedback", "ward.hospital", h.Hospital}
		level, msg := slog.LevelInfo, "model assessed"
		switch {
		case h.Error != "":
			level, msg = slog.LevelError, "feedback failed"
			attrs = append(attrs, "event.outcome", "failure", "error.message", h.Error)
		case h.Degraded || h.Drifted:
			level, msg = slog.LevelWarn, "model unhealthy"
			attrs = append(attrs, "event.outcome", "failure", "ward.version", h.Current, "ward.verdict", h.Verdict, "ward.reason", h.Reason)
		default:
			attrs = append(attrs, "event.outcome", "success", "ward.version", h.Current, "ward.verdict", h.Verdict, "ward.reason", h.Reason)
		}
		if d := decisions[h.Hospital]; d != nil {
			attrs = append(attrs, "ward.policy.applied", applied, "ward.policy.alert", d.Alert, "ward.policy.summary", d.Summary)
			if s := d.Rollback; s != nil {
				attrs = append(attrs, "ward.rollback.status", s.Status, "ward.rollback.reason", s.Reason)
				if s.Commit != "" {
					attrs = append(attrs, "ward.commit", s.Commit)
				}
			}
			if s := d.Retrain; s != nil {
				attrs = append(attrs, "ward.retrain.status", s.Status)
			}
			if d.Alert && level < slog.LevelWarn {
				level = slog.LevelWarn
			}
		}
		app.Log.Log(context.Background(), level, msg, attrs...)
	}
	if plan != nil && plan.Incident != "" {
		app.Log.Error("incident: rollbacks held back", "event.action", "feedback.incident", "event.outcome", "failure",
			"ward.max_rollbacks", plan.MaxRollbacks, "ward.reason", plan.Incident)
	}
}

// imageModels reads the model of a deployed image from the registry,
// verified with WARD_VERIFY_KEY when it is set.
func imageModels(app *App) (heal.ModelReader, error) {
	client, err := registry.FromConfig(app.Config)
	if err != nil {
		return nil, exit.With(exit.Config, err)
	}
	var pub *ecdsa.PublicKey
	if app.Config.Get("verify_key") != "" {
		if pub, err = verifyKey(app, ""); err != nil {
			return nil, err
		}
	}
	warned := false
	return func(ctx context.Context, ref string) (*models.Artifact, error) {
		if pub == nil && !warned {
			d, err := client.ParseDigest(ref)
			if err != nil {
				return nil, exit.With(exit.Config, err)
			}
			warned = true
			app.Log.Warn("the deployed models are read without verifying their images: set WARD_VERIFY_KEY", "ward.image", d.String())
		}
		a, err := image.DeployedModel(ctx, client, pub, ref)
		return a, deployedError(err)
	}, nil
}

// window turns --from and --to months into the times that bound the
// predictions: the first day of from, the first day after to.
func window(from, to string) (time.Time, time.Time, error) {
	month := func(flag, s string) (time.Time, error) {
		if s == "" {
			return time.Time{}, nil
		}
		t, err := time.Parse("2006-01", s)
		if err != nil {
			return t, fmt.Errorf("%s %q: want a month, YYYY-MM", flag, s)
		}
		return t, nil
	}
	f, err := month("--from", from)
	if err != nil {
		return f, f, err
	}
	t, err := month("--to", to)
	if err != nil || t.IsZero() {
		return f, t, err
	}
	t = t.AddDate(0, 1, 0)
	if !f.Before(t) {
		return f, t, fmt.Errorf("--from %s is after --to %s", from, to)
	}
	return f, t, nil
}
