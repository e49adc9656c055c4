// Package agent is the hospital's end of the loop for a hospital without
// Kubernetes (ward agent): it follows the manifest repo and serves the
// signed model that the hospital's folder there pins.
//
// At each poll (and at once on POST /agent/refresh, a Git host's push
// webhook) it fetches the repo and reads the hospital's release. When the
// digest differs from the one it serves, it verifies the image's signature,
// pulls it by digest (checking every blob against its digest), unpacks the
// serving binary and the model for this host's platform, starts that server
// on a private loopback port, waits for its /readyz, switches its stable
// front endpoint (a reverse proxy) to it, and stops the old server once the
// requests it was given have finished. A failure at any step keeps the
// current version serving; GET /agent/status and the metrics on
// /agent/metrics say what runs, since when, and what failed where.
//
// The versions it unpacked stay on disk (the last few), with a record of
// the current one written once it is ready: an agent started again serves
// that version at once, before its first poll, without the network.
//
// The servers' prediction log (their stdout, one JSON line per prediction)
// goes to one writer, a whole line at a time, whichever server wrote it:
// the agent's stdout by default, which the hospital keeps and drops on SFTP
// for feedback.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/wardml/ward/models/trained"
	"github.com/wardml/ward/tools/manifest"
	"github.com/wardml/ward/tools/registry"
)

// The steps of following the manifest that can fail; each failure keeps
// the current version serving and is counted under its step.
const (
	// StepFetch: the manifest repo could not be fetched.
	StepFetch = "fetch"
	// StepManifest: the hospital's folder does not check, or is gone.
	StepManifest = "manifest"
	// StepTag: the folder names the image by tag, not by digest.
	StepTag = "tag"
	// StepTrust: the manifest's history is not trusted: the commit that
	// decides the hospital's release is unsigned or signed by a key the
	// trust file does not list, the trust file changed without a listed
	// key's signature, or the branch no longer holds the commit applied
	// last (a force push).
	StepTrust = "trust"
	// StepVerify: the image is unsigned, signed by another key, or its
	// signed content is not what the folder says (digest, hospital,
	// version); or the registry could not be asked.
	StepVerify = "verify"
	// StepPull: the registry could not be read, served a blob that does
	// not match its digest, or has no image for this platform.
	StepPull = "pull"
	// StepDowngrade: the release's model is older than the one serving,
	// and the commit that pins it is neither a revert nor a deploy with a
	// Ward-Allow-Downgrade trailer.
	StepDowngrade = "downgrade"
	// StepUnpack: a layer that is not what ward builds (an entry that
	// leaves its folder, a link), no server or model in it, or the disk.
	StepUnpack = "unpack"
	// StepStart: the server did not start, or exited before it was ready
	// (a model it refuses: exit code 2).
	StepStart = "start"
	// StepReady: the server was not ready in time, or serves another
	// hospital's or image's model.
	StepReady = "ready"
	// StepRestore: the version recorded on disk could not be served again
	// at start (its files changed).
	StepRestore = "restore"
	// StepCrash: the server that was serving exited by itself; the agent
	// starts it again.
	StepCrash = "crash"
)

// Steps lists every step, in the order a switch goes through them.
var Steps = []string{StepFetch, StepManifest, StepTag, StepTrust, StepVerify, StepPull, StepDowngrade, StepUnpack, StepStart, StepReady, StepRestore, StepCrash}

// Agent follows one hospital's folder of the manifest repo and serves its
// model.
type Agent struct {
	hospital string
	repoURL  string
	follower *manifest.Follower
	verify   manifest.Verifier
	client   *registry.Client
	store    *store
	log      *slog.Logger
	metrics  *metrics

	poll, readyTimeout, drainTimeout time.Duration
	secret                           string
	environ                          []string
	predictions, serverLog           *lines
	front                            frontSettings

	// current is the server the front endpoint sends requests to.
	current atomic.Pointer[backend]
	// retiring counts the old servers still draining.
	retiring sync.WaitGroup
	refresh  chan struct{}

	// applied is the manifest commit applied last (state kept in the
	// data folder): the next head must descend from it. Only the follow
	// loop uses it.
	applied string
	// warned: the agent said that the manifest has no trust file.
	warned bool

	mu     sync.Mutex
	status Status
	// logged is when the last failure was logged.
	logged time.Time
}

// relog is how often a failure that repeats at every poll is logged.
const relog = 10 * time.Minute

// Option changes an Agent's settings.
type Option func(*settings)

type settings struct {
	data                             string
	poll, readyTimeout, drainTimeout time.Duration
	keep                             int
	secret                           string
	client                           *registry.Client
	environ                          []string
	predictions, serverLog           io.Writer
	log                              *slog.Logger
	maxModel                         int64
	front                            frontSettings
}

// WithData sets the folder of the unpacked versions and the current
// record (default .ward/agent/<hospital>).
func WithData(dir string) Option { return func(s *settings) { s.data = dir } }

// WithPoll sets how often the manifest repo is fetched (default 30s).
func WithPoll(d time.Duration) Option { return func(s *settings) { s.poll = d } }

// WithReadyTimeout bounds the wait for a new server's /readyz (default
// 30s).
func WithReadyTimeout(d time.Duration) Option { return func(s *settings) { s.readyTimeout = d } }

// WithDrainTimeout bounds the wait for an old server's requests to finish
// before it is stopped, and for it to stop (default 30s).
func WithDrainTimeout(d time.Duration) Option { return func(s *settings) { s.drainTimeout = d } }

// WithKeep sets how many unpacked versions stay on disk, the current one
// included (default 3, at least 2: the current and the one before).
func WithKeep(n int) Option { return func(s *settings) { s.keep = n } }

// WithWebhookSecret makes POST /agent/refresh require the secret
// (WARD_AGENT_WEBHOOK_SECRET); see Handler.
func WithWebhookSecret(secret string) Option { return func(s *settings) { s.secret = secret } }

// WithRegistry sets how images are pulled (default registry.NewClient()).
func WithRegistry(c *registry.Client) Option { return func(s *settings) { s.client = c } }

// WithEnviron sets the environment the servers' settings are taken from
// (default os.Environ()); see serverEnv for what they receive of it.
func WithEnviron(env []string) Option { return func(s *settings) { s.environ = env } }

// WithPredictionLog sets where the servers' prediction log goes (default
// os.Stdout).
func WithPredictionLog(w io.Writer) Option { return func(s *settings) { s.predictions = w } }

// WithServerLog sets where the servers' own logs go (default os.Stderr).
func WithServerLog(w io.Writer) Option { return func(s *settings) { s.serverLog = w } }

// WithLogger sets the agent's logger (default: none).
func WithLogger(l *slog.Logger) Option { return func(s *settings) { s.log = l } }

// WithMaxModelBytes bounds what a version unpacks under /models/ (default
// trained.MaxModelBytes, 256 MiB): a larger image is refused at the unpack
// step before more than that reaches the disk.
func WithMaxModelBytes(n int64) Option { return func(s *settings) { s.maxModel = n } }

// New returns the agent of hospital id, which follows repo and refuses any
// image that verify does not accept. It reads and writes nothing but its
// data folder; Run does the rest.
func New(id string, repo *manifest.Repo, verify manifest.Verifier, opts ...Option) (*Agent, error) {
	if err := manifest.CheckHospital(id); err != nil {
		return nil, err
	}
	if repo == nil || verify == nil {
		return nil, errors.New("agent: want a manifest repo and an image verifier")
	}
	s := settings{
		data: filepath.Join(".ward", "agent", id), poll: 30 * time.Second, readyTimeout: 30 * time.Second,
		drainTimeout: 30 * time.Second, keep: 3, environ: os.Environ(), maxModel: trained.MaxModelBytes,
		predictions: os.Stdout, serverLog: os.Stderr, log: slog.New(slog.DiscardHandler),
		front: defaultFront(),
	}
	for _, o := range opts {
		o(&s)
	}
	switch {
	case s.poll <= 0 || s.readyTimeout <= 0 || s.drainTimeout <= 0:
		return nil, fmt.Errorf("agent: poll %s, ready timeout %s, drain timeout %s: want positive durations", s.poll, s.readyTimeout, s.drainTimeout)
	case s.keep < 2:
		return nil, fmt.Errorf("agent: keep %d versions: want at least 2 (the current one and the one before)", s.keep)
	case s.maxModel <= 0:
		return nil, fmt.Errorf("agent: max model bytes %d: want a positive size", s.maxModel)
	}
	if s.client == nil {
		s.client = registry.NewClient()
	}
	st, err := openStore(s.data, s.keep, v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}, s.maxModel)
	if err != nil {
		return nil, err
	}
	a := &Agent{
		hospital: id, repoURL: repo.URL(), follower: repo.Follow(), verify: verify, client: s.client, store: st,
		log: s.log.With("ward.hospital", id), metrics: newMetrics(id),
		poll: s.poll, readyTimeout: s.readyTimeout, drainTimeout: s.drainTimeout,
		secret: s.secret, environ: s.environ, front: s.front,
		predictions: &lines{w: s.predictions}, serverLog: &lines{w: s.serverLog},
		refresh: make(chan struct{}, 1),
	}
	a.predictions.failed, a.serverLog.failed = a.metrics.outputErrors.Inc, a.metrics.outputErrors.Inc
	if a.applied, err = readApplied(st.dir); err != nil {
		return nil, err
	}
	a.status = Status{Hospital: id, Manifest: ManifestStatus{URL: repo.URL(), Applied: a.applied}}
	return a, nil
}

// Run serves the front endpoint on ln and follows the manifest until ctx
// is done: it serves the version on disk at once, then polls. When ctx is
// done it stops polling, lets the front endpoint's requests finish, stops
// the servers and returns. It returns early only when ln fails.
func (a *Agent) Run(ctx context.Context, ln net.Listener) error {
	srv, ln := a.frontServer(ln)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	a.log.Info("agent listening", "event.action", "agent.start", "url.full", "http://"+ln.Addr().String(),
		"ward.manifest", a.repoURL, "ward.poll", a.poll.String(), "ward.data", a.store.dir)

	following, stopFollowing := context.WithCancel(context.Background())
	followed := make(chan struct{})
	go func() { defer close(followed); a.follow(following) }()

	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
		err = fmt.Errorf("agent: serve %s: %w", ln.Addr(), err)
	}
	// No switch starts once stopping began; the front's requests finish
	// on the server they went to; then the servers stop.
	stopFollowing()
	<-followed
	drain, cancel := context.WithTimeout(context.Background(), a.drainTimeout)
	defer cancel()
	if serr := srv.Shutdown(drain); serr != nil {
		srv.Close()
	}
	if b := a.current.Swap(nil); b != nil {
		a.retire(b)
	}
	a.retiring.Wait()
	a.log.Info("agent stopped", "event.action", "agent.stop")
	return err
}

// Refresh asks for a poll now (what POST /agent/refresh does). Requests
// that come while one is pending make one poll.
func (a *Agent) Refresh() {
	select {
	case a.refresh <- struct{}{}:
	default:
	}
}

// follow restores the version on disk, then polls every a.poll (or when
// asked), and restarts the server that serves if it exits by itself.
func (a *Agent) follow(ctx context.Context) {
	if rec, err := a.store.readCurrent(); err != nil {
		a.failed(&stepError{step: StepRestore, err: err})
	} else if rec != nil {
		a.restore(ctx, rec)
	}
	next := time.NewTimer(0)
	defer next.Stop()
	for {
		var exited <-chan struct{}
		b := a.current.Load()
		if b != nil {
			exited = b.exited
		}
		select {
		case <-ctx.Done():
			return
		case <-exited:
			a.crashed(ctx, b)
			continue
		case <-next.C:
		case <-a.refresh:
		}
		a.pollOnce(ctx)
		next.Reset(a.poll)
	}
}

// pollOnce reads the manifest and moves to what it says, recording how it
// went.
func (a *Agent) pollOnce(ctx context.Context) {
	start := time.Now()
	err := a.sync(ctx)
	a.metrics.pollDuration.Observe(time.Since(start).Seconds())
	if ctx.Err() != nil {
		return // stopping: a switch cut short is no failure
	}
	a.mu.Lock()
	a.status.LastPoll = start.UTC()
	a.mu.Unlock()
	if err != nil {
		a.failed(err)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status.LastSuccess = time.Now().UTC()
	a.status.InSync = a.status.Serving != nil && a.status.Manifest.Release != nil && a.status.Serving.Digest == a.status.Manifest.Release.Digest
	if a.status.InSync {
		a.status.Refused = nil
	}
	a.metrics.lastSuccess.Set(float64(a.status.LastSuccess.UnixMilli()) / 1e3)
	a.metrics.inSync.Set(boolGauge(a.status.InSync))
}

// sync reads the hospital's release at the manifest's head and, when its
// history is trusted and it pins another digest than the one serving,
// switches to it. A head it took is the commit applied last from then on.
func (a *Agent) sync(ctx context.Context) error {
	head, err := a.follower.Read(ctx, a.hospital, a.applied)
	if errors.Is(err, manifest.ErrUnreachable) {
		// What was read last still stands.
		return &stepError{step: StepFetch, err: err}
	}
	a.mu.Lock()
	a.status.Manifest.Commit, a.status.Manifest.Release, a.status.Manifest.Provenance = head.Commit, head.Release, head.Provenance
	a.mu.Unlock()
	digest := ""
	if head.Release != nil {
		digest = head.Release.Digest
	}
	switch {
	case errors.Is(err, manifest.ErrUntrusted):
		return &stepError{step: StepTrust, commit: head.Commit, digest: digest, err: fmt.Errorf("at %s: %w", short(head.Commit), err)}
	case errors.Is(err, manifest.ErrTagged):
		return &stepError{step: StepTag, commit: head.Commit, err: fmt.Errorf("at %s: %w", short(head.Commit), err)}
	case err != nil:
		return &stepError{step: StepManifest, commit: head.Commit, err: fmt.Errorf("at %s: %w", short(head.Commit), err)}
	}
	if head.Provenance != nil && !head.Provenance.Trusted && !a.warned {
		a.warned = true
		a.log.Warn("THE MANIFEST REPO HAS NO TRUST FILE: anyone who can push to it decides what this hospital runs. Write one (ward manifest init --trust FILE) or set WARD_MANIFEST_TRUST; see the README's trust section",
			"event.action", "agent.untrusted", "ward.commit", head.Commit, "ward.manifest", a.repoURL)
	}
	if err := a.syncTo(ctx, head); err != nil {
		return err
	}
	if head.Commit != "" && head.Commit != a.applied {
		if err := writeApplied(a.store.dir, head.Commit); err != nil {
			a.log.Error("the manifest commit applied was not recorded: a restarted agent checks the history from the one before", "error", err)
		}
		a.applied = head.Commit
		a.mu.Lock()
		a.status.Manifest.Applied = head.Commit
		a.mu.Unlock()
	}
	return nil
}

// syncTo moves to the release of a trusted head, if it is not serving.
func (a *Agent) syncTo(ctx context.Context, head manifest.Head) error {
	cur := a.current.Load()
	rel := head.Release
	switch {
	case rel == nil && cur != nil:
		return &stepError{step: StepManifest, commit: head.Commit, err: fmt.Errorf("at %s: %s/ is gone from the manifest; the agent keeps serving %s (stop the agent to stop serving)", short(head.Commit), manifest.HospitalDir(a.hospital), cur.version.Version)}
	case rel == nil, cur != nil && cur.version.Digest == rel.Digest:
		return nil
	}
	return a.switchTo(ctx, head)
}

// switchTo verifies, pulls, unpacks and starts the release of head, and
// switches the front endpoint to it once it is ready.
func (a *Agent) switchTo(ctx context.Context, head manifest.Head) error {
	rel := head.Release
	start := time.Now()
	// refuse reports err at step, or at the step err names itself.
	refuse := func(step string, err error) error {
		var se *stepError
		if errors.As(err, &se) {
			step, err = se.step, se.err
		}
		return &stepError{step: step, digest: rel.Digest, commit: head.Commit, err: fmt.Errorf("%s (%s): %w", rel.Image, rel.Version, err)}
	}
	a.log.Info("new release in the manifest", "event.action", "agent.switch", "ward.commit", head.Commit,
		"ward.model.version", rel.Version, "ward.model.digest", rel.Digest)
	img, err := a.verify(ctx, rel.Image)
	if err != nil {
		return refuse(StepVerify, err)
	}
	switch {
	case img.Digest != rel.Digest:
		return refuse(StepVerify, fmt.Errorf("the verified image has digest %s", img.Digest))
	case img.Hospital != a.hospital:
		return refuse(StepVerify, fmt.Errorf("the signed image is hospital %q's, not %q's", img.Hospital, a.hospital))
	case img.Version != rel.Version:
		return refuse(StepVerify, fmt.Errorf("%s says version %q, the signed image %q", manifest.ReleaseFile, rel.Version, img.Version))
	}
	ref, err := a.client.ParseDigest(img.Ref)
	if err != nil {
		return refuse(StepPull, err)
	}
	v, err := a.store.get(ctx, ref, img.Version, a.client.Remote(ctx))
	if err != nil {
		return refuse(StepPull, err)
	}
	if err := a.checkDowngrade(v, head.Provenance); err != nil {
		return refuse(StepDowngrade, err)
	}
	b, err := a.start(ctx, v)
	if err != nil {
		return refuse(StepStart, err)
	}
	a.promote(b, head.Commit, time.Now(), start)
	return nil
}

// restore serves the version of the current record again, from disk.
func (a *Agent) restore(ctx context.Context, rec *record) {
	v, err := a.store.intact(rec.Digest)
	if err == nil {
		var b *backend
		if b, err = a.start(ctx, v); err == nil {
			a.promote(b, rec.Commit, rec.Since, time.Time{})
			a.log.Info("serving the version on disk", "event.action", "agent.restore", "ward.model.version", v.Version, "ward.model.digest", v.Digest)
			return
		}
	}
	if ctx.Err() == nil {
		a.failed(&stepError{step: StepRestore, digest: rec.Digest, err: fmt.Errorf("%s (%s) on disk: %w; the next poll pulls it again", rec.Image, rec.Version, err)})
	}
}

// crashed starts the version that was serving again when its server
// exited by itself.
func (a *Agent) crashed(ctx context.Context, b *backend) {
	if !a.current.CompareAndSwap(b, nil) {
		return
	}
	a.failed(&stepError{step: StepCrash, digest: b.version.Digest, err: fmt.Errorf("ward-serve of %s (pid %d) exited by itself: %v%s; starting it again", b.version.Version, b.pid, b.exitErr, b.tail.summary())})
	a.mu.Lock()
	a.status.Serving, a.status.InSync = nil, false
	a.mu.Unlock()
	a.metrics.serving.Reset()
	a.metrics.inSync.Set(0)
	b.transport.CloseIdleConnections()
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Second): // a server that crashes at once does not spin
	}
	rec, err := a.store.readCurrent()
	if err == nil && rec != nil {
		a.restore(ctx, rec)
	}
}

// promote switches the front endpoint to b and retires the server it
// replaces. since is when b's version began serving; started, when the
// switch to it began (zero when it serves again from disk). The status
// changes with the switch, under one lock: whoever sees the new version
// answer sees it in the status too.
func (a *Agent) promote(b *backend, commit string, since, started time.Time) {
	v := b.version
	rec := &record{Hospital: a.hospital, Image: v.Image, Digest: v.Digest, Version: v.Version, Since: since.UTC(), Commit: commit}
	if err := a.store.writeCurrent(rec); err != nil {
		a.log.Error("the current version's record was not written: a restarted agent will not serve it before its first poll", "error", err)
	}
	a.mu.Lock()
	old := a.current.Swap(b)
	from := ""
	if old != nil {
		from = old.version.Version
	}
	a.status.Serving = &Serving{Version: v.Version, Digest: v.Digest, Image: v.Image, Since: rec.Since, Commit: commit, Addr: b.addr, PID: b.pid}
	if !started.IsZero() {
		took := time.Since(started)
		a.metrics.switchDuration.Observe(took.Seconds())
		a.status.LastSwitch = &Switch{From: from, To: v.Version, Digest: v.Digest, At: time.Now().UTC(), Took: took.Round(time.Millisecond).String()}
	}
	a.mu.Unlock()
	a.metrics.serving.Reset()
	a.metrics.serving.WithLabelValues(v.Version, v.Digest).Set(1)
	a.metrics.since.Set(float64(rec.Since.UnixMilli()) / 1e3)
	a.metrics.switches.Inc()
	if old != nil {
		a.retire(old)
	}
	a.log.Info("serving", "event.action", "agent.serve", "event.outcome", "success", "ward.model.version", v.Version,
		"ward.model.digest", v.Digest, "ward.model.previous_version", from, "ward.commit", commit, "server.address", b.addr, "process.pid", b.pid)
	keep := []string{v.Digest}
	if old != nil {
		keep = append(keep, old.version.Digest)
	}
	if err := a.store.prune(keep); err != nil {
		a.log.Warn("old versions not removed", "error", err)
	}
}

// retire stops b in the background once the requests it was given finish.
func (a *Agent) retire(b *backend) {
	a.retiring.Go(func() {
		if err := b.stop(a.drainTimeout); err != nil {
			a.log.Warn("old server stopped hard", "error", err, "ward.model.version", b.version.Version, "process.pid", b.pid)
		}
	})
}

// failed records a failure in the status, the metrics and the log.
func (a *Agent) failed(err error) {
	se, ok := err.(*stepError)
	if !ok {
		se = &stepError{step: StepManifest, err: err}
	}
	f := &Failure{Step: se.step, Message: se.err.Error(), At: time.Now().UTC(), Digest: se.digest, Commit: se.commit}
	a.metrics.failures.WithLabelValues(se.step).Inc()
	a.mu.Lock()
	// The same failure poll after poll is logged again only now and then;
	// the metrics count each.
	last := a.status.LastError
	news := last == nil || last.Step != f.Step || last.Message != f.Message || f.At.Sub(a.logged) >= relog
	if news {
		a.logged = f.At
	}
	a.status.LastError = f
	refusal := se.step == StepTrust || se.step == StepDowngrade
	if refusal || se.digest != "" && se.step != StepRestore && se.step != StepCrash {
		a.status.Refused = f
	}
	a.status.InSync = false
	cur := a.status.Serving
	a.mu.Unlock()
	a.metrics.inSync.Set(0)
	if !news {
		return
	}
	serving := "nothing"
	if cur != nil {
		serving = cur.Version + " (" + cur.Digest + ")"
	}
	if refusal {
		a.log.Error("agent refused the manifest's head; what was serving keeps serving, the next poll tries again", "event.action", "agent.refuse", "event.outcome", "failure",
			"event.reason", se.err.Error(), "error", se.err, "ward.step", se.step, "ward.model.digest", se.digest, "ward.commit", se.commit, "ward.serving", serving)
		return
	}
	a.log.Error("agent step failed; what was serving keeps serving", "event.action", "agent."+se.step, "event.outcome", "failure",
		"error", se.err, "ward.step", se.step, "ward.model.digest", se.digest, "ward.commit", se.commit, "ward.serving", serving)
}

// stepError is a failure at one step.
type stepError struct {
	step   string
	digest string
	commit string
	err    error
}

func (e *stepError) Error() string { return e.step + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// serverEnv is the environment of a server: the model server's own
// settings found in the agent's environment (WARD_ID_FIELD,
// WARD_HASH_INPUTS, WARD_PREDICTIONS_DB, ...), but not those the agent
// sets itself (the model, the address, the digest) nor a prediction log
// file, which two servers side by side would both rotate; plus the log
// settings, and nothing else (the agent's credentials stay with it).
func (a *Agent) serverEnv(digest string) []string {
	own := []string{"WARD_MODEL", "PORT", "WARD_MODEL_DIGEST", "WARD_PREDICTION_LOG"}
	pass := append([]string{"WARD_LOG_LEVEL", "TZ"}, trained.ServerEnv...)
	env := []string{"WARD_MODEL_DIGEST=" + digest, "WARD_LOG_FORMAT=json"}
	for _, kv := range a.environ {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains(pass, k) && !slices.Contains(own, k) {
			env = append(env, kv)
		}
	}
	return env
}
