// Package cli is the hospital agent's command line, which `ward agent` and
// the ward-agent binary (tools/ward-agent) share: its flags, what it takes
// from ward's configuration, --check, and the run. It links what the
// hospital side needs (the manifest repo, signature checks, the registry,
// the supervisor) and nothing of the data side.
package cli

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/wardml/ward/internal/config"
	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/models/trained"
	"github.com/wardml/ward/tools/agent"
	"github.com/wardml/ward/tools/image"
	"github.com/wardml/ward/tools/manifest"
	"github.com/wardml/ward/tools/registry"
	"github.com/wardml/ward/tools/signing"
)

// Summary, Usage, Help and Example describe the command (ward agent --help,
// ward-agent --help).
const (
	Summary = "Serve a hospital's signed model as the manifest repo says, without Kubernetes"
	Usage   = "agent --hospital ID [--listen ADDR] [--data DIR] [--poll 30s] [--check] [flags]"
	Help    = `Follows the hospital's folder of the manifest repo (WARD_MANIFEST_REPO),
polling every --poll (and at once on POST /agent/refresh). When it pins a
new digest, the agent verifies the image's signature with WARD_VERIFY_KEY
(an unsigned image, another key's signature, an image of another hospital
or a reference by tag is refused), pulls it by digest from the registry,
checking every blob, unpacks the server and the model for this host into
--data (at most 64 MiB of server and --max-model-bytes under /models/),
starts that server on a private loopback port, waits until it is ready,
switches the endpoint on --listen to it, and stops the old server once its
requests have finished: no request fails across a switch. A failure at any
step keeps the current version serving, and is reported.

With a trust file (base/trust.txt in the repo, or WARD_MANIFEST_TRUST) the
agent applies a new head only when it descends from the commit it applied
last (kept in --data: a force push that drops it is refused), the last
commits to change the hospital's folder and base/ are signed by a listed
key, and every change of the trust file since is signed by a key listed
before it. It never moves to an older model (data window, then version)
unless the commit that pins it is a revert or carries a signed
Ward-Allow-Downgrade trailer. A refusal is logged (event.action
agent.refuse, the commit, the reason), shown in /agent/status, and tried
again at the next poll. Without a trust file it says so, loudly, once.

--data keeps the last versions and a record of the one serving: started
again, the agent serves it at once, without the network.

--check validates the settings and the keys (the hospital id, the verify
key, the registry settings, the manifest repo's URL and SSH key or token,
the data folder, the listen address), prints what it checked, and exits:
0 when all is well, 2 otherwise. It needs no network.

On --listen: GET /agent/status (JSON: what serves, since when, the manifest
commit, the last poll and error, the release refused and why), GET
/agent/metrics (Prometheus), POST /agent/refresh (a Git host's push
webhook; with WARD_AGENT_WEBHOOK_SECRET set it must carry the secret in
X-Ward-Webhook-Secret or X-Gitlab-Token, or sign the body in
X-Hub-Signature-256); everything else goes to the model server (/v1/predict,
/v1/model, /healthz, /readyz, /metrics).

The prediction log of the model servers (one JSON line per prediction, see
ward serve) goes to stdout: redirect it to the file that the hospital
drops on SFTP for feedback. Logs go to stderr. The servers take their own
settings from the environment (WARD_ID_FIELD, WARD_HASH_INPUTS,
WARD_HASH_KEY, WARD_PREDICTIONS_DB, ...); nothing else of it.

SIGINT or SIGTERM stops the agent: it stops polling, lets the requests in
flight finish, stops the servers, and exits 0. Exit code 2 for usage,
configuration, or an address it cannot listen on; 1 when serving fails.`
	Example = "WARD_MANIFEST_REPO=ssh://git@git.example/group/manifest.git WARD_VERIFY_KEY=ward.pub \\\n  ward agent --hospital st-olaf --listen :8080 >> predictions.jsonl"
)

// Flags are the agent's own flags (ward's settings, such as
// --manifest-repo and --verify-key, are bound by config.BindFlags).
type Flags struct {
	Hospital, Listen, Data, Branch   string
	Poll, ReadyTimeout, DrainTimeout time.Duration
	Keep                             int
	MaxModelBytes                    int64
	Check                            bool
}

// Bind registers the flags on fs with their defaults.
func (f *Flags) Bind(fs *flag.FlagSet) {
	fs.StringVar(&f.Hospital, "hospital", "", "the hospital's id (its folder under hospitals/ in the manifest repo)")
	fs.StringVar(&f.Listen, "listen", ":8080", "address of the front endpoint")
	fs.StringVar(&f.Data, "data", "", "folder of the unpacked versions (default .ward/agent/<hospital>)")
	fs.DurationVar(&f.Poll, "poll", 30*time.Second, "how often to fetch the manifest repo")
	fs.StringVar(&f.Branch, "branch", "main", "branch of the manifest repo")
	fs.DurationVar(&f.ReadyTimeout, "ready-timeout", 30*time.Second, "longest wait for a new server's /readyz")
	fs.DurationVar(&f.DrainTimeout, "drain-timeout", 30*time.Second, "longest wait for an old server's requests to finish")
	fs.IntVar(&f.Keep, "keep", 3, "versions kept on disk, the current one included")
	fs.Int64Var(&f.MaxModelBytes, "max-model-bytes", trained.MaxModelBytes, "most that an image may unpack under /models/ (a larger one is refused)")
	fs.BoolVar(&f.Check, "check", false, "validate the settings and the keys, print what was checked, and exit")
}

// Env is what a run takes from its process.
type Env struct {
	Config *config.Config
	Log    *slog.Logger
	Stdout io.Writer
	Stderr io.Writer
	// Environ is the environment the servers' settings come from.
	Environ []string
}

// Run checks the settings and, unless --check, runs the agent until ctx
// ends. Its errors carry exit codes (internal/exit): 2 for usage and
// configuration, 1 when serving fails.
func Run(ctx context.Context, f *Flags, env Env) error {
	s, err := setup(f, env)
	if f.Check {
		return s.report(env.Stdout, err)
	}
	if err != nil {
		return err
	}
	opts := []agent.Option{
		agent.WithPoll(f.Poll), agent.WithReadyTimeout(f.ReadyTimeout), agent.WithDrainTimeout(f.DrainTimeout), agent.WithKeep(f.Keep),
		agent.WithMaxModelBytes(f.MaxModelBytes), agent.WithData(s.data),
		agent.WithWebhookSecret(env.Config.Get("agent_webhook_secret")), agent.WithRegistry(s.client),
		agent.WithEnviron(env.Environ), agent.WithPredictionLog(env.Stdout), agent.WithServerLog(env.Stderr), agent.WithLogger(env.Log),
	}
	a, err := agent.New(f.Hospital, s.repo, image.ManifestVerifier(s.client, s.pub), opts...)
	if err != nil {
		return exit.With(exit.Config, err)
	}
	ln, err := net.Listen("tcp", f.Listen)
	if err != nil {
		return exit.With(exit.Config, fmt.Errorf("--listen %s: %w", f.Listen, err))
	}
	return a.Run(ctx, ln)
}

// settings are the checked settings of a run, and what --check says of
// each.
type settings struct {
	pub     *ecdsa.PublicKey
	client  *registry.Client
	repo    *manifest.Repo
	data    string
	checked []string
}

// setup checks every setting it can without the network, and returns the
// first failure (with exit code 2); checked says what passed.
func setup(f *Flags, env Env) (*settings, error) {
	s := &settings{}
	cfg := env.Config
	ok := func(format string, args ...any) { s.checked = append(s.checked, fmt.Sprintf(format, args...)) }
	if f.Hospital == "" {
		return s, exit.With(exit.Config, errors.New("want --hospital ID"))
	}
	if err := manifest.CheckHospital(f.Hospital); err != nil {
		return s, exit.With(exit.Config, err)
	}
	ok("hospital %s", f.Hospital)
	switch {
	case f.Poll <= 0 || f.ReadyTimeout <= 0 || f.DrainTimeout <= 0:
		return s, exit.With(exit.Config, fmt.Errorf("--poll %s, --ready-timeout %s, --drain-timeout %s: want positive durations", f.Poll, f.ReadyTimeout, f.DrainTimeout))
	case f.Keep < 2:
		return s, exit.With(exit.Config, fmt.Errorf("--keep %d: want at least 2 (the current version and the one before)", f.Keep))
	case f.MaxModelBytes <= 0:
		return s, exit.With(exit.Config, fmt.Errorf("--max-model-bytes %d: want a positive number of bytes", f.MaxModelBytes))
	}
	file := cfg.Get("verify_key")
	if file == "" {
		return s, exit.With(exit.Config, errors.New("no public key: set WARD_VERIFY_KEY (or verify_key in ward.yaml, or --verify-key) to the group's image key, ward.pub"))
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return s, exit.With(exit.Config, fmt.Errorf("verify key: %w", err))
	}
	if s.pub, err = signing.ParsePublicKey(b); err != nil {
		return s, exit.With(exit.Config, fmt.Errorf("verify key %s: %w", file, err))
	}
	ok("verify key %s (ECDSA P-256)", file)
	if s.client, err = registry.FromConfig(cfg); err != nil {
		return s, exit.With(exit.Config, err)
	}
	ok("registry settings")
	s.repo, err = manifest.New(cfg.ManifestRepo(),
		manifest.WithBranch(f.Branch),
		manifest.WithSSHKey(cfg.Get("manifest_ssh_key")),
		manifest.WithKnownHosts(cfg.Get("known_hosts")),
		manifest.WithToken(cfg.Get("manifest_token")),
		manifest.WithTrust(cfg.Get("manifest_trust")),
		manifest.WithLogger(env.Log))
	if err != nil {
		if errors.Is(err, manifest.ErrUsage) || errors.Is(err, manifest.ErrUnreachable) || errors.Is(err, manifest.ErrNotInitialized) {
			return s, exit.With(exit.Config, err)
		}
		return s, exit.With(exit.Failure, err)
	}
	ok("manifest repo %s, branch %s", cfg.ManifestRepo(), f.Branch)
	s.data = f.Data
	if s.data == "" {
		s.data = filepath.Join(".ward", "agent", f.Hospital)
	}
	if err := writable(s.data); err != nil {
		return s, exit.With(exit.Config, fmt.Errorf("--data %s: %w", s.data, err))
	}
	ok("data folder %s (writable)", s.data)
	host, _, err := net.SplitHostPort(f.Listen)
	if err != nil {
		return s, exit.With(exit.Config, fmt.Errorf("--listen %s: %w", f.Listen, err))
	}
	if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" && cfg.Get("agent_webhook_secret") == "" {
		ok("listen %s (POST /agent/refresh takes no secret: set WARD_AGENT_WEBHOOK_SECRET when it is reachable from off the host)", f.Listen)
	} else {
		ok("listen %s", f.Listen)
	}
	return s, nil
}

// report prints what --check found.
func (s *settings) report(w io.Writer, err error) error {
	for _, c := range s.checked {
		fmt.Fprintf(w, "ok    %s\n", c)
	}
	if err != nil {
		fmt.Fprintf(w, "FAIL  %v\n", err)
		return err
	}
	fmt.Fprintln(w, "the settings and the keys check; run without --check to serve")
	return nil
}

// writable makes dir if it is missing and checks that a file can be made
// in it.
func writable(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".check-")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}
