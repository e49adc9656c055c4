package main

import (
	"context"
	"fmt"
	"io"

	"github.com/wardml/ward/internal/version"
)

func init() {
	register(&Command{
		Name:    "version",
		Summary: "Print ward's version, commit and Go version",
		Usage:   "version [--output json]",
		Example: "ward version --output json",
		Output:  true,
		New:     func() Runner { return noFlags(runVersion) },
	})
}

func runVersion(_ context.Context, app *App, _ []string) error {
	v := version.Get()
	return app.Print(v, func(w io.Writer) {
		fmt.Fprintf(w, "ward %s\ncommit %s\n%s\n", v.Version, v.Commit, v.Go)
	})
}
