package manifest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// The actions of a timeline's events.
const (
	// ActionDeploy: a commit of ward deploy.
	ActionDeploy = "deploy"
	// ActionRollback: the revert of a deploy (or of a reapply), by ward
	// rollback or by git revert.
	ActionRollback = "rollback"
	// ActionReapply: the revert of a rollback, which deploys again what
	// the rollback undid.
	ActionReapply = "reapply"
	// ActionRevert: the revert of a change that deployed nothing.
	ActionRevert = "revert"
	// ActionChange: any other commit to the hospital's folder.
	ActionChange = "change"
)

// Event is one commit that changed a hospital's folder.
type Event struct {
	Commit  string    `json:"commit"`
	Time    time.Time `json:"time"`
	Author  string    `json:"author"`
	Action  string    `json:"action"`
	Subject string    `json:"subject"`
	// Release is what the hospital runs after this commit: nil when its
	// folder is gone, or invalid (Problem says why).
	Release *Release `json:"release,omitempty"`
	Problem string   `json:"problem,omitempty"`
	// Reverts is the commit this one reverts; RevertedBy the commits
	// that reverted this one, oldest first.
	Reverts    string   `json:"reverts,omitempty"`
	RevertedBy []string `json:"reverted_by,omitempty"`
	// Rejected marks a deploy or reapply whose digest is rolled back now:
	// ward deploy refuses it without --force.
	Rejected bool      `json:"rejected,omitempty"`
	Trailers []Trailer `json:"trailers,omitempty"`

	parent plumbing.Hash
	effect effect
}

// effect is what an event did to the digests: deployed (accept) or
// rolled back (reject) one, or neither (digest "").
type effect struct {
	accept  bool
	digest  string
	version string
}

// Rejection is a digest that was rolled back and not deployed since.
type Rejection struct {
	Digest  string `json:"digest"`
	Version string `json:"version"`
	// Commit is the rollback that rejected it.
	Commit string    `json:"commit"`
	Time   time.Time `json:"time"`
	Author string    `json:"author"`
}

// Timeline is a hospital's history, read from the commits alone, so that a
// revert made by hand with git revert counts like one of ward rollback.
type Timeline struct {
	Hospital string `json:"hospital"`
	// Head is the commit the timeline was read at.
	Head string `json:"head"`
	// Live is what the hospital runs at Head (nil before its first
	// deploy, or when its folder is invalid: Problem says why).
	Live     *Release    `json:"live,omitempty"`
	Problem  string      `json:"problem,omitempty"`
	Rejected []Rejection `json:"rejected,omitempty"`
	// Events, newest first.
	Events []Event `json:"events"`
	// Provenance is what was checked of the history (History).
	Provenance *Provenance `json:"provenance,omitempty"`

	// stack holds the commits of the deploys (and reapplies) in effect,
	// oldest first: a rollback reverts the last one.
	stack []string
}

// event returns the event of a commit, or nil.
func (t *Timeline) event(sha string) *Event {
	for i := range t.Events {
		if t.Events[i].Commit == sha {
			return &t.Events[i]
		}
	}
	return nil
}

// rejection returns the rejection of a digest, or nil.
func (t *Timeline) rejection(digest string) *Rejection {
	for i := range t.Rejected {
		if t.Rejected[i].Digest == digest {
			return &t.Rejected[i]
		}
	}
	return nil
}

// readTimeline reads hospital id's timeline from the commits before head.
func readTimeline(repo *git.Repository, head plumbing.Hash, id string) (*Timeline, error) {
	t := &Timeline{Hospital: id, Head: head.String(), Events: []Event{}}
	if head.IsZero() {
		t.Head = ""
		return t, nil
	}
	dir := HospitalDir(id) + "/"
	iter, err := repo.Log(&git.LogOptions{From: head, PathFilter: func(p string) bool { return strings.HasPrefix(p, dir) }})
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", dir, err)
	}
	var commits []*object.Commit
	err = iter.ForEach(func(c *object.Commit) error {
		commits = append(commits, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", dir, err)
	}
	slices.Reverse(commits)

	events := make([]Event, 0, len(commits))
	rejected := map[string]Rejection{}
	for _, c := range commits {
		e := Event{
			Commit:   c.Hash.String(),
			Time:     c.Committer.When,
			Author:   fmt.Sprintf("%s <%s>", c.Author.Name, c.Author.Email),
			Subject:  subject(c.Message),
			Trailers: ParseTrailers(c.Message),
			Action:   ActionChange,
		}
		if len(c.ParentHashes) > 0 {
			e.parent = c.ParentHashes[0]
		}
		rel, err := releaseAt(c, id)
		if err != nil {
			e.Problem = err.Error()
		}
		e.Release = rel
		if target := reverted(c.Message); target != "" {
			e.Action = ActionRevert
			if i := slices.IndexFunc(events, func(p Event) bool { return strings.HasPrefix(p.Commit, target) }); i >= 0 {
				p := &events[i]
				e.Reverts = p.Commit
				p.RevertedBy = append(p.RevertedBy, e.Commit)
				if p.effect.digest != "" {
					e.effect = effect{accept: !p.effect.accept, digest: p.effect.digest, version: p.effect.version}
					e.Action = ActionRollback
					if e.effect.accept {
						e.Action = ActionReapply
					}
				}
			}
		} else if trailer(e.Trailers, TrailerHospital) == id && rel != nil {
			e.Action = ActionDeploy
			e.effect = effect{accept: true, digest: rel.Digest, version: rel.Version}
		}
		switch {
		case e.effect.digest == "":
		case e.effect.accept:
			delete(rejected, e.effect.digest)
			t.stack = append(t.stack, e.Commit)
		default:
			rejected[e.effect.digest] = Rejection{Digest: e.effect.digest, Version: e.effect.version, Commit: e.Commit, Time: e.Time, Author: e.Author}
			t.stack = slices.DeleteFunc(t.stack, func(s string) bool { return s == e.Reverts })
		}
		events = append(events, e)
	}

	for i := range events {
		e := &events[i]
		_, e.Rejected = rejected[e.effect.digest]
		e.Rejected = e.Rejected && e.effect.accept
	}
	for _, r := range rejected {
		t.Rejected = append(t.Rejected, r)
	}
	slices.SortFunc(t.Rejected, func(a, b Rejection) int { return b.Time.Compare(a.Time) })
	if n := len(events); n > 0 {
		t.Live, t.Problem = events[n-1].Release, events[n-1].Problem
	}
	slices.Reverse(events)
	t.Events = events
	return t, nil
}

// releaseAt reads and checks a hospital's release at a commit.
func releaseAt(c *object.Commit, id string) (*Release, error) {
	tree, err := c.Tree()
	if err != nil {
		return nil, err
	}
	return ReadRelease(treeReader(tree), id)
}

// treeReader reads files of a commit's tree.
func treeReader(tree *object.Tree) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		f, err := tree.File(name)
		if errors.Is(err, object.ErrFileNotFound) {
			return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
		}
		if err != nil {
			return nil, err
		}
		r, err := f.Reader()
		if err != nil {
			return nil, err
		}
		defer r.Close()
		return io.ReadAll(r)
	}
}

// Versions lists the model versions a hospital has had deployed, by its
// history (History), newest first: the versions ward knows, against which
// ingest counts the predictions of a version never deployed.
func (r *Repo) Versions(ctx context.Context, hospital string) ([]string, error) {
	tl, err := r.History(ctx, hospital)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ev := range tl.Events {
		if ev.Release != nil && !slices.Contains(out, ev.Release.Version) {
			out = append(out, ev.Release.Version)
		}
	}
	return out, nil
}
