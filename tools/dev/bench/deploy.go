package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wardml/ward/models"
	"github.com/wardml/ward/tools/agent"
	"github.com/wardml/ward/tools/image"
	"github.com/wardml/ward/tools/manifest"
	"github.com/wardml/ward/tools/registry"
	"github.com/wardml/ward/tools/signing"
)

// deploy: the time from a pushed deploy commit to the agent's front
// endpoint answering with the new version, poll interval 1s, registry on
// loopback. The reference, measured in the same run, is what no agent can
// avoid: the model server started alone, from the same files, until
// /readyz answers.

var deployFlags struct {
	n     int
	poll  time.Duration
	host  string
	fresh bool
}

func init() {
	register(&benchmark{
		Name:    "deploy",
		Summary: "ward agent: pushed deploy commit -> new version answering (poll 1s, loopback registry): median, p90, max; target median < 3s",
		Flags: func(fs *flag.FlagSet) {
			fs.IntVar(&deployFlags.n, "n", 10, "deploys")
			fs.DurationVar(&deployFlags.poll, "poll", time.Second, "the agent's poll interval")
			fs.StringVar(&deployFlags.host, "registry", "", "registry host[:port] (default: the in-process registry)")
			fs.BoolVar(&deployFlags.fresh, "fresh", false, "a new version at each deploy (each one pulled), instead of v1 and v2 alternating (pulled once, then from disk)")
		},
		Run: runDeploy,
	})
}

func runDeploy(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "ward-bench-deploy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	host := deployFlags.host
	if host == "" {
		srv, err := registry.Start(filepath.Join(dir, "registry"))
		if err != nil {
			return err
		}
		defer srv.Close()
		host = srv.Host
	}
	t0 := time.Now()
	server, err := image.BuildServer(ctx, ".", image.DefaultServerPackage, image.Platforms)
	if err != nil {
		return err
	}
	fmt.Printf("server built for %v in %s\n", image.Platforms, time.Since(t0).Round(time.Millisecond))

	key, err := signing.Generate()
	if err != nil {
		return err
	}
	client := registry.NewClient()
	repo, err := client.Repository(host, "ward/bench")
	if err != nil {
		return err
	}
	fitted, err := models.Fit(fitSpec(), fitCases(5_000, 1), fitCases(1_000, 2))
	if err != nil {
		return err
	}
	versions := []string{"v1", "v2"}
	if deployFlags.fresh {
		versions = nil
		for i := range deployFlags.n {
			versions = append(versions, fmt.Sprintf("v%d", i+1))
		}
	}
	refs := map[string]string{}
	pub := image.NewPublisher(image.WithRegistry(client), image.WithSigner(key), image.WithServer(server),
		image.WithBuild(image.Created(time.Unix(1764504000, 0))))
	for _, v := range versions {
		fitted.Version = v
		art, err := fitted.Encode()
		if err != nil {
			return err
		}
		res, err := image.Package(ctx, &image.Trained{Model: image.Model{Hospital: "bench", Version: v, Family: "ridge", Artifact: art}}, repo, pub)
		if err != nil {
			return err
		}
		refs[v] = res.Ref.String()
	}

	remote := filepath.Join(dir, "manifest.git")
	if out, err := exec.Command("git", "init", "--quiet", "--bare", "--initial-branch=main", remote).CombinedOutput(); err != nil {
		return fmt.Errorf("git init: %v\n%s", err, out)
	}
	verify := image.ManifestVerifier(client, &key.PublicKey)
	deployer, err := manifest.New(remote, manifest.WithVerifier(verify), manifest.WithAuthor("Ward Bench <bench@ward.invalid>"))
	if err != nil {
		return err
	}
	if _, err := deployer.Init(ctx, false); err != nil {
		return err
	}
	follow, err := manifest.New(remote)
	if err != nil {
		return err
	}
	data := filepath.Join(dir, "agent")
	a, err := agent.New("bench", follow, verify, agent.WithData(data), agent.WithPoll(deployFlags.poll), agent.WithRegistry(client),
		agent.WithPredictionLog(io.Discard), agent.WithServerLog(io.Discard), agent.WithLogger(slog.New(slog.DiscardHandler)), agent.WithEnviron(nil))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- a.Run(runCtx, ln) }()
	defer func() { stop(); <-ran }()
	front := "http://" + ln.Addr().String()

	fmt.Printf("deploy: %d deploys (%s), agent polling every %s, registry %s\n\n", deployFlags.n,
		map[bool]string{true: "a new version each", false: "v1 and v2 alternating"}[deployFlags.fresh], deployFlags.poll, host)
	var took, switched []time.Duration
	for i := range deployFlags.n {
		v := versions[i%len(versions)]
		// Deploys land at any point of the poll's cycle, as people's do.
		time.Sleep(time.Duration(rand.Int64N(int64(deployFlags.poll))))
		res, err := deployer.Deploy(ctx, manifest.Deployment{Hospital: "bench", Image: refs[v]})
		if err != nil {
			return err
		}
		pushed := time.Now()
		if err := waitVersion(ctx, front, v, 60*time.Second); err != nil {
			return fmt.Errorf("deploy %d (%s): %w; status: %+v", i+1, v, err, a.Status())
		}
		d := time.Since(pushed)
		st := a.Status()
		sw, _ := time.ParseDuration(st.LastSwitch.Took)
		took, switched = append(took, d), append(switched, sw)
		fmt.Printf("  %2d  %-4s commit %s  serving after %6s  (the agent's switch: %s)\n", i+1, v, res.Commits[0][:12], d.Round(time.Millisecond), st.LastSwitch.Took)
	}

	// The reference: ward-serve alone, started from the agent's files of
	// the version serving, until /readyz answers.
	var alone []time.Duration
	st := a.Status()
	vdir := filepath.Join(data, "versions", strings.TrimPrefix(st.Serving.Digest, "sha256:"))
	for range deployFlags.n {
		d, err := serverStart(ctx, filepath.Join(vdir, "ward", "serve"), filepath.Join(vdir, "models", "model.json"))
		if err != nil {
			return err
		}
		alone = append(alone, d)
	}

	q := func(ds []time.Duration, p float64) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[min(len(s)-1, int(p*float64(len(s))))].Round(time.Millisecond)
	}
	fmt.Printf("\n%-52s %9s %9s %9s\n", "", "median", "p90", "max")
	fmt.Printf("%-52s %9s %9s %9s\n", "pushed deploy commit -> new version answering", q(took, 0.5), q(took, 0.9), q(took, 1))
	fmt.Printf("%-52s %9s %9s %9s\n", "  of which the agent's switch (verify .. switch)", q(switched, 0.5), q(switched, 0.9), q(switched, 1))
	fmt.Printf("%-52s %9s %9s %9s\n", "reference: ward-serve alone, start -> /readyz", q(alone, 0.5), q(alone, 0.9), q(alone, 1))
	fmt.Printf("\nswitch / server start alone: %.1fx at the median; the poll adds %s on average (half its interval)\n",
		float64(q(switched, 0.5))/float64(max(q(alone, 0.5), time.Millisecond)), deployFlags.poll/2)
	if m := q(took, 0.5); m >= 3*time.Second {
		return fmt.Errorf("target missed: median %s, want under 3s", m)
	}
	fmt.Printf("target met: median %s < 3s\n", q(took, 0.5))
	return nil
}

// waitVersion waits until the front endpoint's model is version.
func waitVersion(ctx context.Context, front, version string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		resp, err := http.Get(front + "/v1/model")
		if err == nil {
			var m struct{ Version string }
			err = json.NewDecoder(resp.Body).Decode(&m)
			resp.Body.Close()
			if err == nil && m.Version == version {
				return nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return errors.New("not serving within " + timeout.String())
}

// serverStart runs the server on a free port until /readyz answers, and
// returns how long that took.
func serverStart(ctx context.Context, bin, model string) (time.Duration, error) {
	addr := freeAddr()
	start := time.Now()
	cmd := exec.CommandContext(ctx, bin, "--model", model, "--listen", addr, "--watch", "0")
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start), nil
			}
		}
	}
	return 0, fmt.Errorf("%s did not get ready on %s", bin, addr)
}
