package manifest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Rollback asks for a hospital's last deploy, or every deploy after a
// given release, to be undone.
type Rollback struct {
	Hospital string
	// To is the digest or version to go back to; "" undoes the last
	// deploy in effect.
	To string
	// DryRun makes the commits in memory, returns their diff, pushes
	// nothing.
	DryRun bool
	// ExpectDigest is the digest live before the rollback; "" means the
	// one live when it starts. As for Deployment.ExpectDigest, another
	// one found, after a fetch too, commits nothing (ErrMoved).
	ExpectDigest string
	// Note is a paragraph the revert's message gives after git's "This
	// reverts commit", and Trailers follow ward's own: why it was rolled
	// back (ward feedback --apply puts its evidence there).
	Note     string
	Trailers []Trailer
}

// Rollback writes a true revert commit ("Revert \"<subject>\"", "This
// reverts commit <sha>.", ward's trailers) of the hospital's last deploy in
// effect, or one per deploy after the release To, newest first, and pushes
// them. The digests it undoes are rejected: ward deploy refuses them
// without --force. When a file of the deploy changed since, it stops with
// ErrConflict and changes nothing.
func (r *Repo) Rollback(ctx context.Context, rb Rollback) (*Result, error) {
	if err := CheckHospital(rb.Hospital); err != nil {
		return nil, err
	}
	if rb.ExpectDigest != "" && rb.ExpectDigest != ExpectNone && !digestPattern.MatchString(rb.ExpectDigest) {
		return nil, fail(ErrUsage, "--expect-digest %q: want sha256: and 64 hex digits", rb.ExpectDigest)
	}
	expect := rb.ExpectDigest
	return r.publish(ctx, rb.DryRun, func(c *checkout) (*Result, error) {
		res := &Result{Action: ActionRollback, Hospital: rb.Hospital}
		if _, err := r.trusted(c, rb.Hospital, "rollback"); err != nil {
			return nil, err
		}
		t, err := c.timeline(rb.Hospital)
		if err != nil {
			return nil, err
		}
		if err := checkExpected(&expect, t.Live, "rollback", rb.Hospital, HospitalDir(rb.Hospital)+"/"+ReleaseFile); err != nil {
			return nil, err
		}
		res.Previous = t.Live
		targets, err := rollbackTargets(t, rb.To)
		if err != nil {
			return nil, err
		}
		if len(targets) == 0 {
			res.Status, res.Release = StatusUnchanged, t.Live
			res.Reason = fmt.Sprintf("%s is live already", rb.To)
			return res, nil
		}
		for _, ev := range targets {
			if res.Release, err = r.revert(c, ev, rb, rb.DryRun); err != nil {
				return nil, err
			}
		}
		return res, nil
	})
}

// rollbackTargets returns the deploys to revert, newest first.
func rollbackTargets(t *Timeline, to string) ([]*Event, error) {
	n := len(t.stack)
	if n == 0 {
		return nil, fmt.Errorf("rollback %s: no deploy of it is in effect: nothing to roll back", t.Hospital)
	}
	if to == "" {
		top := t.event(t.stack[n-1])
		if n == 1 {
			return nil, fmt.Errorf("rollback %s: %s (%s) is its only deploy in effect: there is nothing to roll back to; deploy the release you want instead", t.Hospital, short(top.Commit), top.effect.version)
		}
		return []*Event{top}, nil
	}
	var inEffect []string
	for i := n - 1; i >= 0; i-- {
		e := t.event(t.stack[i])
		if e.effect.digest == to || e.effect.version == to {
			targets := make([]*Event, 0, n-1-i)
			for j := n - 1; j > i; j-- {
				targets = append(targets, t.event(t.stack[j]))
			}
			return targets, nil
		}
		inEffect = append(inEffect, fmt.Sprintf("%s (%s)", e.effect.version, short(e.effect.digest)))
	}
	return nil, fail(ErrUsage, "rollback %s --to %s: no deploy of it is in effect; in effect, newest first: %s", t.Hospital, to, strings.Join(inEffect, ", "))
}

// revert commits the inverse of ev's commit onto the checkout and returns
// the release it restores.
func (r *Repo) revert(c *checkout, ev *Event, rb Rollback, dryRun bool) (*Release, error) {
	id := rb.Hospital
	commit, err := c.repo.CommitObject(plumbing.NewHash(ev.Commit))
	if err != nil {
		return nil, err
	}
	after, err := commit.Tree()
	if err != nil {
		return nil, err
	}
	var before *object.Tree
	if !ev.parent.IsZero() {
		if before, err = treeOf(c.repo, ev.parent); err != nil {
			return nil, err
		}
	}
	changes, err := object.DiffTree(before, after)
	if err != nil {
		return nil, err
	}
	previous, err := ReadRelease(c.readFile, id)
	if err != nil {
		return nil, err
	}
	for _, ch := range changes {
		name := ch.To.Name
		if name == "" {
			name = ch.From.Name
		}
		current, err := c.readFile(name)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		deployed, err := contentAt(after, name)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(current, deployed) {
			return nil, r.conflict(c, ev, id, name)
		}
		restored, err := contentAt(before, name)
		if err != nil {
			return nil, err
		}
		if err := c.write(name, restored); err != nil {
			return nil, err
		}
	}
	restored, err := ReadRelease(c.readFile, id)
	if err != nil {
		return nil, fmt.Errorf("revert %s: %w", short(ev.Commit), err)
	}
	prevDigest := ""
	if previous != nil {
		prevDigest = previous.Digest
	}
	if _, err := r.commit(c, revertMessage(*ev, restored, id, prevDigest, rb.Note, rb.Trailers), dryRun); err != nil {
		return nil, err
	}
	return restored, nil
}

// conflict explains which commit changed a file of the deploy since.
func (r *Repo) conflict(c *checkout, ev *Event, id, name string) error {
	by := "a commit"
	iter, err := c.repo.Log(&git.LogOptions{From: c.base, PathFilter: func(p string) bool { return p == name }})
	if err == nil {
		if last, err := iter.Next(); err == nil && last.Hash.String() != ev.Commit {
			by = fmt.Sprintf("%s (%q, %s)", short(last.Hash.String()), subject(last.Message), last.Author.Name)
		}
		iter.Close()
	}
	return fail(ErrConflict, "rollback %s: %s changed since %s %s (%s) by %s: a revert would undo that change too, so nothing was rolled back; revert that change first (git revert), or deploy the release you want with ward deploy --force", id, name, ev.Action, short(ev.Commit), ev.effect.version, by)
}

// contentAt returns a file of a tree, nil when it is not there.
func contentAt(tree *object.Tree, name string) ([]byte, error) {
	if tree == nil {
		return nil, nil
	}
	data, err := treeReader(tree)(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return data, err
}
