package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/tools/manifest"
)

// historyCmd is one command line of ward history: its flags.
type historyCmd struct {
	f manifestFlags
}

func init() {
	register(&Command{
		Name:    "history",
		Summary: "Show a hospital's deploys and rollbacks, from the manifest repo's commits",
		Usage:   "history --hospital ID [--output json]",
		Help: `Reads the timeline from the commits that changed hospitals/<id>/: time,
commit, author, action (deploy, rollback, reapply, revert, change), the
version, digest and metrics live after it, and which commit reverted which.
A git revert made by hand counts as a rollback, like one of ward rollback.
Digests rolled back and not deployed since are listed as rejected.

With a trust file (base/trust.txt, or WARD_MANIFEST_TRUST) the history is
checked first, as the agent checks it: the last commits to change the
hospital's folder and base/ must be signed by a listed key, and every change
of the trust file by a key listed before it; else exit 1, naming the commit.`,
		Example: "ward history --hospital st-olaf --output json",
		Output:  true,
		New:     func() Runner { return &historyCmd{} },
	})
}

func (cmd *historyCmd) Flags(fs *flag.FlagSet) {
	fs.StringVar(&cmd.f.hospital, "hospital", "", "the hospital's id (its folder under hospitals/)")
	fs.StringVar(&cmd.f.branch, "branch", "main", "branch of the manifest repo")
}

func (cmd *historyCmd) Run(ctx context.Context, app *App, _ []string) error {
	if cmd.f.hospital == "" {
		return exit.With(exit.Config, errors.New("want --hospital ID"))
	}
	r, err := openManifest(app, &cmd.f)
	if err != nil {
		return err
	}
	tl, err := r.History(ctx, cmd.f.hospital)
	if err != nil {
		return manifestError(err)
	}
	return app.Print(tl, func(w io.Writer) { printTimeline(w, tl) })
}

func printTimeline(w io.Writer, tl *manifest.Timeline) {
	switch {
	case tl.Live != nil:
		fmt.Fprintf(w, "%s: live %s (%s)\n", tl.Hospital, tl.Live.Version, tl.Live.Image)
	case tl.Problem != "":
		fmt.Fprintf(w, "%s: invalid: %s\n", tl.Hospital, tl.Problem)
	default:
		fmt.Fprintf(w, "%s: nothing deployed\n", tl.Hospital)
	}
	switch p := tl.Provenance; {
	case p != nil && p.Trusted && p.Decider != nil:
		fmt.Fprintf(w, "signed: its release is decided by %s (%q), signed by %s\n", shortSHA(p.Decider.Commit), p.Decider.Subject, p.Decider.Signer)
	case p != nil && !p.Trusted:
		fmt.Fprintln(w, "unsigned: the manifest has no trust file, so any commit counts")
	}
	for _, r := range tl.Rejected {
		fmt.Fprintf(w, "rejected: %s (%s), rolled back by %s; ward deploy refuses it without --force\n", r.Version, r.Digest, shortSHA(r.Commit))
	}
	if len(tl.Events) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tCOMMIT\tACTION\tVERSION\tDIGEST\tMETRICS\tAUTHOR\tNOTE")
	for _, e := range tl.Events {
		version, digest, metrics := "-", "-", "-"
		if e.Release != nil {
			version, digest = e.Release.Version, shortDigest(e.Release.Digest)
			if len(e.Release.Metrics) > 0 {
				var ms []string
				for _, k := range slices.Sorted(maps.Keys(e.Release.Metrics)) {
					ms = append(ms, fmt.Sprintf("%s=%g", k, e.Release.Metrics[k]))
				}
				metrics = strings.Join(ms, " ")
			}
		}
		var notes []string
		if e.Reverts != "" {
			notes = append(notes, "reverts "+shortSHA(e.Reverts))
		}
		if len(e.RevertedBy) > 0 {
			notes = append(notes, "reverted by "+shortList(e.RevertedBy))
		}
		if e.Rejected {
			notes = append(notes, "rejected")
		}
		if e.Problem != "" {
			notes = append(notes, "invalid: "+e.Problem)
		}
		if len(notes) == 0 {
			notes = []string{e.Subject}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format("2006-01-02 15:04:05Z"), shortSHA(e.Commit), e.Action, version, digest, metrics, e.Author, strings.Join(notes, "; "))
	}
	tw.Flush()
}

// shortDigest is sha256: and the first 12 hex digits.
func shortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}
