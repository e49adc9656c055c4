package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/internal/logging"
	"github.com/wardml/ward/pipelines/ingest"
	"github.com/wardml/ward/pipelines/ingest/decrypt"
	"github.com/wardml/ward/pipelines/ingest/fetch"
	"github.com/wardml/ward/pipelines/ingest/staging"
	"github.com/wardml/ward/pipelines/store"
)

// ingestCmd is one command line of ward ingest: its flags.
type ingestCmd struct {
	hospitals        stringList
	all, strict      bool
	from             string
	jobs             int
	settle, lockWait time.Duration
}

func init() {
	register(&Command{
		Name:    "ingest",
		Summary: "Fetch the hospitals' extracts from SFTP, decrypt, validate and load them into the database",
		Usage:   "ingest (--hospital ID ... | --all) [--from DIR] [--strict] [--output json]",
		Help: `For each hospital: takes its lock in the database, lists its inbound folder on
WARD_SFTP (or, with --from DIR, the same layout in a local folder, for
backfills), skips the files the ledger has loaded (same name and size),
downloads the rest into WARD_STAGING (still encrypted, by SHA-256), then file
by file (the contract's table order, then by name; prediction logs last)
decrypts (WARD_PGP_KEY, WARD_AGE_IDENTITY), validates against the contract and
loads it into WARD_DATABASE in one transaction. A file whose content was
loaded under another name is recorded as a duplicate and not loaded again.

A row that breaks the contract is rejected and kept, encrypted like the
extract, in WARD_STAGING/reports/<id>/ beside the file's validation report;
the file's good rows load. A file that fails as a whole (it cannot be
decrypted, its header is wrong, more rows are rejected than the contract's
max_rejected_rows) is quarantined: nothing of it loads, and the next run
tries it again. A file that is still being written waits for a later run.

When another ward ingest holds a hospital, this one waits for it (up to
--lock-wait), then skips what it loaded. On a terminal, progress bars show
files and bytes; otherwise one log line per file (event.action ingest.file).
With WARD_MANIFEST_REPO set, predictions of a model version that was never
deployed are counted and reported.

Exit codes: 0 when every file was handled (quarantines included: the
summary lists them); 1 when a file failed (a download or the database died:
the next run loads it) or a hospital could not be ingested, or, with
--strict, when a file was quarantined or refused; 2 for a bad setting, or an
SFTP server or database that cannot be reached.`,
		Example: `ward ingest --all
ward ingest --hospital st-olaf --hospital riverside --strict
ward ingest --hospital st-olaf --from /archive/2025 --output json`,
		Output: true,
		New:    func() Runner { return &ingestCmd{} },
	})
}

func (cmd *ingestCmd) Flags(fs *flag.FlagSet) {
	fs.Var(&cmd.hospitals, "hospital", "hospital `ID` (repeatable, or comma-separated)")
	fs.BoolVar(&cmd.all, "all", false, "every hospital of WARD_HOSPITALS")
	fs.StringVar(&cmd.from, "from", "", "read the drop-box layout from a local `DIR` instead of SFTP (backfills)")
	fs.BoolVar(&cmd.strict, "strict", false, "exit 1 when a file is quarantined or refused")
	fs.IntVar(&cmd.jobs, "jobs", 4, "downloads at once")
	fs.DurationVar(&cmd.settle, "settle", 5*time.Second, "time between the two listings that tell a complete file from one still being written")
	fs.DurationVar(&cmd.lockWait, "lock-wait", 30*time.Minute, "how long to wait for a hospital that another ward ingest holds")
}

func (cmd *ingestCmd) Run(ctx context.Context, app *App, _ []string) error {
	cfg := app.Config
	hs, err := contract.Select(cfg.Hospitals(), cmd.hospitals, cmd.all)
	if err != nil {
		return exit.With(exit.Config, err)
	}
	keys, err := decrypt.Load(decrypt.WithPGPKey(cfg.Get("pgp_key"), cfg.Get("pgp_passphrase")), decrypt.WithAgeIdentity(cfg.Get("age_identity")))
	if err != nil {
		return exit.With(exit.Config, err)
	}
	stage, err := staging.Open(cfg.Staging())
	if err != nil {
		return exit.With(exit.Config, err)
	}
	src, err := ingestSource(ctx, app, cmd.from)
	if err != nil {
		return exit.With(exit.Config, err)
	}
	if c, ok := src.(io.Closer); ok {
		defer c.Close()
	}
	st, err := store.Open(ctx, cfg.Database())
	if err != nil {
		return err
	}
	defer st.Close()

	opts := []ingest.Option{ingest.WithJobs(cmd.jobs), ingest.WithSettle(cmd.settle), ingest.WithLockWait(cmd.lockWait), ingest.WithLogger(app.Log)}
	var bar *ingestBar
	if logging.IsTerminal(app.Stderr) {
		// The bars say what the per-file lines would; warnings and
		// errors still show.
		bar = &ingestBar{w: app.Stderr}
		opts = append(opts, ingest.WithProgress(bar),
			ingest.WithLogger(logging.New(app.Stderr, logging.Options{Format: cfg.Get("log_format"), Level: "warn"})))
	}
	if cfg.ManifestRepo() != "" {
		opts = append(opts, ingest.WithModelVersions(deployedVersions(app)))
	}
	sum := ingest.Run(ctx, hs, src, st, stage, keys, opts...)
	if bar != nil {
		bar.finish()
	}
	total := sum.Total()
	if err := app.Print(struct {
		*ingest.Summary
		Total ingest.HospitalResult `json:"total"`
	}{sum, total}, func(w io.Writer) { printIngest(w, sum, total) }); err != nil {
		return err
	}
	switch {
	case ctx.Err() != nil:
		return exit.With(exit.Failure, fmt.Errorf("interrupted: %w", ctx.Err()))
	case len(sum.Errors()) > 0:
		return exit.With(exit.Failure, fmt.Errorf("%d hospital(s) could not be ingested: %s", len(sum.Errors()), strings.Join(sum.Errors(), "; ")))
	case total.Failed > 0:
		return exit.With(exit.Failure, fmt.Errorf("%d file(s) failed; the next run tries them again", total.Failed))
	case cmd.strict && total.Quarantined+total.Refused > 0:
		return exit.With(exit.Failure, fmt.Errorf("--strict: %d file(s) quarantined, %d refused", total.Quarantined, total.Refused))
	}
	return nil
}

// ingestSource is the drop box: the local folder of --from, else WARD_SFTP.
func ingestSource(ctx context.Context, app *App, from string) (fetch.Source, error) {
	if from != "" {
		fi, err := os.Stat(from)
		if err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("--from %s: not a folder", from)
		}
		return fetch.Dir(from), nil
	}
	cfg := app.Config
	if cfg.SFTP() == "" {
		return nil, errors.New("WARD_SFTP is not set: give the drop box as sftp://user@host:port/base/path, or read a local folder with --from DIR")
	}
	return fetch.Dial(ctx, fetch.SFTPConfig{URL: cfg.SFTP(), Key: cfg.Get("sftp_key"), KnownHosts: cfg.Get("known_hosts")})
}

// deployedVersions reads the model versions each hospital has had
// deployed (manifest's Versions): the versions ward knows.
func deployedVersions(app *App) func(ctx context.Context, hospital string) ([]string, error) {
	return func(ctx context.Context, hospital string) ([]string, error) {
		r, err := openManifest(app, &manifestFlags{branch: "main"})
		if err != nil {
			return nil, err
		}
		return r.Versions(ctx, hospital)
	}
}

func printIngest(w io.Writer, sum *ingest.Summary, total ingest.HospitalResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "hospital\tfetched\tloaded\tskipped\tduplicate\tquarantined\tfailed\twaiting\trows loaded\treplaced\trejected\t")
	row := func(r ingest.HospitalResult) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", r.Hospital, r.Fetched, r.Loaded, r.Skipped, r.Duplicate,
			r.Quarantined, r.Failed, r.Waiting, r.Rows, r.Replaced, r.Rejected)
	}
	for _, h := range sum.Hospitals {
		row(h)
	}
	if len(sum.Hospitals) > 1 {
		row(total)
	}
	tw.Flush()

	var notes []string
	for _, h := range sum.Hospitals {
		if h.Error != "" {
			notes = append(notes, fmt.Sprintf("%s: FAILED: %s", h.Hospital, h.Error))
		}
		if h.KeyProblem != "" {
			notes = append(notes, fmt.Sprintf("%s: LIKELY MISCONFIGURED KEY: %s", h.Hospital, h.KeyProblem))
		}
		for _, f := range h.Files {
			switch f.Outcome {
			case ingest.Quarantined, ingest.Failed, ingest.Refused, ingest.Waiting, ingest.Duplicate:
				notes = append(notes, f.Message())
			}
		}
		if len(h.Reports) > 0 {
			notes = append(notes, fmt.Sprintf("%s: validation reports of the quarantined files:\n    %s", h.Hospital, strings.Join(h.Reports, "\n    ")))
		}
		if h.Duplicates > 0 || len(h.UnknownModels) > 0 {
			s := fmt.Sprintf("%s: predictions: %d duplicates not loaded again", h.Hospital, h.Duplicates)
			if len(h.UnknownModels) > 0 {
				versions := make([]string, 0, len(h.UnknownModels))
				for v, n := range h.UnknownModels {
					versions = append(versions, fmt.Sprintf("%s (%d)", v, n))
				}
				sort.Strings(versions)
				s += "; loaded, of model versions never deployed: " + strings.Join(versions, ", ")
			}
			notes = append(notes, s)
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
	}
	fmt.Fprintf(w, "\n%d file(s) loaded, %d skipped, %d quarantined, %d failed in %.1fs.\n", total.Loaded, total.Skipped, total.Quarantined, total.Failed, sum.Seconds)
}

// ingestBar draws the run's progress on one terminal line: files done,
// bytes downloaded and bytes loaded, each against what is announced.
type ingestBar struct {
	w                 io.Writer
	mu                sync.Mutex
	files, done       int
	bytes, down, load int64
	drawn             time.Time
	started           bool
}

func (b *ingestBar) Add(files int, bytes int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.files += files
	b.bytes += bytes
	b.draw(true)
}

func (b *ingestBar) Downloaded(n int64) { b.count(&b.down, n) }
func (b *ingestBar) Loaded(n int64)     { b.count(&b.load, n) }

func (b *ingestBar) count(c *int64, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	*c += n
	b.draw(false)
}

func (b *ingestBar) Done(f ingest.FileResult) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch f.Outcome {
	case ingest.Waiting, ingest.Refused, ingest.Skipped:
		// Never announced: they were not to be fetched.
		return
	}
	b.done++
	b.draw(true)
}

func (b *ingestBar) draw(force bool) {
	if !force && time.Since(b.drawn) < 100*time.Millisecond {
		return
	}
	b.drawn, b.started = time.Now(), true
	fmt.Fprintf(b.w, "\r\033[Kfiles %s %d/%d  download %s %s  load %s %s",
		bar(int64(b.done), int64(b.files)), b.done, b.files,
		bar(b.down, b.bytes), mibOf(b.down, b.bytes), bar(min(b.load, b.bytes), b.bytes), mibOf(min(b.load, b.bytes), b.bytes))
}

func (b *ingestBar) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		b.draw(true)
		fmt.Fprintln(b.w)
	}
}

func bar(n, total int64) string {
	const width = 20
	fill := width
	if total > 0 {
		fill = int(min(n, total) * width / total)
	}
	return "[" + strings.Repeat("=", fill) + strings.Repeat(" ", width-fill) + "]"
}

func mibOf(n, total int64) string {
	return fmt.Sprintf("%.1f/%.1f MiB", float64(n)/(1<<20), float64(total)/(1<<20))
}
