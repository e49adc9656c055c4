package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
)

func init() {
	register(&Command{
		Name:    "config",
		Summary: "Print the effective configuration, each value's source, secrets redacted",
		Usage:   "config [--output json]",
		Help: `Settings come from flags, then WARD_* environment variables, then a
ward.yaml file (--config, WARD_CONFIG, or ./ward.yaml), then defaults.`,
		Example: "WARD_DATABASE=postgres://ward@db:5432/ward ward config --registry localhost:5000",
		Output:  true,
		New:     func() Runner { return noFlags(runConfig) },
	})
}

func runConfig(_ context.Context, app *App, _ []string) error {
	entries := app.Config.Entries()
	return app.Print(entries, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tVALUE\tSOURCE")
		for _, e := range entries {
			v := e.Value
			if v == "" {
				v = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", e.Key, v, e.Source)
		}
		tw.Flush()
	})
}
