package main

import (
	"context"
	"errors"
	"flag"

	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/tools/manifest"
)

// rollbackCmd is one command line of ward rollback: its flags.
type rollbackCmd struct {
	f manifestFlags
}

func init() {
	register(&Command{
		Name:    "rollback",
		Summary: "Undo a hospital's last deploy with a revert commit",
		Usage:   "rollback --hospital ID [--to DIGEST|VERSION] [--expect-digest DIGEST] [--dry-run] [--output json]",
		Help: `Writes a true revert of the hospital's last deploy in effect (Revert
"<subject>", This reverts commit <sha>., and ward's trailers), as git revert
would, and pushes it. With --to, it reverts every deploy after that release,
newest first, one revert commit each. The digests rolled back are refused by
later deploys unless --force. It rolls back only the release it read
first (or --expect-digest DIGEST): when another landed in between, nothing
is committed and the error names the digest found.

When a file of the deploy changed since (a hand edit), the rollback stops
and says which commit changed it: revert that change first, or deploy the
release you want with ward deploy --force.

Exit codes: 0 rolled back or nothing to do; 1 a conflict, nothing to roll
back to, another release than expected, an untrusted manifest history, or
invalid manifest content; 2 usage, an unknown --to release, an
unreachable or uninitialized manifest repo.`,
		Example: "ward rollback --hospital st-olaf\nward rollback --hospital st-olaf --to v1",
		Output:  true,
		New:     func() Runner { return &rollbackCmd{} },
	})
}

func (cmd *rollbackCmd) Flags(fs *flag.FlagSet) {
	cmd.f.bind(fs, true)
	fs.StringVar(&cmd.f.to, "to", "", "roll back every deploy after this release (digest or version)")
	fs.StringVar(&cmd.f.expect, "expect-digest", "", "commit only if the hospital's release holds `DIGEST`; default: the one live when the rollback starts")
}

func (cmd *rollbackCmd) Run(ctx context.Context, app *App, _ []string) error {
	if cmd.f.hospital == "" {
		return exit.With(exit.Config, errors.New("want --hospital ID"))
	}
	r, err := openManifest(app, &cmd.f)
	if err != nil {
		return err
	}
	res, err := r.Rollback(ctx, manifest.Rollback{Hospital: cmd.f.hospital, To: cmd.f.to, DryRun: cmd.f.dryRun, ExpectDigest: cmd.f.expect})
	if err != nil {
		return manifestError(err)
	}
	return printResult(app, r, res)
}
