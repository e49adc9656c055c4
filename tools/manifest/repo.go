package manifest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/memfs"
	git "github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Repo is a manifest repo at a Git remote. Each command clones it into
// memory, commits there and pushes, so two commands at once never share a
// working copy, and the remote (a Git host, or a bare repo on disk) is the
// only state.
type Repo struct {
	url      string
	endpoint *transport.Endpoint
	branch   plumbing.ReferenceName
	auth     transport.AuthMethod
	author   *object.Signature
	signer   git.Signer
	anchor   *Trust
	verify   Verifier
	attempts int
	log      *slog.Logger
}

type settings struct {
	branch     string
	sshKey     string
	knownHosts string
	token      string
	signKey    string
	trust      string
	author     string
	verify     Verifier
	attempts   int
	log        *slog.Logger
}

// Option changes how a Repo talks to its remote and what it commits.
type Option func(*settings)

// WithBranch names the branch of the manifest (default main).
func WithBranch(b string) Option { return func(s *settings) { s.branch = b } }

// WithSSHKey authenticates to an SSH remote with a private key file
// (without a passphrase). Without it, the keys of ssh-agent
// (SSH_AUTH_SOCK) are used.
func WithSSHKey(file string) Option { return func(s *settings) { s.sshKey = file } }

// WithKnownHosts checks an SSH remote's host key against a known_hosts
// file. Without it: SSH_KNOWN_HOSTS, ~/.ssh/known_hosts and
// /etc/ssh/ssh_known_hosts. An unknown host is refused, never trusted.
func WithKnownHosts(file string) Option { return func(s *settings) { s.knownHosts = file } }

// WithToken authenticates to an HTTPS remote with a token (HTTP basic
// auth, user from the URL, else "ward").
func WithToken(token string) Option { return func(s *settings) { s.token = token } }

// WithSignKey signs every commit with an OpenPGP or SSH private key file
// (without a passphrase): an armored OpenPGP key, or an OpenSSH key
// (git's gpg.format=ssh).
func WithSignKey(file string) Option { return func(s *settings) { s.signKey = file } }

// WithTrust pins the keys allowed to write the manifest to a trust file on
// disk (WARD_MANIFEST_TRUST), instead of the repo's own base/trust.txt:
// every commit that decides what a hospital runs, and every change of the
// repo's trust file, must be signed by one of its keys.
func WithTrust(file string) Option { return func(s *settings) { s.trust = file } }

// WithAuthor sets the author and committer, "Name <email>". Default:
// GIT_AUTHOR_NAME and GIT_AUTHOR_EMAIL, else "ward <ward@localhost>".
func WithAuthor(nameEmail string) Option { return func(s *settings) { s.author = nameEmail } }

// WithVerifier sets how a deploy verifies an image's signature. Deploy
// refuses to run without one.
func WithVerifier(v Verifier) Option { return func(s *settings) { s.verify = v } }

// WithAttempts bounds how often a push is tried when the remote moved in
// between (default 5).
func WithAttempts(n int) Option { return func(s *settings) { s.attempts = n } }

// WithLogger logs retries and pushes.
func WithLogger(l *slog.Logger) Option { return func(s *settings) { s.log = l } }

// New returns the manifest repo at url: a Git URL (ssh://, https://,
// file://, or user@host:path) or the path of a repository on disk.
func New(url string, opts ...Option) (*Repo, error) {
	s := settings{branch: "main", attempts: 5, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&s)
	}
	if url == "" {
		return nil, fail(ErrUsage, "no manifest repo: set WARD_MANIFEST_REPO or --manifest-repo to a Git URL or path")
	}
	ep, err := transport.NewEndpoint(url)
	if err != nil {
		return nil, fail(ErrUsage, "manifest repo %q: %w", url, err)
	}
	if ep.Protocol == "file" {
		if ep.Path, err = filepath.Abs(ep.Path); err != nil {
			return nil, err
		}
	}
	if ep.Password != "" {
		return nil, fail(ErrUsage, "manifest repo: a password in the URL is not supported: use WARD_MANIFEST_TOKEN")
	}
	r := &Repo{
		url:      url,
		endpoint: ep,
		branch:   plumbing.NewBranchReferenceName(s.branch),
		verify:   s.verify,
		attempts: max(s.attempts, 1),
		log:      s.log,
	}
	if err := plumbing.NewBranchReferenceName(s.branch).Validate(); err != nil || s.branch == "" {
		return nil, fail(ErrUsage, "branch %q: not a branch name", s.branch)
	}
	if r.auth, err = authFor(ep, s); err != nil {
		return nil, fail(ErrUsage, "manifest repo %s: %w", url, err)
	}
	if r.author, err = identity(s.author); err != nil {
		return nil, fail(ErrUsage, "%w", err)
	}
	if s.signKey != "" {
		if r.signer, err = LoadSigner(s.signKey); err != nil {
			return nil, fail(ErrUsage, "%w", err)
		}
	}
	if s.trust != "" {
		if r.anchor, err = ReadTrust(s.trust); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func authFor(ep *transport.Endpoint, s settings) (transport.AuthMethod, error) {
	switch ep.Protocol {
	case "ssh":
		user := ep.User
		if user == "" {
			user = "git"
		}
		var (
			auth   transport.AuthMethod
			helper *gitssh.HostKeyCallbackHelper
		)
		if s.sshKey != "" {
			k, err := gitssh.NewPublicKeysFromFile(user, s.sshKey, "")
			if err != nil {
				return nil, fmt.Errorf("SSH key %s: %w", s.sshKey, err)
			}
			auth, helper = k, &k.HostKeyCallbackHelper
		} else {
			a, err := gitssh.NewSSHAgentAuth(user)
			if err != nil {
				return nil, fmt.Errorf("no SSH key (WARD_MANIFEST_SSH_KEY) and no ssh-agent: %w", err)
			}
			auth, helper = a, &a.HostKeyCallbackHelper
		}
		var files []string
		if s.knownHosts != "" {
			files = []string{s.knownHosts}
		}
		db, err := gitssh.NewKnownHostsDb(files...)
		if err != nil {
			return nil, fmt.Errorf("known_hosts: %w", err)
		}
		port := ep.Port
		if port == 0 {
			port = 22
		}
		helper.HostKeyCallback = db.HostKeyCallback()
		helper.HostKeyAlgorithms = db.HostKeyAlgorithms(net.JoinHostPort(ep.Host, strconv.Itoa(port)))
		return auth, nil
	case "http", "https":
		if s.token == "" {
			return nil, nil
		}
		user := ep.User
		if user == "" {
			user = "ward"
		}
		return &githttp.BasicAuth{Username: user, Password: s.token}, nil
	}
	return nil, nil
}

// identity reads "Name <email>", else the git environment, else ward's.
func identity(s string) (*object.Signature, error) {
	if s == "" {
		name, email := os.Getenv("GIT_AUTHOR_NAME"), os.Getenv("GIT_AUTHOR_EMAIL")
		if name == "" || email == "" {
			return &object.Signature{Name: "ward", Email: "ward@localhost"}, nil
		}
		return &object.Signature{Name: name, Email: email}, nil
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name == "" {
		return nil, fmt.Errorf("author %q: want \"Name <email>\"", s)
	}
	return &object.Signature{Name: a.Name, Email: a.Address}, nil
}

// checkout is a clone in memory of the remote's branch.
type checkout struct {
	repo *git.Repository
	wt   *git.Worktree
	fs   billy.Filesystem
	// base is the remote's head the work builds on (zero: empty remote).
	base plumbing.Hash
}

func (r *Repo) clone(ctx context.Context) (*checkout, error) {
	fs := memfs.New()
	repo, err := git.CloneContext(ctx, memory.NewStorage(), fs, &git.CloneOptions{
		URL:           r.endpoint.String(),
		Auth:          r.auth,
		ReferenceName: r.branch,
		SingleBranch:  true,
		Tags:          git.NoTags,
	})
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return r.emptyCheckout()
	}
	if err != nil {
		return nil, fail(ErrUnreachable, "clone %s (branch %s): %w", r.url, r.branch.Short(), err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil, err
	}
	head, err := repo.Head()
	if err != nil {
		return nil, err
	}
	return &checkout{repo: repo, wt: wt, fs: fs, base: head.Hash()}, nil
}

// emptyCheckout is the checkout of a remote without commits.
func (r *Repo) emptyCheckout() (*checkout, error) {
	fs := memfs.New()
	repo, err := git.Init(memory.NewStorage(), fs)
	if err != nil {
		return nil, err
	}
	if _, err := repo.CreateRemote(&gitconfig.RemoteConfig{Name: git.DefaultRemoteName, URLs: []string{r.endpoint.String()}}); err != nil {
		return nil, err
	}
	if err := repo.Storer.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, r.branch)); err != nil {
		return nil, err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil, err
	}
	return &checkout{repo: repo, wt: wt, fs: fs}, nil
}

// head is the checkout's current commit (zero before the first).
func (c *checkout) head() plumbing.Hash {
	ref, err := c.repo.Head()
	if err != nil {
		return plumbing.ZeroHash
	}
	return ref.Hash()
}

// refresh fetches the remote branch and, when it moved from the base,
// resets the checkout to it. It reports whether it moved.
func (r *Repo) refresh(ctx context.Context, c *checkout) (bool, error) {
	remoteRef := plumbing.NewRemoteReferenceName(git.DefaultRemoteName, r.branch.Short())
	err := c.repo.FetchContext(ctx, &git.FetchOptions{
		RemoteName: git.DefaultRemoteName,
		RefSpecs:   []gitconfig.RefSpec{gitconfig.RefSpec("+" + r.branch.String() + ":" + remoteRef.String())},
		Auth:       r.auth,
		Tags:       git.NoTags,
		Force:      true,
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) && !errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return false, fail(ErrUnreachable, "fetch %s: %w", r.url, err)
	}
	ref, err := c.repo.Reference(remoteRef, true)
	if err != nil {
		return false, nil
	}
	if ref.Hash() == c.base {
		return false, nil
	}
	if err := c.repo.Storer.SetReference(plumbing.NewHashReference(r.branch, ref.Hash())); err != nil {
		return false, err
	}
	if err := c.wt.Reset(&git.ResetOptions{Commit: ref.Hash(), Mode: git.HardReset}); err != nil {
		return false, fmt.Errorf("reset to %s: %w", short(ref.Hash().String()), err)
	}
	c.base = ref.Hash()
	return true, nil
}

// write sets (data != nil) or removes (data == nil) a file and stages it.
func (c *checkout) write(name string, data []byte) error {
	if data == nil {
		if _, err := c.fs.Stat(name); err != nil {
			return nil
		}
		_, err := c.wt.Remove(name)
		return err
	}
	if err := c.fs.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	f, err := c.fs.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	_, err = c.wt.Add(name)
	return err
}

// readFile returns a file of the working copy.
func (c *checkout) readFile(name string) ([]byte, error) {
	f, err := c.fs.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// commit records the staged changes with the repo's identity and signer.
func (r *Repo) commit(c *checkout, msg string, dryRun bool) (plumbing.Hash, error) {
	now := time.Now()
	who := &object.Signature{Name: r.author.Name, Email: r.author.Email, When: now}
	opts := &git.CommitOptions{Author: who, Committer: who}
	if !dryRun {
		opts.Signer = r.signer
	}
	h, err := c.wt.Commit(msg, opts)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("commit: %w", err)
	}
	return h, nil
}

// Result is what a command did to the manifest repo.
type Result struct {
	Action   string `json:"action"`
	Hospital string `json:"hospital,omitempty"`
	// Status: committed, dry-run, or unchanged (nothing to do).
	Status string `json:"status"`
	// Reason says why nothing changed.
	Reason string `json:"reason,omitempty"`
	// Commits pushed (or, in a dry run, made and dropped), oldest first.
	Commits []string `json:"commits,omitempty"`
	// Release is what the hospital runs after the command; Previous before.
	Release  *Release `json:"release,omitempty"`
	Previous *Release `json:"previous,omitempty"`
	// Diff is the unified diff of the change (dry runs).
	Diff string `json:"diff,omitempty"`
	// Attempts is how many pushes it took.
	Attempts int `json:"attempts,omitempty"`
}

// The statuses of a Result.
const (
	StatusCommitted = "committed"
	StatusDryRun    = "dry-run"
	StatusUnchanged = "unchanged"
)

// publish runs change on a checkout of the remote's head and pushes the
// commits it made. When the push fails because the remote moved (another
// command pushed first), it fetches, resets and runs change again, with a
// jittered backoff, at most r.attempts times. It never force-pushes.
func (r *Repo) publish(ctx context.Context, dryRun bool, change func(*checkout) (*Result, error)) (*Result, error) {
	c, err := r.clone(ctx)
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		res, err := change(c)
		if err != nil || res.Status == StatusUnchanged {
			return res, err
		}
		head := c.head()
		for _, h := range r.commitsSince(c, head) {
			res.Commits = append(res.Commits, h.String())
		}
		if dryRun {
			res.Status = StatusDryRun
			res.Diff, err = diff(c, head)
			return res, err
		}
		pushErr := c.repo.PushContext(ctx, &git.PushOptions{
			RemoteName: git.DefaultRemoteName,
			RefSpecs:   []gitconfig.RefSpec{gitconfig.RefSpec(r.branch.String() + ":" + r.branch.String())},
			Auth:       r.auth,
		})
		if pushErr == nil {
			res.Status, res.Attempts = StatusCommitted, attempt
			r.log.Info("manifest pushed", "event.action", res.Action, "ward.hospital", res.Hospital, "ward.commit", head.String(), "ward.attempts", attempt)
			return res, nil
		}
		moved, err := r.refresh(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("push to %s: %v; then %w", r.url, pushErr, err)
		}
		if !moved {
			return nil, fail(ErrUnreachable, "push to %s: %w", r.url, pushErr)
		}
		if attempt == r.attempts {
			return nil, fmt.Errorf("push to %s: the remote moved under each of %d attempts (other deploys landing); nothing of this %s was pushed: run it again", r.url, attempt, res.Action)
		}
		wait := backoff(attempt)
		r.log.Info("manifest moved under the push, retrying", "event.action", res.Action, "ward.hospital", res.Hospital, "ward.attempt", attempt, "ward.wait", wait.String())
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// backoff is a full-jitter exponential wait: up to 100ms, 200ms, ... 3.2s.
func backoff(attempt int) time.Duration {
	ceiling := 100 * time.Millisecond << min(attempt-1, 5)
	return time.Duration(rand.Int64N(int64(ceiling))) + 10*time.Millisecond
}

// commitsSince lists the commits from the checkout's base to head, oldest
// first (the change makes a line of them).
func (r *Repo) commitsSince(c *checkout, head plumbing.Hash) []plumbing.Hash {
	var out []plumbing.Hash
	for h := head; !h.IsZero() && h != c.base; {
		out = append(out, h)
		commit, err := c.repo.CommitObject(h)
		if err != nil || len(commit.ParentHashes) == 0 {
			break
		}
		h = commit.ParentHashes[0]
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// diff is the unified diff from the checkout's base to head.
func diff(c *checkout, head plumbing.Hash) (string, error) {
	var from, to *object.Tree
	var err error
	if !c.base.IsZero() {
		if from, err = treeOf(c.repo, c.base); err != nil {
			return "", err
		}
	}
	if to, err = treeOf(c.repo, head); err != nil {
		return "", err
	}
	changes, err := object.DiffTree(from, to)
	if err != nil {
		return "", err
	}
	p, err := changes.Patch()
	if err != nil {
		return "", err
	}
	return p.String(), nil
}

func treeOf(repo *git.Repository, h plumbing.Hash) (*object.Tree, error) {
	c, err := repo.CommitObject(h)
	if err != nil {
		return nil, err
	}
	return c.Tree()
}

// timeline reads a hospital's timeline at the checkout's head.
func (c *checkout) timeline(id string) (*Timeline, error) {
	return readTimeline(c.repo, c.head(), id)
}

// initialized reports whether the checkout has ward's base/.
func (c *checkout) initialized() bool {
	_, err := c.fs.Stat(filepath.Join(BaseDir, KustomizationFile))
	return err == nil
}

func (r *Repo) notInitialized() error {
	return fail(ErrNotInitialized, "%s has no %s/%s: run ward manifest init first", r.url, BaseDir, KustomizationFile)
}

// History returns a hospital's timeline at the remote's head, once its
// history checks (checkTip: a command keeps no state, so from the first
// commit).
func (r *Repo) History(ctx context.Context, hospital string) (*Timeline, error) {
	if err := CheckHospital(hospital); err != nil {
		return nil, err
	}
	c, err := r.clone(ctx)
	if err != nil {
		return nil, err
	}
	var p *Provenance
	if !c.base.IsZero() {
		if p, err = checkTip(c.repo, r.anchor, plumbing.ZeroHash, c.base, hospital); err != nil {
			return nil, err
		}
	}
	t, err := c.timeline(hospital)
	if t != nil {
		t.Provenance = p
	}
	return t, err
}

// trusted checks the history of the checkout's head for hospital id
// (checkTip, from the first commit) before a command builds on it, and that
// the commit the command makes will be signed by a key the trust lists:
// else every reader would refuse it.
func (r *Repo) trusted(c *checkout, id, action string) (*Provenance, error) {
	if c.base.IsZero() {
		return nil, nil
	}
	p, err := checkTip(c.repo, r.anchor, plumbing.ZeroHash, c.base, id)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w; nothing committed", action, id, err)
	}
	if !p.Trusted {
		return p, nil
	}
	trust := r.anchor
	if trust == nil {
		head, err := c.repo.CommitObject(c.base)
		if err != nil {
			return nil, err
		}
		if trust, err = trustAt(head); err != nil {
			return nil, err
		}
	}
	if s, ok := r.signer.(listable); !ok || !trust.Lists(s) {
		return nil, fail(ErrUsage, "%s %s: %s lists the keys allowed to write (%s), and this commit would not be signed by one of them, so every reader would refuse it: set WARD_MANIFEST_SIGN_KEY to one of their private keys; nothing committed", action, id, trust.Source, strings.Join(trust.Describe(), "; "))
	}
	return p, nil
}

// URL is where the repo is.
func (r *Repo) URL() string { return r.url }
