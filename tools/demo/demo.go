// Package demo runs ward's whole loop on one machine, on the embedded
// defaults of DESIGN.md, for `ward demo`: a synthetic group of hospitals
// drops encrypted extracts on ward's in-process SFTP server; ward ingests
// them into SQLite, trains one model per hospital beside the pooled
// baseline, packages and signs each with the model server as an OCI image
// in the in-process registry, and deploys it by a commit in a local bare
// manifest repo; one agent per hospital follows the repo and serves its
// model on a local port. Then the story goes on as it does in a hospital
// group: the hospitals ask for predictions; a new month of extracts
// arrives with the outcomes and the prediction logs; ward retrains, gates
// against production and deploys v2; a deliberately bad model reaches one
// hospital, feedback flags it, and a revert commit rolls it back.
//
// Every part is the real one that production uses (pipelines/ingest,
// train, tools/image, tools/manifest, tools/agent, pipelines/feedback);
// only the servers are the embedded defaults.
package demo

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"golang.org/x/crypto/ssh"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/sftpd"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/feedback"
	feedbackreport "github.com/wardml/ward/pipelines/feedback/report"
	"github.com/wardml/ward/pipelines/ingest"
	"github.com/wardml/ward/pipelines/ingest/decrypt"
	"github.com/wardml/ward/pipelines/ingest/fetch"
	"github.com/wardml/ward/pipelines/ingest/staging"
	"github.com/wardml/ward/pipelines/store"
	"github.com/wardml/ward/pipelines/synth"
	"github.com/wardml/ward/pipelines/train"
	trainreport "github.com/wardml/ward/pipelines/train/report"
	"github.com/wardml/ward/tools/agent"
	"github.com/wardml/ward/tools/heal"
	"github.com/wardml/ward/tools/image"
	"github.com/wardml/ward/tools/manifest"
	"github.com/wardml/ward/tools/registry"
	"github.com/wardml/ward/tools/signing"
	"github.com/wardml/ward/tools/site"
)

// Options say where and how the demo runs.
type Options struct {
	// Dir is the demo's folder; it is emptied first (it must be empty, or
	// an earlier demo's).
	Dir string
	// Hospitals and Months size the synthetic group (5 and 24).
	Hospitals, Months int
	// Bad is the hospital that gets the bad model (default lakeshore, else
	// the last one).
	Bad string
	// Servers are prebuilt model servers by platform; without them the
	// demo builds serving/cmd/ward-serve from the source in the working
	// folder, for this machine's platform.
	Servers map[string]string
	// Sample is the most cases each hospital asks predictions for, each
	// month (0: every case of the month).
	Sample int
	// Out tells the story; Log takes the parts' own logs.
	Out io.Writer
	Log *slog.Logger
}

// Line is one hospital in the summary.
type Line struct {
	Hospital string  `json:"hospital"`
	Version  string  `json:"version"`
	Digest   string  `json:"digest"`
	MAE      float64 `json:"mae"`
	// PooledMAE is the pooled baseline's MAE on the hospital's validation
	// window (0 without one).
	PooledMAE float64 `json:"pooled_mae,omitempty"`
	Endpoint  string  `json:"endpoint"`
}

// Summary is what the demo leaves.
type Summary struct {
	Hospitals []Line `json:"hospitals"`
	// Reports are the paths of the reports, by what they are.
	Reports map[string]string `json:"reports"`
	// Flagged are the hospitals feedback flagged, and RolledBack those
	// rolled back.
	Flagged    []string      `json:"flagged"`
	RolledBack []string      `json:"rolled_back"`
	Manifest   string        `json:"manifest_repo"`
	Elapsed    time.Duration `json:"elapsed_ns"`
}

const marker = ".ward-demo"

// imagesFile is what the demo's package step writes in a models folder,
// as ward package --output json does, and its deploy step reads.
const imagesFile = "images.json"

// Demo is a running demo; Run starts it, Close stops it.
type Demo struct {
	o     Options
	start time.Time
	step  int
	steps int

	hs        []*contract.Hospital
	plain     []*contract.Hospital // the hospitals' own view: the plaintext extracts
	group     string               // the encrypted group (synth's output)
	plainSFTP string
	dropbox   string

	sftp     *sftpd.Server
	src      *fetch.SFTP
	reg      *registry.Server
	client   *registry.Client
	key      *ecdsa.PrivateKey
	remote   string
	deployer *manifest.Repo
	// signKey signs the manifest's commits; keys/trust.txt lists it.
	signKey  string
	st       *store.Store
	hospital *store.Store
	stage    *staging.Store
	keys     *decrypt.Keys
	server   *image.Server

	agents map[string]*running
	// deployed is the digest each hospital should serve after the last
	// deploy or rollback.
	deployed map[string]string
	// artifacts are every model shipped, for feedback.
	artifacts []*models.Artifact
	v2        map[string]*train.Result
	summary   Summary
	closers   []func()
}

// running is one hospital's agent.
type running struct {
	agent *agent.Agent
	addr  string
	log   *lineBuffer
	done  chan error
}

// refresh asks the agent to poll now, as a Git host's push webhook would;
// before the agents start, there is none to ask.
func (r *running) refresh() {
	if r != nil {
		r.agent.Refresh()
	}
}

// Run runs the loop, and returns with the agents still serving: Close
// stops them. A cancelled ctx stops the run and everything it started.
func Run(ctx context.Context, o Options) (*Demo, *Summary, error) {
	if runtime.GOOS != "linux" {
		return nil, nil, fmt.Errorf("ward demo runs each hospital's model server natively, as the agent does on a hospital's Linux host: run it on Linux (this is %s)", runtime.GOOS)
	}
	if o.Hospitals == 0 {
		o.Hospitals = 5
	}
	if o.Months == 0 {
		o.Months = 24
	}
	if o.Months < 6 {
		return nil, nil, fmt.Errorf("--months %d: the demo needs at least 6 (training, validation, and two months that arrive later)", o.Months)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	d := &Demo{o: o, start: time.Now(), steps: 15, agents: map[string]*running{}, v2: map[string]*train.Result{}}
	d.summary.Reports = map[string]string{}
	err := d.run(ctx)
	d.summary.Elapsed = time.Since(d.start)
	if err != nil {
		d.Close()
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("interrupted: %w", ctx.Err())
		}
		return nil, nil, err
	}
	return d, &d.summary, nil
}

// Close stops the agents and the servers.
func (d *Demo) Close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
	d.closers = nil
}

func (d *Demo) run(ctx context.Context) error {
	months := d.monthsOf()
	last2, last := months[len(months)-2], months[len(months)-1]
	fmt.Fprintf(d.o.Out, "ward demo: the whole loop on embedded defaults, in %s\n\n", d.o.Dir)
	for _, s := range []struct {
		title string
		fn    func(context.Context) (string, error)
	}{
		{"synth", d.synth},
		{"services", d.services},
		{"ingest", func(ctx context.Context) (string, error) { return d.ingest(ctx, "extracts to "+months[len(months)-3]) }},
		{"train v1", func(ctx context.Context) (string, error) { return d.train(ctx, "v1") }},
		{"package v1", func(ctx context.Context) (string, error) {
			return d.pack(ctx, "v1", filepath.Join(d.o.Dir, "models", "v1"))
		}},
		{"deploy v1", func(ctx context.Context) (string, error) { return d.deploy(ctx, "v1") }},
		{"agents", d.startAgents},
		{"predict", func(ctx context.Context) (string, error) { return d.predict(ctx, last2) }},
		{"new month", func(ctx context.Context) (string, error) { return d.arrive(ctx, last2) }},
		{"train v2", func(ctx context.Context) (string, error) { return d.train(ctx, "v2") }},
		{"ship v2", d.shipV2},
		{"bad model", d.badModel},
		{"predict", func(ctx context.Context) (string, error) {
			s, err := d.predict(ctx, last)
			if err != nil {
				return "", err
			}
			a, err := d.arrive(ctx, last)
			return s + "; " + a, err
		}},
		{"feedback", d.feedback},
		{"site", d.site},
	} {
		if err := d.do(ctx, s.title, s.fn); err != nil {
			return err
		}
	}
	return d.finish(ctx)
}

// do runs one step and tells it.
func (d *Demo) do(ctx context.Context, title string, fn func(context.Context) (string, error)) error {
	d.step++
	start := time.Now()
	what, err := fn(ctx)
	if err != nil {
		fmt.Fprintf(d.o.Out, "%2d/%d %-10s FAILED: %v\n", d.step, d.steps, title, err)
		return fmt.Errorf("%s: %w", title, err)
	}
	fmt.Fprintf(d.o.Out, "%2d/%d %-10s %s (%s)\n", d.step, d.steps, title, what, time.Since(start).Round(10*time.Millisecond))
	return ctx.Err()
}

func (d *Demo) path(elem ...string) string {
	return filepath.Join(append([]string{d.o.Dir}, elem...)...)
}

// monthsOf lists the months of the group, YYYY-MM.
func (d *Demo) monthsOf() []string {
	start, _ := synth.ParseMonth(synth.DefaultStart)
	out := make([]string, d.o.Months)
	for i := range out {
		out[i] = start.AddDate(0, i, 0).Format("2006-01")
	}
	return out
}

// prepare empties the demo's folder, refusing one that is not a demo's.
func (d *Demo) prepare() error {
	entries, err := os.ReadDir(d.o.Dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	case len(entries) > 0:
		if _, err := os.Stat(d.path(marker)); err != nil {
			return fmt.Errorf("%s is not empty and not an earlier demo's folder (no %s): name another with --dir", d.o.Dir, marker)
		}
		if err := os.RemoveAll(d.o.Dir); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(d.o.Dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(d.path(marker), []byte("a ward demo's folder: ward demo empties it\n"), 0o644)
}

// synth writes the group twice from one seed: encrypted, as the hospitals
// send it, and in plaintext, as their own databases hold it (the cases they
// ask predictions for at pre-admission). The drop box gets every month but
// the last two, which arrive later.
func (d *Demo) synth(ctx context.Context) (string, error) {
	if err := d.prepare(); err != nil {
		return "", err
	}
	common := []synth.Option{synth.WithHospitals(d.o.Hospitals), synth.WithMonths(d.o.Months)}
	sum, err := synth.Generate(ctx, d.path("group"), append(common, synth.WithEncryption("mixed"))...)
	if err != nil {
		return "", err
	}
	plain, err := synth.Generate(ctx, d.path("hospitals-own"), append(common, synth.WithEncryption("none"))...)
	if err != nil {
		return "", err
	}
	if d.hs, err = contract.LoadAll(sum.Contracts); err != nil {
		return "", err
	}
	if d.plain, err = contract.LoadAll(plain.Contracts); err != nil {
		return "", err
	}
	d.group, d.plainSFTP, d.dropbox = sum.SFTP, plain.SFTP, d.path("dropbox")
	months := d.monthsOf()
	later := months[len(months)-2:]
	n, err := synth.Upload(d.group, d.dropbox, func(m string) bool { return !slices.Contains(later, m) })
	if err != nil {
		return "", err
	}
	if d.o.Bad == "" {
		d.o.Bad = d.hs[len(d.hs)-1].ID
		for _, h := range d.hs {
			if h.ID == "lakeshore" {
				d.o.Bad = h.ID
			}
		}
	}
	kinds := map[string]int{}
	for _, h := range sum.Hospitals {
		kinds[h.Encryption]++
	}
	return fmt.Sprintf("%d hospitals x %d months, %d cases, encrypted (%s); %d files in the drop box, %s and %s to come",
		len(sum.Hospitals), d.o.Months, sum.Cases, countList(kinds), n, later[0], later[1]), nil
}

// services starts the embedded defaults: the SFTP server, the registry, the
// manifest repo, the database; and makes the signing key.
func (d *Demo) services(ctx context.Context) (string, error) {
	keyFile := d.path("keys", "sftp_ed25519")
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
		return "", err
	}
	pub, err := sftpd.WriteKey(keyFile)
	if err != nil {
		return "", err
	}
	if d.sftp, err = sftpd.Start(d.dropbox, []ssh.PublicKey{pub}, sftpd.WithLogger(d.o.Log)); err != nil {
		return "", err
	}
	d.closers = append(d.closers, func() { d.sftp.Close() })
	knownHosts := d.path("keys", "known_hosts")
	if err := d.sftp.WriteKnownHosts(knownHosts); err != nil {
		return "", err
	}
	sftpURL := d.sftp.URL("ward", "/")
	if d.src, err = fetch.Dial(ctx, fetch.SFTPConfig{URL: sftpURL, Key: keyFile, KnownHosts: knownHosts}); err != nil {
		return "", err
	}
	d.closers = append(d.closers, func() { d.src.Close() })

	if d.reg, err = registry.Start(d.path("registry")); err != nil {
		return "", err
	}
	d.closers = append(d.closers, func() { d.reg.Close() })
	d.client = registry.NewClient()

	if d.key, err = signing.Generate(); err != nil {
		return "", err
	}
	pubPEM, err := signing.MarshalPublicKey(&d.key.PublicKey)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(d.path("keys", "ward.pub"), pubPEM, 0o644); err != nil {
		return "", err
	}

	// The manifest's commits are signed with an SSH key that its trust
	// file lists, so that the agents follow only what the demo signed.
	d.signKey = d.path("keys", "manifest_ed25519")
	signPub, err := sftpd.WriteKey(d.signKey)
	if err != nil {
		return "", err
	}
	trust := []byte("# who may write the demo's manifest repo\ndemo@ward.invalid " + string(ssh.MarshalAuthorizedKey(signPub)))
	if err := os.WriteFile(d.path("keys", "trust.txt"), trust, 0o644); err != nil {
		return "", err
	}

	d.remote = d.path("manifest.git")
	if _, err := git.PlainInitWithOptions(d.remote, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: plumbing.Main}, Bare: true}); err != nil {
		return "", err
	}
	d.summary.Manifest = d.remote
	if d.deployer, err = d.manifestRepo(); err != nil {
		return "", err
	}
	if _, err := d.deployer.InitTrust(ctx, false, trust); err != nil {
		return "", err
	}

	db := d.path("ward.db")
	if d.st, err = store.Open(ctx, "sqlite:"+db); err != nil {
		return "", err
	}
	d.closers = append(d.closers, func() { d.st.Close() })
	if d.stage, err = staging.Open(d.path("staging")); err != nil {
		return "", err
	}
	keys := filepath.Join(filepath.Dir(d.group), "keys")
	if d.keys, err = decrypt.Load(decrypt.WithPGPKey(filepath.Join(keys, "ingest.pgp"), ""), decrypt.WithAgeIdentity(filepath.Join(keys, "ingest.age"))); err != nil {
		return "", err
	}
	return fmt.Sprintf("SFTP %s, registry %s, manifest repo %s (commits signed, its trust file lists the key), SQLite %s", sftpURL, d.reg.Host, d.remote, db), nil
}

// manifestRepo opens the manifest repo as ward deploy does: every image
// is verified with the demo's public key first.
func (d *Demo) manifestRepo() (*manifest.Repo, error) {
	return manifest.New(d.remote, manifest.WithAuthor("ward demo <demo@ward.invalid>"), manifest.WithSignKey(d.signKey),
		manifest.WithVerifier(image.ManifestVerifier(d.client, &d.key.PublicKey)), manifest.WithLogger(d.o.Log))
}

// ingest runs ward ingest over SFTP.
func (d *Demo) ingest(ctx context.Context, what string) (string, error) {
	sum := ingest.Run(ctx, d.hs, d.src, d.st, d.stage, d.keys, ingest.WithSettle(100*time.Millisecond), ingest.WithLogger(d.o.Log),
		ingest.WithModelVersions(d.deployer.Versions))
	if errs := sum.Errors(); len(errs) > 0 {
		return "", errors.New(strings.Join(errs, "; "))
	}
	t := sum.Total()
	if t.Failed > 0 {
		return "", fmt.Errorf("%d files failed to load", t.Failed)
	}
	return fmt.Sprintf("%s: %d files loaded (%d duplicates), %d rows (%d rejected, kept for review), %d quarantined",
		what, t.Loaded, t.Duplicate, t.Rows, t.Rejected, t.Quarantined), nil
}

// train trains every hospital and the pooled baseline; v2 is gated against
// v1, the model in production (read from the images the manifest pins, as
// ward train reads it).
func (d *Demo) train(ctx context.Context, version string) (string, error) {
	ids := make([]string, len(d.hs))
	for i, h := range d.hs {
		ids[i] = h.ID
	}
	var opts []train.Option
	if version == "v2" {
		live, err := image.Production(ctx, d.deployer, d.client, ids, image.VerifiedBy(&d.key.PublicKey), image.ProductionLog(d.o.Log))
		if err != nil {
			return "", err
		}
		for _, a := range live {
			opts = append(opts, train.WithBaseline(a))
		}
	}
	results, err := train.Run(ctx, d.st, d.hs, ids, append(opts, train.WithParallel(2))...)
	if err != nil {
		return "", err
	}
	dir := d.path("models", version)
	if _, err := trainreport.Write(dir, results, trainreport.WithParallel(2)); err != nil {
		return "", err
	}
	better, passed := 0, 0
	for _, r := range results {
		if r.Err != nil {
			return "", fmt.Errorf("%s: %w", r.Hospital, r.Err)
		}
		if r.Pooled.Metrics != nil && r.Validation.MAE < r.Pooled.Metrics.MAE {
			better++
		}
		if r.Gate.Passed {
			passed++
		}
		if version == "v2" {
			d.v2[r.Hospital] = r
		}
		d.summary.Reports["training "+version+" "+r.Hospital] = filepath.Join(dir, r.Hospital, trainreport.ReportDir, "report.html")
	}
	gate := ""
	if version == "v2" {
		gate = fmt.Sprintf("; gate against v1: %d of %d passed", passed, len(results))
	}
	return fmt.Sprintf("%d models; per-hospital MAE below the pooled model's at %d of %d hospitals%s; reports in %s",
		len(results), better, len(results), gate, dir), nil
}

// pack packages every model of dir that passed its gate: the model server
// and the model, one signed image each, listed in dir/images.json.
func (d *Demo) pack(ctx context.Context, version, dir string) (string, error) {
	if d.server == nil {
		srv, err := d.buildServer(ctx)
		if err != nil {
			return "", err
		}
		d.server = srv
	}
	pub := image.NewPublisher(image.WithRegistry(d.client), image.WithSigner(d.key),
		image.WithServer(d.server), image.WithBuild(image.Created(d.start.UTC().Truncate(time.Second))))
	n, skipped := 0, 0
	var lines []image.Line
	for _, h := range d.hs {
		tr, err := image.ReadTrained(filepath.Join(dir, h.ID, trainreport.ModelFile), "", "")
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		repo, err := d.client.Repository(d.reg.Host, h.Image.Repository)
		if err != nil {
			return "", err
		}
		res, err := image.Package(ctx, tr, repo, pub)
		if errors.Is(err, image.ErrGateFailed) {
			skipped++
			lines = append(lines, image.Line{Hospital: h.ID, Skipped: err.Error()})
			continue
		}
		if err != nil {
			return "", err
		}
		lines = append(lines, res.Line())
		a, err := models.Decode(tr.Model.Artifact)
		if err != nil {
			return "", err
		}
		d.artifacts = append(d.artifacts, a)
		n++
	}
	// What ward package --output json writes, for deploy to read back.
	b, err := json.MarshalIndent(lines, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, imagesFile), append(b, '\n'), 0o644); err != nil {
		return "", err
	}
	s := fmt.Sprintf("%d images pushed and signed (%s)", n, version)
	if skipped > 0 {
		s += fmt.Sprintf("; %d failed their gate, not shipped", skipped)
	}
	return s, nil
}

// buildServer builds the model server from source for this machine, or
// loads the prebuilt ones.
func (d *Demo) buildServer(ctx context.Context) (*image.Server, error) {
	if len(d.o.Servers) > 0 {
		return image.LoadServer(d.o.Servers)
	}
	if _, err := os.Stat(filepath.FromSlash(strings.TrimPrefix(image.DefaultServerPackage, "./"))); err != nil {
		// Outside a ward checkout (a go install'ed ward), the demo's
		// server is ward itself: it holds ward serve, and run as
		// /ward/serve it is the model server (tools/ward/main.go).
		exe, err := os.Executable()
		if err != nil || runtime.GOOS != "linux" {
			return nil, fmt.Errorf("the model server's source (%s) is not here, and this ward cannot serve in an image (%s/%s, %v): run ward demo from the ward repository (go run ./tools/ward demo), or give a prebuilt server with --server linux/%s=FILE", image.DefaultServerPackage, runtime.GOOS, runtime.GOARCH, err, runtime.GOARCH)
		}
		d.o.Log.Info("the model server's source is not here: packing this ward executable as the server", "file.path", exe)
		return image.LoadServer(map[string]string{"linux/" + runtime.GOARCH: exe})
	}
	return image.BuildServer(ctx, ".", image.DefaultServerPackage, []string{"linux/" + runtime.GOARCH})
}

// deploy commits every image of a models folder's images.json to the
// manifest repo, as ward deploy --images does, and notes the digest each
// hospital should serve.
func (d *Demo) deploy(ctx context.Context, version string) (string, error) {
	data, err := os.ReadFile(d.path("models", version, imagesFile))
	if err != nil {
		return "", err
	}
	lines, err := image.ParseLines(data)
	if err != nil {
		return "", err
	}
	out, err := image.DeployAll(ctx, d.deployer, lines, image.Batch{Log: d.o.Log})
	if err != nil {
		var failed []string
		for _, o := range out {
			if o.Outcome == image.OutcomeFailed {
				failed = append(failed, o.Hospital+": "+o.Error)
			}
		}
		return "", fmt.Errorf("%w: %s", err, strings.Join(failed, "; "))
	}
	d.deployed = map[string]string{}
	var commits []string
	for _, o := range out {
		if o.Result == nil || o.Result.Release == nil {
			continue
		}
		commits = append(commits, o.Result.Commits...)
		d.deployed[o.Hospital] = o.Result.Release.Digest
		d.agents[o.Hospital].refresh()
	}
	return fmt.Sprintf("%d commits \"deploy(<id>): <version>\" pushed to %s, each image verified first", len(commits), d.remote), nil
}

// startAgents starts one agent per hospital on a local port, and waits for
// each to serve what the manifest pins.
func (d *Demo) startAgents(ctx context.Context) (string, error) {
	verify := image.ManifestVerifier(d.client, &d.key.PublicKey)
	for _, h := range d.hs {
		repo, err := d.manifestRepo()
		if err != nil {
			return "", err
		}
		serverLog, err := os.Create(d.path("agents", h.ID+".server.log"))
		if err != nil {
			if err := os.MkdirAll(d.path("agents"), 0o755); err != nil {
				return "", err
			}
			if serverLog, err = os.Create(d.path("agents", h.ID+".server.log")); err != nil {
				return "", err
			}
		}
		r := &running{log: &lineBuffer{}, done: make(chan error, 1)}
		r.agent, err = agent.New(h.ID, repo, verify, agent.WithData(d.path("agents", h.ID)), agent.WithPoll(300*time.Millisecond),
			agent.WithRegistry(d.client), agent.WithEnviron([]string{"WARD_ID_FIELD=" + h.Training.ID}),
			agent.WithPredictionLog(r.log), agent.WithServerLog(serverLog), agent.WithLogger(d.o.Log))
		if err != nil {
			return "", err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		r.addr = ln.Addr().String()
		actx, stop := context.WithCancel(context.WithoutCancel(ctx))
		go func() { r.done <- r.agent.Run(actx, ln) }()
		d.closers = append(d.closers, func() {
			stop()
			<-r.done
			serverLog.Close()
		})
		d.agents[h.ID] = r
	}
	if err := d.waitServing(ctx, nil); err != nil {
		return "", err
	}
	var eps []string
	for _, h := range d.hs {
		eps = append(eps, h.ID+" http://"+d.agents[h.ID].addr)
	}
	return fmt.Sprintf("%d agents serving their hospital's v1: %s", len(d.hs), strings.Join(eps, ", ")), nil
}

// waitServing waits until the agents serve: with want, each hospital it
// names serves that digest; without, every agent serves what its last poll
// read in the manifest repo.
func (d *Demo) waitServing(ctx context.Context, want map[string]string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		behind := ""
		for _, h := range d.hs {
			st := d.agents[h.ID].agent.Status()
			w, named := want[h.ID]
			if want != nil && !named {
				continue
			}
			ok := st.Serving != nil && (named && st.Serving.Digest == w || !named && st.InSync)
			if !ok {
				behind = h.ID
				if st.LastError != nil {
					behind += " (" + st.LastError.Step + ": " + st.LastError.Message + ")"
				}
				break
			}
		}
		if behind == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the agent of %s does not serve its release after 60s", behind)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// arrive drops a month's extracts and the prediction logs in the drop box,
// as the hospitals upload them, and ingests them.
func (d *Demo) arrive(ctx context.Context, month string) (string, error) {
	if _, err := synth.Upload(d.group, d.dropbox, func(m string) bool { return m == month }); err != nil {
		return "", err
	}
	logs := 0
	for _, h := range d.hs {
		n, err := d.dropPredictions(h, month)
		if err != nil {
			return "", err
		}
		logs += n
	}
	return d.ingest(ctx, fmt.Sprintf("%s arrives (its bills: the outcomes) with %d logged predictions", month, logs))
}

// shipV2 packages and deploys v2, and waits for the agents to switch.
func (d *Demo) shipV2(ctx context.Context) (string, error) {
	p, err := d.pack(ctx, "v2", d.path("models", "v2"))
	if err != nil {
		return "", err
	}
	if _, err := d.deploy(ctx, "v2"); err != nil {
		return "", err
	}
	if err := d.waitServing(ctx, d.deployed); err != nil {
		return "", err
	}
	return p + "; deployed; the agents switched to v2 without dropping a request", nil
}

// badModel ships a deliberately bad model to one hospital: its v2 with
// every bill halved, as a model trained on a broken extract might be. It
// goes out with --force's blessing (no gate record), as a hurried person
// might ship it.
func (d *Demo) badModel(ctx context.Context) (string, error) {
	r := d.v2[d.o.Bad]
	if r == nil {
		return "", fmt.Errorf("no v2 model of %s to spoil", d.o.Bad)
	}
	data, err := r.Artifact.Encode()
	if err != nil {
		return "", err
	}
	bad, err := models.Decode(data)
	if err != nil {
		return "", err
	}
	bad.Intercept += math.Log(0.5)
	bad.Version = r.Version + "-halved"
	if data, err = bad.Encode(); err != nil {
		return "", err
	}
	dir := d.path("models", "bad")
	if err := os.MkdirAll(filepath.Join(dir, d.o.Bad), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, d.o.Bad, trainreport.ModelFile), data, 0o644); err != nil {
		return "", err
	}
	if _, err := d.pack(ctx, "bad", dir); err != nil {
		return "", err
	}
	if _, err := d.deploy(ctx, "bad"); err != nil {
		return "", err
	}
	if err := d.waitServing(ctx, d.deployed); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s's v2 with every bill halved (%s), deployed; its agent serves it", d.o.Bad, bad.Version), nil
}

// feedback joins the served predictions with the outcomes, flags the bad
// model, and rolls back each flagged hospital by a revert commit.
func (d *Demo) feedback(ctx context.Context) (string, error) {
	rep, err := feedback.Run(ctx, d.st, d.hs, feedback.WithModels(d.artifacts...))
	if err != nil {
		return "", err
	}
	dir := d.path("feedback")
	if err := feedbackreport.Write(dir, rep); err != nil {
		return "", err
	}
	d.summary.Reports["feedback"] = filepath.Join(dir, feedbackreport.JSONFile)
	// A degraded model is rolled back to the release before it; drift
	// (inputs that moved away from the model's data) asks for a retrain,
	// which the next scheduled run does, not for a rollback.
	var flagged, degraded, drifted []string
	for _, h := range rep.Flagged() {
		flagged = append(flagged, h.Hospital+" "+h.Verdict)
		d.summary.Reports["feedback "+h.Hospital] = filepath.Join(dir, h.Hospital, feedbackreport.HTMLFile)
		if h.Degraded {
			degraded = append(degraded, h.Hospital)
		} else {
			drifted = append(drifted, h.Hospital)
		}
	}
	d.summary.Flagged = flagged
	if !slices.Contains(degraded, d.o.Bad) {
		return "", fmt.Errorf("feedback did not find %s degraded, yet it serves a model that halves every bill", d.o.Bad)
	}
	back := map[string]string{}
	for _, id := range degraded {
		res, err := d.deployer.Rollback(ctx, manifest.Rollback{Hospital: id})
		if err != nil {
			return "", fmt.Errorf("rollback %s: %w", id, err)
		}
		d.summary.RolledBack = append(d.summary.RolledBack, fmt.Sprintf("%s: %s -> %s (commit %s)", id, res.Previous.Version, res.Release.Version, short(res.Commits[len(res.Commits)-1])))
		back[id] = res.Release.Digest
		d.agents[id].refresh()
	}
	if err := d.waitServing(ctx, back); err != nil {
		return "", err
	}
	s := fmt.Sprintf("flagged %s (exit code 4 in CI); %s rolled back by a revert commit, its agent serves v2 again", strings.Join(flagged, ", "), strings.Join(degraded, ", "))
	if len(drifted) > 0 {
		s += fmt.Sprintf("; %s drifted: the next scheduled run retrains", strings.Join(drifted, ", "))
	}
	return s, nil
}

// site writes the fleet view of what the demo did (ward site).
func (d *Demo) site(ctx context.Context) (string, error) {
	ids := make([]string, len(d.hs))
	for i, h := range d.hs {
		ids[i] = h.ID
	}
	tls, err := heal.Histories(ctx, d.deployer, ids)
	if err != nil {
		return "", err
	}
	s, err := site.Write(d.path("site"), site.Input{Hospitals: d.hs, Timelines: tls,
		Training: []string{d.path("models", "v1"), d.path("models", "v2"), d.path("models", "bad")}, Feedback: []string{d.path("feedback")}})
	if err != nil {
		return "", err
	}
	d.summary.Reports["site"] = s.Index
	return fmt.Sprintf("%d pages, every hospital's history and reports: open %s", len(s.Pages), s.Index), nil
}

// finish fills the summary.
func (d *Demo) finish(context.Context) error {
	for _, h := range d.hs {
		st := d.agents[h.ID].agent.Status()
		l := Line{Hospital: h.ID, Endpoint: "http://" + d.agents[h.ID].addr}
		if st.Serving != nil {
			l.Version, l.Digest = st.Serving.Version, st.Serving.Digest
		}
		if r := d.v2[h.ID]; r != nil && r.Validation != nil {
			l.MAE = r.Validation.MAE
			if r.Pooled.Metrics != nil {
				l.PooledMAE = r.Pooled.Metrics.MAE
			}
		}
		d.summary.Hospitals = append(d.summary.Hospitals, l)
	}
	return nil
}

// WriteSummary prints the summary table and the reports' paths.
func (s *Summary) WriteSummary(w io.Writer) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOSPITAL\tLIVE VERSION\tDIGEST\tMAE\tPOOLED MAE\tENDPOINT")
	for _, l := range s.Hospitals {
		pooled := "-"
		if l.PooledMAE > 0 {
			pooled = fmt.Sprintf("%.0f", l.PooledMAE)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%s\t%s\n", l.Hospital, l.Version, short(strings.TrimPrefix(l.Digest, "sha256:")), l.MAE, pooled, l.Endpoint)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nMAE: per-hospital model (v2) on its validation window; POOLED MAE: one model of all hospitals on the same window.\n")
	for _, rb := range s.RolledBack {
		fmt.Fprintf(w, "Rolled back: %s\n", rb)
	}
	fmt.Fprintf(w, "\nReports:\n")
	keys := make([]string, 0, len(s.Reports))
	for k := range s.Reports {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-28s %s\n", k, s.Reports[k])
	}
	fmt.Fprintf(w, "Manifest repo: git -C %s log --format='%%h %%s'\n", s.Manifest)
	fmt.Fprintf(w, "Done in %s.\n", s.Elapsed.Round(100*time.Millisecond))
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func countList(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = fmt.Sprintf("%d %s", m[k], k)
	}
	return strings.Join(out, ", ")
}
