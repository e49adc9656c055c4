package main

import (
	"context"
	"flag"
	"strings"

	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/serving"
)

func init() {
	register(&Command{
		Name:    "serve",
		Summary: "Serve a model artifact over HTTP: the model server of every image",
		Usage:   "serve [--model FILE] [--listen ADDR] [flags]",
		Help: `Runs the same server as the ward-serve binary in every image (see
package serving): POST /v1/predict, GET /v1/model, /healthz, /readyz and
/metrics. Every prediction is logged as one ECS JSON line on stdout (and in
--prediction-log). SIGHUP, or a change of the model file, loads the model
again and swaps it in if it is valid; SIGTERM or Ctrl-C drains and stops.
A model that cannot be loaded at start exits with code 2.

Environment (flags win): ` + strings.Join(serving.Env, ", ") + ".",
		Example: "ward serve --model .ward/models/st-olaf/model.json --listen 127.0.0.1:8080",
		New:     func() Runner { return &serveCmd{} },
	})
}

// serveCmd is one command line of ward serve: its flags.
type serveCmd struct{ flags *serving.Flags }

func (cmd *serveCmd) Flags(fs *flag.FlagSet) { cmd.flags = serving.BindFlags(fs) }

func (cmd *serveCmd) Run(ctx context.Context, app *App, _ []string) error {
	env := map[string]string{}
	for _, kv := range app.Environ {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	cfg, err := cmd.flags.Config(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		return exit.With(exit.Config, err)
	}
	return serving.Run(ctx, cfg, serving.WithLogger(app.Log), serving.WithStdout(app.Stdout))
}
