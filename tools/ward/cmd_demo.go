package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/internal/logging"
	"github.com/wardml/ward/tools/demo"
)

// demoCmd is one command line of ward demo: its flags.
type demoCmd struct {
	dir                  string
	keep                 bool
	hospitals, months, n int
	bad                  string
	servers              stringList
}

func init() {
	register(&Command{
		Name:    "demo",
		Summary: "Run the whole loop on embedded defaults: synth, ingest, train, package, deploy, serve, feedback, rollback",
		Usage:   "demo [--dir DIR] [--keep] [--hospitals 5] [--months 24] [--output json]",
		Help: `Runs ward's loop on one machine with nothing installed but Go, on the
embedded defaults: ward's in-process SFTP server, OCI registry and SQLite,
and a local bare Git repo as the manifest repo. A synthetic group of
hospitals drops encrypted extracts; ward ingests them, trains one model per
hospital beside the pooled baseline, packages and signs each as an image,
deploys it by a commit, and one agent per hospital serves it on a local
port. The hospitals ask for predictions; a new month arrives with the
outcomes and the prediction logs; ward retrains, gates against v1 and
deploys v2; a deliberately bad model reaches one hospital, feedback flags
it, and a revert commit rolls it back. Ends with a summary table and the
reports' paths.

Run it from the ward repository: it builds the model server from source
(CGO_ENABLED=0 go run -trimpath ./tools/ward demo shares that build's cache),
or takes a prebuilt one with --server. --keep leaves the agents, registry and
SFTP server running until Ctrl-C, and prints how to query each endpoint.`,
		Example: "CGO_ENABLED=0 go run -trimpath ./tools/ward demo\nward demo --keep --dir /tmp/ward-demo",
		Output:  true,
		New:     func() Runner { return &demoCmd{} },
	})
}

func (cmd *demoCmd) Flags(fs *flag.FlagSet) {
	fs.StringVar(&cmd.dir, "dir", ".ward/demo", "the demo's `DIR` (emptied first; it must be empty or an earlier demo's)")
	fs.BoolVar(&cmd.keep, "keep", false, "leave everything running until Ctrl-C")
	fs.IntVar(&cmd.hospitals, "hospitals", 5, "hospitals in the synthetic group (here it is not the contracts folder)")
	fs.IntVar(&cmd.months, "months", 24, "months of extracts")
	fs.IntVar(&cmd.n, "sample", 0, "the most cases each hospital asks predictions for, each month (0: all)")
	fs.StringVar(&cmd.bad, "bad", "", "the hospital that gets the bad model (default lakeshore)")
	fs.Var(&cmd.servers, "server", "prebuilt model server, PLATFORM=FILE (default: build serving/cmd/ward-serve)")
}

func (cmd *demoCmd) Run(ctx context.Context, app *App, _ []string) error {
	prebuilt := map[string]string{}
	for _, s := range cmd.servers {
		p, file, ok := strings.Cut(s, "=")
		if !ok {
			return exit.With(exit.Config, fmt.Errorf("--server %q: want PLATFORM=FILE, e.g. linux/amd64=bin/ward-serve", s))
		}
		prebuilt[p] = file
	}
	story := app.Stdout
	if app.JSON() {
		story = app.Stderr
	}
	d, sum, err := demo.Run(ctx, demo.Options{
		Dir: cmd.dir, Hospitals: cmd.hospitals, Months: cmd.months, Sample: cmd.n, Bad: cmd.bad, Servers: prebuilt,
		Out: story, Log: logging.New(app.Stderr, logging.Options{Format: app.Config.Get("log_format"), Level: "error"}),
	})
	if err != nil {
		return err
	}
	defer d.Close()
	if err := app.Print(sum, func(w io.Writer) { sum.WriteSummary(w) }); err != nil {
		return err
	}
	if !cmd.keep {
		return nil
	}
	fmt.Fprintf(app.Stderr, "\nEverything keeps running; Ctrl-C stops it. Try:\n")
	for _, l := range sum.Hospitals {
		fmt.Fprintf(app.Stderr, "  curl -s %s/v1/model | head -c 300; echo    # %s\n", l.Endpoint, l.Hospital)
	}
	if len(sum.Hospitals) > 0 {
		fmt.Fprintf(app.Stderr, "  curl -s %s/agent/status\n  curl -s %s/metrics | grep ward_serve\n", sum.Hospitals[0].Endpoint, sum.Hospitals[0].Endpoint)
	}
	<-ctx.Done()
	fmt.Fprintln(app.Stderr, "stopping")
	return nil
}
