package manifest

import (
	"errors"
	"fmt"
	"path"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// TrailerAllowDowngrade marks a deploy that moves a hospital to an older
// model on purpose (ward deploy --allow-downgrade); its value says from
// which version to which.
const TrailerAllowDowngrade = "Ward-Allow-Downgrade"

// Provenance is what a reader checked about a hospital at a tip.
type Provenance struct {
	// Trusted: a trust file (or WARD_MANIFEST_TRUST) applied, and every
	// check passed. False when there is none: ward works as before.
	Trusted bool `json:"trusted"`
	// Keys are the keys of the trust at the tip.
	Keys []string `json:"keys,omitempty"`
	// Decider is the last commit that changed the hospital's folder: the
	// one that decides what it runs. Nil when the folder never existed.
	Decider *Decider `json:"decider,omitempty"`
}

// Decider is the commit that last changed a hospital's folder.
type Decider struct {
	Commit  string `json:"commit"`
	Subject string `json:"subject"`
	// Signer is who signed it ("" without a trust file).
	Signer string `json:"signer,omitempty"`
	// Revert: the commit is a revert (ward rollback or git revert).
	Revert bool `json:"revert,omitempty"`
	// AllowDowngrade is its Ward-Allow-Downgrade trailer, if any.
	AllowDowngrade string `json:"allow_downgrade,omitempty"`
}

// Rollback reports whether the decider may move the hospital to an older
// model: a revert, or a deploy with a Ward-Allow-Downgrade trailer (signed
// like any other commit when a trust file applies).
func (d *Decider) Rollback() bool {
	return d != nil && (d.Revert || d.AllowDowngrade != "")
}

// checkTip decides whether hospital id may follow tip, given the commit
// applied last (zero: none, the whole history is checked) and the trust
// anchor (WARD_MANIFEST_TRUST; nil: the repo's own trust file). It refuses
// with ErrUntrusted when
//   - applied is not tip nor an ancestor of it (a force push dropped it);
//   - the trust file at tip is not the one in effect: a commit after
//     applied changed it without a signature of a key the trust in effect
//     before it listed (trustChain);
//   - the last commit to change the hospital's folder, or base/ (which holds
//     the trust file), is not signed by a key the trust at tip lists.
//
// Without a trust file anywhere in that history, only the descent is
// checked, and Provenance.Trusted is false.
func checkTip(repo *git.Repository, anchor *Trust, applied, tip plumbing.Hash, id string) (*Provenance, error) {
	tipC, err := repo.CommitObject(tip)
	if err != nil {
		return nil, fmt.Errorf("manifest tip %s: %w", short(tip.String()), err)
	}
	// The commits after applied: reachable from tip and not from applied.
	seen := map[plumbing.Hash]bool{}
	if !applied.IsZero() {
		appliedC, err := repo.CommitObject(applied)
		ok := false
		if err == nil {
			ok, err = appliedC.IsAncestor(tipC)
		}
		if err != nil && !errors.Is(err, plumbing.ErrObjectNotFound) {
			return nil, err
		}
		if !ok && applied != tip {
			return nil, fail(ErrUntrusted, "manifest tip %s does not descend from %s, the commit applied last: the branch was rewritten (a force push dropped it); refused. If the rewrite was deliberate, start the reader from the new history (see the README's trust section)", short(tip.String()), short(applied.String()))
		}
		if applied == tip {
			// Nothing new: the poll of an agent, most of the time.
			seen[tip] = true
		} else if err := walk(repo, applied, func(c *object.Commit) bool { seen[c.Hash] = true; return true }); err != nil {
			return nil, err
		}
	}
	p := &Provenance{}
	trust := anchor
	if trust == nil {
		if trust, err = trustChain(repo, applied, tipC, seen); err != nil {
			return nil, err
		}
	}
	dir := HospitalDir(id)
	decider, err := lastChange(repo, tipC, dir)
	if err != nil {
		return nil, err
	}
	if decider != nil {
		p.Decider = &Decider{Commit: decider.Hash.String(), Subject: subject(decider.Message), Revert: reverted(decider.Message) != "",
			AllowDowngrade: trailer(ParseTrailers(decider.Message), TrailerAllowDowngrade)}
	}
	if trust == nil {
		return p, nil
	}
	p.Keys = trust.Describe()
	for _, d := range []string{dir, BaseDir} {
		c := decider
		if d == BaseDir {
			if c, err = lastChange(repo, tipC, d); err != nil {
				return nil, err
			}
		}
		if c == nil {
			continue
		}
		signer, err := trust.VerifyCommit(c)
		if err != nil {
			return nil, fail(ErrUntrusted, "commit %s (%q, %s) is the last to change %s/ at %s: %v; only a commit signed by a key %s lists decides what a hospital runs; refused (a signed commit after it, such as a signed revert or deploy, recovers)", short(c.Hash.String()), subject(c.Message), c.Author.Email, d, short(tip.String()), err, trust.Source)
		}
		if d == dir {
			p.Decider.Signer = signer
		}
	}
	p.Trusted = true
	return p, nil
}

// trustChain follows the trust file from applied (or from the first
// commit) to tip and returns the trust in effect at tip. A change counts
// only when signed by a key of the trust in effect before it (the first
// trust file: by a key it lists itself); one that is not is passed over,
// and when the tip's trust file is not the one in effect, the tip is
// refused, naming that change. So a signed change that restores the trust
// file recovers from an unsigned one without rewriting history.
func trustChain(repo *git.Repository, applied plumbing.Hash, tip *object.Commit, before map[plumbing.Hash]bool) (*Trust, error) {
	// The commits after applied, parents first.
	var order []*object.Commit
	done := map[plumbing.Hash]bool{}
	var visit func(c *object.Commit) error
	visit = func(c *object.Commit) error {
		if done[c.Hash] || before[c.Hash] {
			return nil
		}
		done[c.Hash] = true
		for _, ph := range c.ParentHashes {
			parent, err := repo.CommitObject(ph)
			if err != nil {
				return fmt.Errorf("manifest history: commit %s: %w", short(ph.String()), err)
			}
			if err := visit(parent); err != nil {
				return err
			}
		}
		order = append(order, c)
		return nil
	}
	if err := visit(tip); err != nil {
		return nil, err
	}
	var (
		eff     *Trust
		effHash plumbing.Hash
		passed  *object.Commit
		why     error
	)
	if !applied.IsZero() {
		c, err := repo.CommitObject(applied)
		if err != nil {
			return nil, err
		}
		if eff, err = trustAt(c); err != nil {
			return nil, err
		}
		if effHash, err = entryHash(c, TrustFile); err != nil {
			return nil, err
		}
	}
	for _, c := range order {
		changed, err := changedPath(repo, c, TrustFile)
		if err != nil || !changed {
			continue
		}
		h, err := entryHash(c, TrustFile)
		if err != nil {
			return nil, err
		}
		if h == effHash {
			continue // back to the trust in effect (a revert of a passed-over change)
		}
		next, err := trustAt(c)
		if err != nil {
			passed, why = c, err
			continue
		}
		judge := eff
		if judge == nil {
			judge = next // the first trust file vouches for itself
		}
		if judge == nil {
			passed, why = c, errors.New("deleted it")
			continue
		}
		if _, err := judge.VerifyCommit(c); err != nil {
			passed, why = c, err
			continue
		}
		eff, effHash = next, h
	}
	tipHash, err := entryHash(tip, TrustFile)
	if err != nil {
		return nil, err
	}
	if tipHash != effHash {
		source := "the trust file in effect"
		if eff != nil {
			source = eff.Source
		} else if next, err := trustAt(passed); err == nil && next != nil {
			source = "the new trust file itself (the first one)"
		}
		return nil, fail(ErrUntrusted, "commit %s (%q, %s) changed %s: %v; a change of the trust file counts only when signed by a key that %s lists; refused until a signed commit restores it (or signs the change)", short(passed.Hash.String()), subject(passed.Message), passed.Author.Email, TrustFile, why, source)
	}
	return eff, nil
}

// walk visits the commits reachable from h, each once, and does not go on
// past a commit for which visit returns false.
func walk(repo *git.Repository, h plumbing.Hash, visit func(*object.Commit) bool) error {
	stack := []plumbing.Hash{h}
	done := map[plumbing.Hash]bool{}
	for len(stack) > 0 {
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if done[h] {
			continue
		}
		done[h] = true
		c, err := repo.CommitObject(h)
		if err != nil {
			return fmt.Errorf("manifest history: commit %s: %w", short(h.String()), err)
		}
		if visit(c) {
			stack = append(stack, c.ParentHashes...)
		}
	}
	return nil
}

// entryHash is the hash of the file or folder p in c's tree (zero when it
// is not there).
func entryHash(c *object.Commit, p string) (plumbing.Hash, error) {
	tree, err := c.Tree()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	e, err := tree.FindEntry(p)
	if errors.Is(err, object.ErrEntryNotFound) || errors.Is(err, object.ErrDirectoryNotFound) {
		return plumbing.ZeroHash, nil
	}
	if err != nil {
		return plumbing.ZeroHash, err
	}
	return e.Hash, nil
}

// changedPath reports whether c changed p: p differs from every parent's
// (git's rule for a merge), or c is a root commit that has p.
func changedPath(repo *git.Repository, c *object.Commit, p string) (bool, error) {
	h, err := entryHash(c, p)
	if err != nil {
		return false, err
	}
	if len(c.ParentHashes) == 0 {
		return !h.IsZero(), nil
	}
	for _, ph := range c.ParentHashes {
		parent, err := repo.CommitObject(ph)
		if err != nil {
			return false, err
		}
		ph, err := entryHash(parent, p)
		if err != nil {
			return false, err
		}
		if ph == h {
			return false, nil
		}
	}
	return true, nil
}

// lastChange is the last commit on tip's first-parent line that changed
// p (a merge that brought a change in counts as changing it); nil when p
// was never there.
func lastChange(repo *git.Repository, tip *object.Commit, p string) (*object.Commit, error) {
	c := tip
	for {
		h, err := entryHash(c, p)
		if err != nil {
			return nil, err
		}
		if len(c.ParentHashes) == 0 {
			if h.IsZero() {
				return nil, nil
			}
			return c, nil
		}
		parent, err := repo.CommitObject(c.ParentHashes[0])
		if err != nil {
			return nil, err
		}
		ph, err := entryHash(parent, p)
		if err != nil {
			return nil, err
		}
		if ph != h {
			return c, nil
		}
		c = parent
	}
}

// trustAt reads the trust file at a commit; nil when there is none.
func trustAt(c *object.Commit) (*Trust, error) {
	tree, err := c.Tree()
	if err != nil {
		return nil, err
	}
	f, err := tree.File(TrustFile)
	if errors.Is(err, object.ErrFileNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	data, err := f.Contents()
	if err != nil {
		return nil, err
	}
	source := path.Join(TrustFile) + " at " + short(c.Hash.String())
	t, err := ParseTrust(source, []byte(data))
	if err != nil {
		return nil, fail(ErrUntrusted, "%v; refused", err)
	}
	return t, nil
}
