package main

import (
	"context"

	"github.com/wardml/ward/tools/agent/cli"
)

// ward agent is the same command as the ward-agent binary (tools/ward-agent):
// both run tools/agent/cli.
func init() {
	var f cli.Flags
	register(&Command{
		Name:    "agent",
		Summary: cli.Summary,
		Usage:   cli.Usage,
		Help:    cli.Help,
		Example: cli.Example,
		Flags:   f.Bind,
		Run: func(ctx context.Context, app *App, _ []string) error {
			return cli.Run(ctx, &f, cli.Env{Config: app.Config, Log: app.Log, Stdout: app.Stdout, Stderr: app.Stderr, Environ: app.Environ})
		},
	})
}
