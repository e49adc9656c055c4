package main

import (
	"context"
	"flag"

	"github.com/wardml/ward/tools/agent/cli"
)

// ward agent is the same command as the ward-agent binary (tools/ward-agent):
// both run tools/agent/cli.
func init() {
	register(&Command{
		Name:    "agent",
		Summary: cli.Summary,
		Usage:   cli.Usage,
		Help:    cli.Help,
		Example: cli.Example,
		New:     func() Runner { return &agentCmd{} },
	})
}

// agentCmd is one command line of ward agent: its flags.
type agentCmd struct{ f cli.Flags }

func (cmd *agentCmd) Flags(fs *flag.FlagSet) { cmd.f.Bind(fs) }

func (cmd *agentCmd) Run(ctx context.Context, app *App, _ []string) error {
	return cli.Run(ctx, &cmd.f, cli.Env{Config: app.Config, Log: app.Log, Stdout: app.Stdout, Stderr: app.Stderr, Environ: app.Environ})
}
