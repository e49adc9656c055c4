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
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/pipelines/ingest/decrypt"
	"github.com/wardml/ward/pipelines/ingest/extract"
	"github.com/wardml/ward/pipelines/ingest/fetch"
	"github.com/wardml/ward/pipelines/ingest/staging"
	"github.com/wardml/ward/pipelines/store"
)

// Outcome is what became of one file in a run.
type Outcome string

// The outcomes of a file.
const (
	// Loaded: its good rows are in the database.
	Loaded Outcome = "loaded"
	// Skipped: the ledger has it loaded already.
	Skipped Outcome = "skipped"
	// Duplicate: its content was loaded under another name.
	Duplicate Outcome = "duplicate"
	// Quarantined: it fails its contract; nothing of it is loaded.
	Quarantined Outcome = "quarantined"
	// Failed: a download or the database failed; the next run tries again.
	Failed Outcome = "failed"
	// Waiting: still being written on the server; a later run takes it.
	Waiting Outcome = "waiting"
	// Refused: a name that is not safe to handle (../, control characters).
	Refused Outcome = "refused"
)

// FileResult is what a run did with one file.
type FileResult struct {
	Hospital string  `json:"hospital"`
	Name     string  `json:"name,omitempty"`
	Table    string  `json:"table,omitempty"`
	Size     int64   `json:"size"`
	SHA256   string  `json:"sha256,omitempty"`
	Outcome  Outcome `json:"outcome"`
	Reason   string  `json:"reason,omitempty"`
	// Rows were read; Loaded were new keys, Replaced replaced a row of the
	// same key (a correction); Rejected failed validation.
	Rows     int64 `json:"rows"`
	Loaded   int64 `json:"loaded"`
	Replaced int64 `json:"replaced"`
	Rejected int64 `json:"rejected"`
	// Refused rows were good, but the database holds a newer row of
	// their key (a late extract of an older period), which it kept.
	Refused int64 `json:"refused,omitempty"`
	// Duplicates are predictions recorded before, or repeated in the log.
	Duplicates int64 `json:"duplicates,omitempty"`
	// UnknownModels counts the predictions of each model version that ward
	// does not know (loaded all the same; feedback decides).
	UnknownModels map[string]int64 `json:"unknown_model_versions,omitempty"`
	// Report is the validation report (text; a .json lies beside it) and
	// Rejects the file of rejected rows, when the file had any.
	Report  string `json:"report,omitempty"`
	Rejects string `json:"rejected_rows_file,omitempty"`
	// KeyError: decryption failed because of ward's key, not the file.
	KeyError bool `json:"key_error,omitempty"`
}

// Message is the file's outcome in one line, for a person.
func (f FileResult) Message() string {
	name := "ingest " + f.Hospital + "/" + f.Name
	if f.Name == "" {
		name = "ingest " + f.Hospital
	}
	switch f.Outcome {
	case Loaded:
		s := fmt.Sprintf("%s: loaded %d rows", name, f.Loaded+f.Replaced)
		if f.Replaced > 0 {
			s += fmt.Sprintf(" (%d replaced)", f.Replaced)
		}
		if f.Refused > 0 {
			s += fmt.Sprintf(", %d refused (newer rows of their keys kept; see %s)", f.Refused, f.Report)
		}
		if f.Rejected > 0 {
			s += fmt.Sprintf(", %d rejected (kept in %s)", f.Rejected, f.Rejects)
		}
		if f.Duplicates > 0 {
			s += fmt.Sprintf(", %d duplicate predictions", f.Duplicates)
		}
		if n := len(f.UnknownModels); n > 0 {
			s += fmt.Sprintf(", predictions of %d unknown model versions (%s)", n, strings.Join(slices.Sorted(maps.Keys(f.UnknownModels)), ", "))
		}
		return s
	case Quarantined:
		return name + ": " + f.Reason + "; file quarantined, nothing loaded"
	case Failed:
		return name + ": " + f.Reason + "; nothing loaded, the next run tries again"
	}
	return name + ": " + string(f.Outcome) + ": " + f.Reason
}

// HospitalResult is what a run did for one hospital.
type HospitalResult struct {
	Hospital string       `json:"hospital"`
	Files    []FileResult `json:"files"`
	// Counts of files: Fetched were downloaded in this run.
	Fetched     int `json:"fetched"`
	Loaded      int `json:"loaded"`
	Skipped     int `json:"skipped"`
	Duplicate   int `json:"duplicate"`
	Quarantined int `json:"quarantined"`
	Failed      int `json:"failed"`
	Waiting     int `json:"waiting"`
	Refused     int `json:"refused"`
	Ignored     int `json:"ignored"`
	// Counts of rows, over the files loaded (predictions included).
	Rows     int64 `json:"rows_loaded"`
	Replaced int64 `json:"rows_replaced"`
	Rejected int64 `json:"rows_rejected"`
	// RowsRefused were good, but newer rows of their keys were kept.
	RowsRefused int64 `json:"rows_refused,omitempty"`
	// Duplicates and UnknownModels count predictions.
	Duplicates    int64            `json:"duplicate_predictions,omitempty"`
	UnknownModels map[string]int64 `json:"unknown_model_versions,omitempty"`
	// Reports are the validation reports of the quarantined files.
	Reports []string `json:"reports,omitempty"`
	// KeyProblem is set when every file that was decrypted failed with a
	// key error: the key setting is likely wrong, not the files.
	KeyProblem string `json:"key_problem,omitempty"`
	// Error is a failure of the whole hospital (its folder could not be
	// listed, its lock could not be had).
	Error string `json:"error,omitempty"`
}

func (r *HospitalResult) add(f FileResult) {
	r.Files = append(r.Files, f)
	switch f.Outcome {
	case Loaded:
		r.Loaded++
		r.Rows += f.Loaded + f.Replaced
		r.Replaced += f.Replaced
		r.Rejected += f.Rejected
		r.RowsRefused += f.Refused
		r.Duplicates += f.Duplicates
		for v, n := range f.UnknownModels {
			if r.UnknownModels == nil {
				r.UnknownModels = map[string]int64{}
			}
			r.UnknownModels[v] += n
		}
	case Skipped:
		r.Skipped++
	case Duplicate:
		r.Duplicate++
	case Quarantined:
		r.Quarantined++
		r.Rejected += f.Rejected
		if f.Report != "" {
			r.Reports = append(r.Reports, f.Report)
		}
	case Failed:
		r.Failed++
	case Waiting:
		r.Waiting++
	case Refused:
		r.Refused++
	}
}

// Summary is what a run did.
type Summary struct {
	Hospitals []HospitalResult `json:"hospitals"`
	Seconds   float64          `json:"seconds"`
}

// Total sums the hospitals' counts; its Reports are all of them, and it
// lists no Files (each hospital does).
func (s *Summary) Total() HospitalResult {
	t := HospitalResult{Hospital: "total"}
	for _, h := range s.Hospitals {
		for _, f := range h.Files {
			t.add(f)
		}
		t.Fetched += h.Fetched
		t.Ignored += h.Ignored
	}
	t.Files = nil
	return t
}

// Errors lists the hospitals that failed as a whole.
func (s *Summary) Errors() []string {
	var out []string
	for _, h := range s.Hospitals {
		if h.Error != "" {
			out = append(out, h.Hospital+": "+h.Error)
		}
	}
	return out
}

// Progress is told what a run is doing, to draw progress bars.
type Progress interface {
	// Add announces files to process, and their bytes.
	Add(files int, bytes int64)
	// Downloaded reports bytes downloaded; Loaded bytes of the staged
	// files read into the database.
	Downloaded(n int64)
	Loaded(n int64)
	// Done reports a finished file.
	Done(f FileResult)
}

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

type noProgress struct{}

func (noProgress) Add(int, int64)   {}
func (noProgress) Downloaded(int64) {}
func (noProgress) Loaded(int64)     {}
func (noProgress) Done(FileResult)  {}

// hospital runs one hospital's listing through the pipeline.
func (p *pipeline) hospital(ctx context.Context, h *contract.Hospital, l *fetch.Listing, r *HospitalResult) {
	r.Ignored = len(l.Ignored)
	for _, w := range l.Waiting {
		p.done(r, FileResult{Hospital: h.ID, Name: w.Name, Table: tableOf(w.File), Size: w.Size, Outcome: Waiting, Reason: w.Reason})
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
			p.done(r, FileResult{Hospital: h.ID, Name: f.Name, Table: tableOf(f), Size: f.Size, SHA256: e.SHA256, Outcome: Skipped,
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
			p.done(r, FileResult{Hospital: h.ID, Name: f.File.Name, Table: tableOf(f.File), Size: f.File.Size, Outcome: Failed, Reason: f.Err.Error()})
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

func tableOf(f fetch.File) string {
	if f.Table == "" {
		return store.PredictionsTable
	}
	return f.Table
}

// hospitalState is what the checks of one hospital's files carry from
// file to file.
type hospitalState struct {
	h *contract.Hospital
	// previous is the row count of the last extract of each table that was
	// not a correction (the contract's row_count_ratio compares with it).
	previous map[string]int64
	models   map[string]bool
	modelsOK bool
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

// file decrypts, validates and loads one staged file.
func (p *pipeline) file(ctx context.Context, hs *hospitalState, e *staging.Entry) FileResult {
	h := hs.h
	res := FileResult{Hospital: h.ID, Name: e.Name, Table: e.Table, Size: e.Size, SHA256: e.SHA256}
	if res.Table == "" {
		res.Table = store.PredictionsTable
	}
	entry := store.File{Hospital: h.ID, Name: e.Name, SHA256: e.SHA256, Size: e.Size, Table: res.Table, State: store.Fetched}

	// The same content loaded before, under this name or another.
	prev, err := p.st.Files(ctx, store.FileQuery{Hospital: h.ID, SHA256: e.SHA256, State: store.Loaded})
	if err != nil {
		return failed(res, err)
	}
	if len(prev) > 0 {
		return p.duplicate(ctx, res, entry, prev[0])
	}
	if err := p.st.Record(ctx, entry); err != nil {
		if errors.Is(err, store.ErrAlreadyLoaded) {
			return p.alreadyLoaded(ctx, res, entry)
		}
		return failed(res, err)
	}

	dir, err := p.stage.ReportDir(h.ID)
	if err != nil {
		return failed(res, err)
	}
	f, err := p.stage.Open(e.SHA256)
	if err != nil {
		return failed(res, err)
	}
	defer f.Close()
	meter := &meteredFile{File: f, progress: p.o.progress}
	// The rejected rows are patient data: encrypted like the extract.
	rejects := extract.NewRejectsFile(filepath.Join(dir, e.Name+".rejected"+rejectsExt(e.Table)+decrypt.Suffix(h.Inbound.Encryption)),
		func(w io.Writer) (io.WriteCloser, error) { return p.keys.Seal(w, h.Inbound.Encryption) })

	var rep *extract.Report
	var c store.Counts
	plain, err := p.keys.Open(meter, h, e.Name)
	switch {
	case err != nil:
		rep = extract.NewReport(h.ID, e.Name, err)
		var de *decrypt.Error
		res.KeyError = errors.As(err, &de) && de.Key
	case e.Table == "":
		pr := newPredictionReader(extract.LimitPlaintext(plain, h), h, e.Name, rejects, hs.knownModels(ctx, p))
		c, err = p.st.LoadPredictions(ctx, entry, pr.Rows(), store.WithRejected(func() int64 { return pr.rep.Rejected }))
		rep = pr.Report()
		res.UnknownModels = pr.unknown
		res.Duplicates = pr.duplicates
	default:
		t := h.Table(e.Table)
		x := extract.New(plain, h, t, e.Name, p.extractOptions(ctx, hs, e, rejects)...)
		opts := []store.LoadOption{store.WithRejected(func() int64 { return x.Report().Rejected }), store.WithPeriod(t.PeriodOf(e.Name))}
		if h.IsCorrection(e.Name) {
			opts = append(opts, store.WithReplace())
		}
		c, err = p.st.Load(ctx, entry, t, x.Rows(), opts...)
		rep = x.Report()
		if err == nil {
			refused(x, rep, c, h)
		}
	}
	rep.SHA256 = e.SHA256
	rep.ShowValues = h.Reports.ShowValues
	res.Rows, res.Rejected = rep.Rows, rep.Rejected
	var ferr error
	if rep.Rejects, ferr = rejects.Finish(); ferr != nil {
		// The rows went by on their way to the load: the load stands.
		p.o.log.Error("ingest: "+ferr.Error(), "ward.hospital", h.ID, "ward.file", e.Name)
	}

	var dup *store.DuplicateKeyError
	switch {
	case err == nil:
		res.Outcome, res.Loaded, res.Replaced, res.Refused = Loaded, c.Inserted, c.Updated, c.Refused
		res.Duplicates += c.Duplicates
		res.Rejects = rep.Rejects
		if !h.IsCorrection(e.Name) {
			hs.previous[res.Table] = rep.Rows
		}
		if rep.Rejected > 0 || rep.Refused > 0 {
			res.Report = p.writeReport(rep, dir)
		}
		return res
	case errors.Is(err, store.ErrAlreadyLoaded):
		return p.alreadyLoaded(ctx, res, entry)
	case rep.Verdict == extract.Quarantined:
		res.Reason = rep.Reason
	case errors.As(err, &dup):
		rep.Verdict, rep.Reason = extract.Quarantined, dupReason(dup, h)
		res.Reason = rep.Reason
	default:
		// Not the file's fault: what it wrote of its rejected rows is of
		// a run that did not finish.
		if rep.Rejects != "" {
			os.Remove(rep.Rejects)
		}
		return failed(res, err)
	}
	res.Outcome, res.Rejects = Quarantined, rep.Rejects
	res.Report = p.writeReport(rep, dir)
	entry.State, entry.Reason, entry.Rejected = store.Quarantined, res.Reason, rep.Rejected
	if err := p.st.Record(ctx, entry); err != nil {
		p.o.log.Error("ingest: ledger: "+err.Error(), "ward.hospital", h.ID, "ward.file", e.Name)
	}
	return res
}

// refused lists in the report the rows the load refused, by their rows
// in the file.
func refused(x *extract.Extractor, rep *extract.Report, c store.Counts, h *contract.Hospital) {
	rep.Refused = c.Refused
	t := h.Table(rep.Table)
	for _, r := range c.RefusedRows {
		rep.FailuresTotal++
		if len(rep.Failures) < h.Thresholds.MaxErrors {
			rep.Failures = append(rep.Failures, extract.Failure{Row: x.RowOf(r.Row), Column: strings.Join(t.Key, ","), Reason: r.String()})
		}
	}
	rep.FailuresTotal += c.Refused - int64(len(c.RefusedRows))
}

// dupReason says which key a file repeats; the key's values (patient
// data) only where the contract shows values.
func dupReason(dup *store.DuplicateKeyError, h *contract.Hospital) string {
	if h.Reports.ShowValues {
		return dup.Error()
	}
	return fmt.Sprintf("a key (%s) appears more than once in the file: each key may appear once per file", strings.Join(dup.Columns, ", "))
}

func rejectsExt(table string) string {
	if table == "" {
		return ".jsonl"
	}
	return ".csv"
}

func (p *pipeline) extractOptions(ctx context.Context, hs *hospitalState, e *staging.Entry, rejects io.Writer) []extract.Option {
	h, t := hs.h, hs.h.Table(e.Table)
	opts := []extract.Option{extract.WithRejects(rejects)}
	if n, ok := hs.previous[t.Name]; ok && h.Thresholds.RowCountRatio > 0 {
		opts = append(opts, extract.WithPreviousRows(n))
	}
	if !h.Thresholds.MaxStaleness.IsZero() && t.TimeColumn != "" {
		// A failure to read it only skips the check; the load reports a
		// database that is really gone.
		if v, err := p.st.Newest(ctx, h.ID, t); err == nil && !v.Null {
			opts = append(opts, extract.WithNewestLoaded(v.Time(t.Column(t.TimeColumn).Type)))
		}
	}
	return opts
}

// knownModels reads the model versions ward knows for the hospital, once;
// nil means unchecked.
func (hs *hospitalState) knownModels(ctx context.Context, p *pipeline) map[string]bool {
	if hs.modelsOK || p.o.models == nil {
		return hs.models
	}
	hs.modelsOK = true
	versions, err := p.o.models(ctx, hs.h.ID)
	if err != nil {
		p.o.log.Warn(fmt.Sprintf("ingest %s: model versions not checked: %v", hs.h.ID, err), "ward.hospital", hs.h.ID)
		return nil
	}
	hs.models = map[string]bool{}
	for _, v := range versions {
		hs.models[v] = true
	}
	return hs.models
}

func (p *pipeline) writeReport(rep *extract.Report, dir string) string {
	_, text, err := rep.Write(dir)
	if err != nil {
		p.o.log.Error("ingest: validation report: "+err.Error(), "ward.hospital", rep.Hospital, "ward.file", rep.File)
		return ""
	}
	return text
}

func failed(res FileResult, err error) FileResult {
	res.Outcome, res.Reason = Failed, err.Error()
	return res
}

// duplicate records a file whose content was loaded under another name.
func (p *pipeline) duplicate(ctx context.Context, res FileResult, entry store.File, prev store.File) FileResult {
	if prev.Name == entry.Name {
		res.Outcome, res.Reason = Skipped, "loaded on "+prev.Changed.Format(time.RFC3339)
		return res
	}
	res.Outcome = Duplicate
	res.Reason = fmt.Sprintf("the same content (sha256 %s) was loaded as %s on %s; not loaded again", entry.SHA256[:12], prev.Name, prev.Changed.Format(time.RFC3339))
	entry.State, entry.Reason = store.Duplicate, res.Reason
	if err := p.st.Record(ctx, entry); err != nil {
		return failed(res, err)
	}
	return res
}

// alreadyLoaded handles a load that found its content loaded meanwhile.
func (p *pipeline) alreadyLoaded(ctx context.Context, res FileResult, entry store.File) FileResult {
	prev, err := p.st.Files(ctx, store.FileQuery{Hospital: entry.Hospital, SHA256: entry.SHA256, State: store.Loaded})
	if err != nil || len(prev) == 0 {
		return failed(res, fmt.Errorf("already loaded, but the ledger cannot say as what: %v", err))
	}
	return p.duplicate(ctx, res, entry, prev[0])
}

// meteredSource reports the bytes downloaded.
type meteredSource struct {
	fetch.Source
	progress Progress
}

func (m *meteredSource) Open(ctx context.Context, folder, name string) (io.ReadCloser, error) {
	rc, err := m.Source.Open(ctx, folder, name)
	if err != nil {
		return nil, err
	}
	return &meteredReader{ReadCloser: rc, progress: m.progress}, nil
}

// meteredReader counts what is read; it passes WriteTo on, which an SFTP
// file uses to keep many requests in flight.
type meteredReader struct {
	io.ReadCloser
	progress Progress
}

func (m *meteredReader) Read(p []byte) (int, error) {
	n, err := m.ReadCloser.Read(p)
	m.progress.Downloaded(int64(n))
	return n, err
}

func (m *meteredReader) WriteTo(w io.Writer) (int64, error) {
	if wt, ok := m.ReadCloser.(io.WriterTo); ok {
		return wt.WriteTo(&meteredWriter{w: w, progress: m.progress})
	}
	return io.Copy(w, struct{ io.Reader }{m})
}

type meteredWriter struct {
	w        io.Writer
	progress Progress
}

func (m *meteredWriter) Write(p []byte) (int, error) {
	n, err := m.w.Write(p)
	m.progress.Downloaded(int64(n))
	return n, err
}

// meteredFile counts the bytes of a staged file that decrypt reads, and
// keeps the random access that decrypt and extract use for age and
// Parquet files.
type meteredFile struct {
	*os.File
	progress Progress
}

func (m *meteredFile) Read(p []byte) (int, error) {
	n, err := m.File.Read(p)
	m.progress.Loaded(int64(n))
	return n, err
}

func (m *meteredFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := m.File.ReadAt(p, off)
	m.progress.Loaded(int64(n))
	return n, err
}

// Size is the file's size (extract's random access needs it).
func (m *meteredFile) Size() int64 {
	fi, err := m.File.Stat()
	if err != nil {
		return 0
	}
	return fi.Size()
}
