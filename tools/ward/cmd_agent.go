package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"time"

	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/tools/agent"
	"github.com/wardml/ward/tools/registry"
)

func init() {
	var (
		hospital, listen, data, branch   string
		poll, readyTimeout, drainTimeout time.Duration
		keep                             int
	)
	register(&Command{
		Name:    "agent",
		Summary: "Serve a hospital's signed model as the manifest repo says, without Kubernetes",
		Usage:   "agent --hospital ID [--listen ADDR] [--data DIR] [--poll 30s] [flags]",
		Help: `Follows the hospital's folder of the manifest repo (WARD_MANIFEST_REPO),
polling every --poll (and at once on POST /agent/refresh). When it pins a
new digest, the agent verifies the image's signature with WARD_VERIFY_KEY
(an unsigned image, another key's signature, an image of another hospital
or a reference by tag is refused), pulls it by digest from the registry,
checking every blob, unpacks the server and the model for this host into
--data, starts that server on a private loopback port, waits until it is
ready, switches the endpoint on --listen to it, and stops the old server
once its requests have finished: no request fails across a switch. A
failure at any step keeps the current version serving, and is reported.

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
configuration, or an address it cannot listen on; 1 when serving fails.`,
		Example: "WARD_MANIFEST_REPO=ssh://git@git.example/group/manifest.git WARD_VERIFY_KEY=ward.pub \\\n  ward agent --hospital st-olaf --listen :8080 >> predictions.jsonl",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&hospital, "hospital", "", "the hospital's id (its folder under hospitals/ in the manifest repo)")
			fs.StringVar(&listen, "listen", ":8080", "address of the front endpoint")
			fs.StringVar(&data, "data", "", "folder of the unpacked versions (default .ward/agent/<hospital>)")
			fs.DurationVar(&poll, "poll", 30*time.Second, "how often to fetch the manifest repo")
			fs.StringVar(&branch, "branch", "main", "branch of the manifest repo")
			fs.DurationVar(&readyTimeout, "ready-timeout", 30*time.Second, "longest wait for a new server's /readyz")
			fs.DurationVar(&drainTimeout, "drain-timeout", 30*time.Second, "longest wait for an old server's requests to finish")
			fs.IntVar(&keep, "keep", 3, "versions kept on disk, the current one included")
		},
		Run: func(ctx context.Context, app *App, _ []string) error {
			if hospital == "" {
				return exit.With(exit.Config, errors.New("want --hospital ID"))
			}
			verify, err := imageVerifier(app)
			if err != nil {
				return exit.With(exit.Config, err)
			}
			client, err := registry.FromConfig(app.Config)
			if err != nil {
				return exit.With(exit.Config, err)
			}
			repo, err := openManifest(app, &manifestFlags{branch: branch})
			if err != nil {
				return err
			}
			opts := []agent.Option{
				agent.WithPoll(poll), agent.WithReadyTimeout(readyTimeout), agent.WithDrainTimeout(drainTimeout), agent.WithKeep(keep),
				agent.WithWebhookSecret(app.Config.Get("agent_webhook_secret")), agent.WithRegistry(client),
				agent.WithEnviron(app.Environ), agent.WithPredictionLog(app.Stdout), agent.WithServerLog(app.Stderr), agent.WithLogger(app.Log),
			}
			if data != "" {
				opts = append(opts, agent.WithData(data))
			}
			a, err := agent.New(hospital, repo, verify, opts...)
			if err != nil {
				return exit.With(exit.Config, err)
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return exit.With(exit.Config, fmt.Errorf("--listen %s: %w", listen, err))
			}
			return a.Run(ctx, ln)
		},
	})
}
