// Package ingest is the first stage of the loop, `ward ingest`: it brings
// each hospital's extracts from its drop box into the RDBMS. It composes
// the stages of its sub-packages with the store:
//
//	fetch (list, download) -> staging -> decrypt -> extract (parse, validate) -> store.Load
//
// Per hospital, Run takes the hospital's lock in the database (so that two
// runs at once never load a file twice; the second waits for the first,
// then finds its files loaded), lists the inbound folder, skips the files
// the ledger has loaded (same name and size), fetches the rest a few at a
// time into staging, and then, one file at a time in a fixed order (the
// contract's table order, then the name: patients and doctors before
// cases, a correction after its month, prediction logs last), decrypts,
// validates and loads each in one transaction, and records its outcome in
// the ledger:
//
//   - loaded: its good rows are in the database; the rows it rejected are
//     kept, encrypted like the extract, beside its validation report;
//   - skipped: loaded before; duplicate: the same content was loaded
//     under another name (recorded, not loaded again);
//   - quarantined: the file fails its contract as a whole (it cannot be
//     decrypted, its header is wrong, too many rows are rejected, ...):
//     nothing of it is loaded, the reason is in the ledger, the report and
//     its rejected rows are kept, and the next run tries it again (the
//     contract or the key may have been fixed meanwhile);
//   - failed: something that is not the file's fault (the connection to
//     the server or the database died): nothing is recorded as loaded, and
//     the next run loads it, exactly once.
//
// A bad file never stops the run: the good files of the same run load.
package ingest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/pipelines/ingest/decrypt"
	"github.com/wardml/ward/pipelines/ingest/fetch"
	"github.com/wardml/ward/pipelines/ingest/staging"
	"github.com/wardml/ward/pipelines/store"
)

type options struct {
	jobs     int
	settle   time.Duration
	lockWait time.Duration
	log      *slog.Logger
	progress Progress
	models   func(ctx context.Context, hospital string) ([]string, error)
}

// Option changes Run.
type Option func(*options)

// WithJobs sets how many files are downloaded at once (default 4).
func WithJobs(n int) Option { return func(o *options) { o.jobs = max(n, 1) } }

// WithSettle sets the time between the two listings that tell a complete
// file from one still being written (default 5s; fetch.WithSettle).
func WithSettle(d time.Duration) Option { return func(o *options) { o.settle = d } }

// WithLockWait sets how long a run waits for a hospital that another run
// holds (default 30 minutes); then the hospital fails with a message that
// names the holder.
func WithLockWait(d time.Duration) Option { return func(o *options) { o.lockWait = d } }

// WithLogger logs one line per file (ECS: event.action ingest.file) and
// what goes wrong (default: discarded).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithProgress reports progress to p (a terminal's progress bars).
func WithProgress(p Progress) Option { return func(o *options) { o.progress = p } }

// WithModelVersions gives the model versions ward knows for a hospital
// (those deployed: the manifest repo's history). Predictions of another
// version are loaded, and counted and reported as unknown. Without it,
// versions are not checked.
func WithModelVersions(known func(ctx context.Context, hospital string) ([]string, error)) Option {
	return func(o *options) { o.models = known }
}

// Run ingests the hospitals' files from src into st. It always returns a
// summary: what failed is in it, file by file, and a failure of one file
// or hospital never stops the others.
func Run(ctx context.Context, hospitals []*contract.Hospital, src fetch.Source, st *store.Store, stage *staging.Store, keys *decrypt.Keys, opts ...Option) *Summary {
	o := options{jobs: 4, settle: 5 * time.Second, lockWait: 30 * time.Minute, log: slog.New(slog.DiscardHandler), progress: noProgress{}}
	for _, opt := range opts {
		opt(&o)
	}
	start := time.Now()
	p := &pipeline{o: o, src: src, st: st, stage: stage, keys: keys}

	// Listing waits out the settle time: list every hospital at once, so
	// that a run waits it once.
	listings := make([]*fetch.Listing, len(hospitals))
	listErrs := make([]error, len(hospitals))
	var wg sync.WaitGroup
	for i, h := range hospitals {
		wg.Go(func() { listings[i], listErrs[i] = fetch.List(ctx, src, h, fetch.WithSettle(o.settle)) })
	}
	wg.Wait()

	sum := &Summary{}
	for i, h := range hospitals {
		r := HospitalResult{Hospital: h.ID}
		if listErrs[i] != nil {
			r.Error = listErrs[i].Error()
			o.log.Error("ingest: cannot list the hospital's folder", "event.action", "ingest.hospital", "event.outcome", "failure",
				"ward.hospital", h.ID, "error.message", r.Error)
		} else {
			p.hospital(ctx, h, listings[i], &r)
		}
		sum.Hospitals = append(sum.Hospitals, r)
	}
	sum.Seconds = time.Since(start).Seconds()
	return sum
}

type pipeline struct {
	o     options
	src   fetch.Source
	st    *store.Store
	stage *staging.Store
	keys  *decrypt.Keys
}

// hospital runs one hospital's listing through the pipeline.
func (p *pipeline) hospital(ctx context.Context, h *contract.Hospital, l *fetch.Listing, r *HospitalResult) {
	r.Ignored = len(l.Ignored)
	for _, w := range l.Waiting {
		p.done(r, FileResult{Hospital: h.ID, Name: w.Name, Table: tableOf(w.Table), Size: w.Size, Outcome: Waiting, Reason: w.Reason})
	}
	for _, err := range l.Refused {
		p.done(r, FileResult{Hospital: h.ID, Outcome: Refused, Reason: err.Error()})
	}
	if len(l.Ready) == 0 {
		return
	}

	lock, err := p.lock(ctx, h.ID)
	if err != nil {
		r.Error = err.Error()
		p.o.log.Error("ingest: "+r.Error, "event.action", "ingest.hospital", "event.outcome", "failure", "ward.hospital", h.ID)
		return
	}
	defer lock.Unlock()

	ledger, err := p.st.Files(ctx, store.FileQuery{Hospital: h.ID})
	if err != nil {
		r.Error = err.Error()
		return
	}
	byName := map[string][]store.File{}
	for _, e := range ledger {
		byName[e.Name] = append(byName[e.Name], e)
	}
	var todo []fetch.File
	for _, f := range l.Ready {
		if e := known(byName[f.Name], f); e != nil {
			p.done(r, FileResult{Hospital: h.ID, Name: f.Name, Table: tableOf(f.Table), Size: f.Size, SHA256: e.SHA256, Outcome: Skipped,
				Reason: fmt.Sprintf("%s on %s (same name and size)", e.State, e.Changed.Format(time.RFC3339))})
			continue
		}
		todo = append(todo, f)
	}
	slices.SortFunc(todo, func(a, b fetch.File) int {
		return cmp.Or(cmp.Compare(tableRank(h, a.Table), tableRank(h, b.Table)), cmp.Compare(a.Name, b.Name))
	})
	var bytes int64
	for _, f := range todo {
		bytes += f.Size
	}
	p.o.progress.Add(len(todo), bytes)

	fetched := fetch.Fetch(ctx, &meteredSource{Source: p.src, progress: p.o.progress}, p.stage, h, todo, fetch.WithJobs(p.o.jobs))
	hs := &hospitalState{h: h, previous: previousRows(h, ledger)}
	for _, f := range fetched {
		if f.Err != nil {
			p.done(r, FileResult{Hospital: h.ID, Name: f.File.Name, Table: tableOf(f.File.Table), Size: f.File.Size, Outcome: Failed, Reason: f.Err.Error()})
			continue
		}
		r.Fetched++
		p.done(r, p.file(ctx, hs, f.Entry))
	}
	r.KeyProblem = keyProblem(h, r.Files)
	if r.KeyProblem != "" {
		p.o.log.Error("ingest: "+r.KeyProblem, "event.action", "ingest.hospital", "event.outcome", "failure", "ward.hospital", h.ID)
	}
}

// lock takes the hospital's lock, saying so when it has to wait.
func (p *pipeline) lock(ctx context.Context, hospital string) (*store.Lock, error) {
	quick, cancel := context.WithTimeout(ctx, time.Second)
	lock, err := p.st.Lock(quick, hospital, "ingest")
	cancel()
	var locked *store.LockedError
	if !errors.As(err, &locked) || ctx.Err() != nil {
		return lock, err
	}
	who := "another process"
	if hd := locked.Holder; hd != nil {
		who = fmt.Sprintf("%s (pid %d on %s)", hd.What, hd.PID, hd.Host)
	}
	p.o.log.Info(fmt.Sprintf("ingest %s: locked by %s; waiting up to %s for it to finish", hospital, who, p.o.lockWait),
		"event.action", "ingest.lock", "ward.hospital", hospital)
	wait, cancel := context.WithTimeout(ctx, p.o.lockWait)
	defer cancel()
	return p.st.Lock(wait, hospital, "ingest")
}

// known returns the ledger entry (of those with the file's name) by which
// a listed file counts as done: one loaded, or recorded as a duplicate,
// with the same size. The content is not known before the download; a
// file re-sent under its old name with other bytes of the same size is
// taken for the old one.
func known(entries []store.File, f fetch.File) *store.File {
	for i, e := range entries {
		if e.Size == f.Size && (e.State == store.Loaded || e.State == store.Duplicate) {
			return &entries[i]
		}
	}
	return nil
}

// tableRank orders files by their table's place in the contract; the
// prediction logs come last.
func tableRank(h *contract.Hospital, table string) int {
	for i, t := range h.Tables {
		if t.Name == table {
			return i
		}
	}
	return len(h.Tables)
}

// tableOf is the ledger's name for a file's table: a prediction log is of
// no contract table (fetch and staging say "").
func tableOf(table string) string {
	if table == "" {
		return store.PredictionsTable
	}
	return table
}

// previousRows reads, from the ledger (newest first), the row count of
// the last regular extract of each table.
func previousRows(h *contract.Hospital, ledger []store.File) map[string]int64 {
	prev := map[string]int64{}
	for _, e := range ledger {
		if _, seen := prev[e.Table]; seen || e.State != store.Loaded || h.IsCorrection(e.Name) {
			continue
		}
		prev[e.Table] = e.Inserted + e.Updated + e.Rejected
	}
	return prev
}

func keyProblem(h *contract.Hospital, files []FileResult) string {
	tried, keyErrs := 0, 0
	for _, f := range files {
		switch f.Outcome {
		case Loaded, Quarantined:
			tried++
			if f.KeyError {
				keyErrs++
			}
		}
	}
	if tried == 0 || keyErrs < tried {
		return ""
	}
	setting := "WARD_PGP_KEY"
	if h.Inbound.Encryption == decrypt.Age {
		setting = "WARD_AGE_IDENTITY"
	}
	return fmt.Sprintf("every file of %s (%d) failed to decrypt with a key error: %s is likely the wrong key for this hospital (its files are quarantined; fix the key and run again)",
		h.ID, tried, setting)
}

// done records a file's result, logs it and reports it.
func (p *pipeline) done(r *HospitalResult, f FileResult) {
	r.add(f)
	p.o.progress.Done(f)
	level, outcome := slog.LevelInfo, "success"
	switch f.Outcome {
	case Quarantined, Refused:
		level, outcome = slog.LevelWarn, "failure"
	case Failed:
		level, outcome = slog.LevelError, "failure"
	case Waiting:
		outcome = "unknown"
	}
	attrs := []slog.Attr{
		slog.String("event.action", "ingest.file"), slog.String("event.outcome", outcome),
		slog.String("ward.hospital", f.Hospital), slog.String("ward.file", f.Name), slog.String("ward.table", f.Table),
		slog.String("ward.outcome", string(f.Outcome)), slog.Int64("ward.rows", f.Loaded+f.Replaced),
		slog.Int64("ward.replaced", f.Replaced), slog.Int64("ward.rejected", f.Rejected),
	}
	if f.Refused > 0 {
		attrs = append(attrs, slog.Int64("ward.refused", f.Refused))
	}
	if f.SHA256 != "" {
		attrs = append(attrs, slog.String("file.hash.sha256", f.SHA256))
	}
	if f.Report != "" {
		attrs = append(attrs, slog.String("ward.report", f.Report))
	}
	p.o.log.LogAttrs(context.Background(), level, f.Message(), attrs...)
}
