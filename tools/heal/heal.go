// Package heal carries out the feedback policy on the release side, for
// `ward feedback --apply`: it tells pipelines/feedback what each hospital
// runs (from the manifest repo's history), and does what the plan says:
// the revert commit of a degraded model, with the evidence in its message,
// and the retrain mark that makes the next ward train take a drifted
// hospital first. It comes last in the loop, where feedback closes it.
package heal

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/feedback"
	"github.com/wardml/ward/pipelines/store"
	"github.com/wardml/ward/tools/manifest"
)

// Histories reads the timeline of each hospital from the manifest repo.
func Histories(ctx context.Context, repo *manifest.Repo, ids []string) (map[string]*manifest.Timeline, error) {
	out := map[string]*manifest.Timeline{}
	for _, id := range ids {
		t, err := repo.History(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("the release of %s: %w", id, err)
		}
		out[id] = t
	}
	return out, nil
}

// Live says what a timeline has live, as the policy needs it: the release,
// the commit that made it live, whether that was a rollback, and what a
// rollback would restore. Nil before the first deploy.
func Live(t *manifest.Timeline) *feedback.Release {
	if t == nil || t.Live == nil {
		return nil
	}
	// The deploys (and reapplies) in effect, oldest first, as the manifest
	// reads them: a rollback takes off the one it reverts.
	var stack []*manifest.Event
	var last *manifest.Event
	for i := len(t.Events) - 1; i >= 0; i-- {
		e := &t.Events[i]
		switch e.Action {
		case manifest.ActionDeploy, manifest.ActionReapply:
			stack = append(stack, e)
		case manifest.ActionRollback:
			stack = slices.DeleteFunc(stack, func(s *manifest.Event) bool { return s.Commit == e.Reverts })
		default:
			continue
		}
		last = e
	}
	r := &feedback.Release{Version: t.Live.Version, Digest: t.Live.Digest}
	if last != nil {
		r.Commit, r.ByRollback = last.Commit, last.Action == manifest.ActionRollback
	}
	if n := len(stack); n >= 2 && stack[n-2].Release != nil {
		r.Previous = &feedback.Release{Version: stack[n-2].Release.Version, Digest: stack[n-2].Release.Digest, Commit: stack[n-2].Commit}
	}
	return r
}

// Lives is Live of each timeline, by hospital.
func Lives(tls map[string]*manifest.Timeline) map[string]*feedback.Release {
	out := map[string]*feedback.Release{}
	for id, t := range tls {
		if r := Live(t); r != nil {
			out[id] = r
		}
	}
	return out
}

// ModelReader reads (and verifies) the model artifact of an image,
// repository@sha256:...
type ModelReader func(ctx context.Context, image string) (*models.Artifact, error)

// Models reads the artifact of every release the timelines name, once
// each, so that feedback can judge every version that served (the scheduled
// pipeline has no folder of past models: the images are the record).
func Models(ctx context.Context, tls map[string]*manifest.Timeline, read ModelReader) ([]*models.Artifact, error) {
	seen := map[string]bool{}
	var out []*models.Artifact
	for _, id := range sortedKeys(tls) {
		for _, e := range tls[id].Events {
			if e.Release == nil || seen[e.Release.Digest] {
				continue
			}
			seen[e.Release.Digest] = true
			a, err := read(ctx, e.Release.Image)
			if err != nil {
				return nil, fmt.Errorf("the model of %s %s (%s): %w", id, e.Release.Version, e.Release.Image, err)
			}
			out = append(out, a)
		}
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Apply does the planned steps of p: each rollback as a revert commit
// (through repo, which signs it when it has a key), each retrain as a mark
// in st. Before a revert it reads the hospital's history again, and
// declines when the release it would revert is no longer live (a deploy
// or a person came first). A step that fails is marked failed and alerts;
// the others go on. The error joins the failures.
func Apply(ctx context.Context, p *feedback.Plan, repo *manifest.Repo, st *store.Store, now time.Time) error {
	var errs []error
	for i := range p.Decisions {
		d := &p.Decisions[i]
		if s := d.Rollback; s != nil && s.Status == feedback.StatusPlanned {
			if err := rollback(ctx, repo, d); err != nil {
				s.Status, s.Reason = feedback.StatusFailed, err.Error()
				d.Alert, d.Alerts = true, append(d.Alerts, "rollback failed: "+err.Error())
				errs = append(errs, fmt.Errorf("rollback %s: %w", d.Hospital, err))
			}
		}
		if s := d.Retrain; s != nil && s.Status == feedback.StatusPlanned {
			added, err := st.MarkRetrain(ctx, store.RetrainMark{Hospital: d.Hospital, Version: d.Version, Reason: s.Reason, At: now})
			switch {
			case err != nil:
				s.Status, s.Reason = feedback.StatusFailed, err.Error()
				d.Alert, d.Alerts = true, append(d.Alerts, "retrain mark failed: "+err.Error())
				errs = append(errs, err)
			case added:
				s.Status = feedback.StatusDone
			default:
				s.Status, s.Reason = feedback.StatusDone, s.Reason+" (marked already by an earlier run: it keeps its place)"
			}
		}
		d.Summarise()
	}
	return errors.Join(errs...)
}

// ErrMoved is a rollback declined because the release changed between
// the assessment and the revert.
var ErrMoved = errors.New("the live release changed")

func rollback(ctx context.Context, repo *manifest.Repo, d *feedback.Decision) error {
	s := d.Rollback
	t, err := repo.History(ctx, d.Hospital)
	if err != nil {
		return err
	}
	if now := Live(t); now == nil || now.Digest != s.From.Digest || now.Commit != s.From.Commit {
		s.Status = feedback.StatusDeclined
		s.Reason = fmt.Sprintf("%s: the manifest repo's %s changed since it was assessed (now %v): nothing reverted; the next run judges what runs now", ErrMoved, d.Hospital, releaseText(now))
		return nil
	}
	e := s.Evidence
	trailers := []manifest.Trailer{{Key: "Ward-Verdict", Value: d.Verdict}}
	for _, kv := range e.Trailers() {
		trailers = append(trailers, manifest.Trailer{Key: kv[0], Value: kv[1]})
	}
	res, err := repo.Rollback(ctx, manifest.Rollback{
		Hospital: d.Hospital,
		Note: fmt.Sprintf("Rolled back by ward feedback --apply (feedback.on_degraded: rollback): %s %s.\nThe revert restores %s (%s): %s.",
			s.From.Version, e.Text(), s.To.Version, s.To.Digest, s.Reason),
		Trailers: trailers,
	})
	if err != nil {
		return err
	}
	if res.Status != manifest.StatusCommitted || len(res.Commits) == 0 || res.Release == nil {
		return fmt.Errorf("the manifest repo wrote no revert (%s: %s)", res.Status, res.Reason)
	}
	s.Status, s.Commit = feedback.StatusDone, res.Commits[len(res.Commits)-1]
	s.To = &feedback.Release{Version: res.Release.Version, Digest: res.Release.Digest, Commit: s.Commit, ByRollback: true}
	return nil
}

func releaseText(r *feedback.Release) string {
	if r == nil {
		return "no release"
	}
	return r.Version + " " + r.Digest
}
