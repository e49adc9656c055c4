package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/pipelines/feedback"
	"github.com/wardml/ward/pipelines/feedback/report"
	"github.com/wardml/ward/pipelines/store"
)

func init() {
	var (
		ids              stringList
		all              bool
		modelsDir, out   string
		fromFlag, toFlag string
	)
	register(&Command{
		Name:    "feedback",
		Summary: "Join served predictions with real outcomes: live error, degradation and drift per model",
		Usage:   "feedback (--hospital ID ... | --all) --models DIR [--out DIR] [--from YYYY-MM] [--to YYYY-MM] [--output json]",
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

Exit codes: 0 every hospital's current model is healthy (or has too few
cases to judge); 4 a current model is degraded or drifted: retrain, or roll
back; 1 a hospital could not be read, or the report not written; 2 bad
flags, contracts, models or database.`,
		Example: `ward feedback --all --models .ward/models --out .ward/feedback
ward feedback --hospital st-olaf --models .ward/models --from 2025-07 --output json`,
		Output: true,
		Flags: func(fs *flag.FlagSet) {
			ids = nil
			fs.Var(&ids, "hospital", "hospital `ID` to assess (repeatable)")
			fs.BoolVar(&all, "all", false, "assess every hospital")
			fs.StringVar(&modelsDir, "models", "", "folder of the model artifacts, as ward train --out writes it (`DIR`/<id>/model.json)")
			fs.StringVar(&out, "out", "", "write the reports and feedback.json to `DIR`")
			fs.StringVar(&fromFlag, "from", "", "first month of predictions served, `YYYY-MM`")
			fs.StringVar(&toFlag, "to", "", "last month of predictions served, `YYYY-MM`")
		},
		Run: func(ctx context.Context, app *App, _ []string) error {
			if modelsDir == "" {
				return exit.With(exit.Config, errors.New("--models: missing (the folder of the model artifacts, as ward train --out writes it)"))
			}
			if all && len(ids) > 0 {
				return exit.With(exit.Config, errors.New("give --hospital ID or --all, not both"))
			}
			from, to, err := window(fromFlag, toFlag)
			if err != nil {
				return exit.With(exit.Config, err)
			}
			selected, err := contract.Select(app.Config.Hospitals(), ids, all)
			if err != nil {
				return exit.With(exit.Config, err)
			}
			arts, err := feedback.ReadModels(modelsDir)
			if err != nil {
				return exit.With(exit.Config, fmt.Errorf("--models: %w", err))
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
			for _, h := range r.Hospitals {
				switch {
				case h.Error != "":
					app.Log.Error("feedback failed", "event.action", "feedback", "event.outcome", "failure", "ward.hospital", h.Hospital, "error.message", h.Error)
				case h.Degraded || h.Drifted:
					app.Log.Warn("model unhealthy", "event.action", "feedback", "event.outcome", "failure", "ward.hospital", h.Hospital,
						"ward.version", h.Current, "ward.verdict", h.Verdict, "ward.reason", h.Reason)
				default:
					app.Log.Info("model assessed", "event.action", "feedback", "event.outcome", "success", "ward.hospital", h.Hospital,
						"ward.version", h.Current, "ward.verdict", h.Verdict, "ward.reason", h.Reason)
				}
			}
			var werr error
			if out != "" {
				werr = report.Write(out, r)
			}
			if err := app.Print(r, func(w io.Writer) { report.WriteTable(w, r) }); err != nil {
				return err
			}
			if failed := r.Failed(); len(failed) > 0 || werr != nil {
				var errs []error
				for _, h := range failed {
					errs = append(errs, errors.New(h.Error))
				}
				return exit.With(exit.Failure, errors.Join(append(errs, werr)...))
			}
			if flagged := r.Flagged(); len(flagged) > 0 {
				names := make([]string, len(flagged))
				for i, h := range flagged {
					names[i] = h.Hospital + " (" + h.Verdict + ")"
				}
				return exit.With(exit.Unhealthy, fmt.Errorf("%d of %d hospitals unhealthy: %s", len(flagged), len(r.Hospitals), strings.Join(names, ", ")))
			}
			return nil
		},
	})
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
