package manifest

import (
	"context"
	"errors"
	"sync"

	git "github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Follower reads what a hospital should run at the head of the repo's
// branch, again and again: the agent's view of the manifest. It keeps the
// objects it fetched in memory, so that each read sends only what is new
// (nothing, most of the time). Safe for concurrent use.
type Follower struct {
	r    *Repo
	mu   sync.Mutex
	repo *git.Repository
}

// Follow returns a Follower of the repo's branch.
func (r *Repo) Follow() *Follower { return &Follower{r: r} }

// Head is what a hospital's folder says at the head of the branch.
type Head struct {
	// Commit is the head ("" for a remote without commits).
	Commit string
	// Release is the hospital's release there: nil when it has no folder.
	Release *Release
	// Provenance is what was checked of the history that leads to it.
	Provenance *Provenance
}

// Read fetches the branch and reads hospital id's folder at its head with
// ReadRelease, which checks the content: both files there, the image
// pinned by digest (never a tag: ErrTagged), release.yaml and
// kustomization.yaml in agreement. A fetch that fails is ErrUnreachable;
// content that does not check is ErrInvalid, with the commit in Head.
//
// applied is the commit the reader applied last ("": none): the head must
// descend from it, and the history after it must be trusted (checkTip);
// else Read returns ErrUntrusted, with the head's commit and release in
// Head so that the reader can say what it refused.
func (f *Follower) Read(ctx context.Context, id, applied string) (Head, error) {
	if err := CheckHospital(id); err != nil {
		return Head{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.repo == nil {
		repo, err := git.Init(memory.NewStorage(), nil)
		if err != nil {
			return Head{}, err
		}
		if _, err := repo.CreateRemote(&gitconfig.RemoteConfig{Name: git.DefaultRemoteName, URLs: []string{f.r.endpoint.String()}}); err != nil {
			return Head{}, err
		}
		f.repo = repo
	}
	remoteRef := plumbing.NewRemoteReferenceName(git.DefaultRemoteName, f.r.branch.Short())
	err := f.repo.FetchContext(ctx, &git.FetchOptions{
		RemoteName: git.DefaultRemoteName,
		RefSpecs:   []gitconfig.RefSpec{gitconfig.RefSpec("+" + f.r.branch.String() + ":" + remoteRef.String())},
		Auth:       f.r.auth,
		Tags:       git.NoTags,
		Force:      true,
	})
	switch {
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		return Head{}, nil
	case err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate):
		return Head{}, fail(ErrUnreachable, "fetch %s (branch %s): %w", f.r.url, f.r.branch.Short(), err)
	}
	ref, err := f.repo.Reference(remoteRef, true)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return Head{}, fail(ErrUnreachable, "fetch %s: no branch %s", f.r.url, f.r.branch.Short())
	}
	if err != nil {
		return Head{}, err
	}
	h := Head{Commit: ref.Hash().String()}
	commit, err := f.repo.CommitObject(ref.Hash())
	if err != nil {
		return h, err
	}
	h.Release, err = releaseAt(commit, id)
	if err != nil {
		return h, err
	}
	h.Provenance, err = checkTip(f.repo, f.r.anchor, plumbing.NewHash(applied), ref.Hash(), id)
	return h, err
}
