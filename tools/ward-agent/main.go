// Command ward-agent is the hospital side of ward on its own: it follows
// the hospital's folder of the manifest repo, verifies each image's
// signature, pulls and unpacks it, and supervises its model server behind
// a stable endpoint. It is `ward agent` (the same code, tools/agent/cli)
// without the rest of ward: no pipelines, no database driver, no plotting.
// Its systemd unit and an example configuration are beside this file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/wardml/ward/internal/config"
	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/internal/logging"
	"github.com/wardml/ward/tools/agent/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Environ())
	stop()
	os.Exit(code)
}

// run is main without the process: tests call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) int {
	fs := flag.NewFlagSet("ward-agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f cli.Flags
	f.Bind(fs)
	cfgFlags := config.BindFlags(fs)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stdout, "Usage: ward-%s\n\n%s\n\n%s\n\nExample:\n  %s\n\nFlags:\n", cli.Usage, cli.Summary, cli.Help, cli.Example)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return exit.OK
	}
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err != nil {
		fmt.Fprintf(stderr, "ward-agent: %v\nRun 'ward-agent --help' for usage.\n", err)
		return exit.Config
	}
	cfg, err := config.Load(cfgFlags, environ)
	if err != nil {
		fmt.Fprintf(stderr, "ward-agent: %v\n", err)
		return exit.Config
	}
	log := logging.New(stderr, logging.Options{Format: cfg.Get("log_format"), Level: cfg.Get("log_level")})
	if err := cli.Run(ctx, &f, cli.Env{Config: cfg, Log: log, Stdout: stdout, Stderr: stderr, Environ: environ}); err != nil {
		fmt.Fprintf(stderr, "ward-agent: %v\n", err)
		return exit.Code(err)
	}
	return exit.OK
}
