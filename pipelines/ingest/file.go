package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/pipelines/ingest/decrypt"
	"github.com/wardml/ward/pipelines/ingest/extract"
	"github.com/wardml/ward/pipelines/ingest/staging"
	"github.com/wardml/ward/pipelines/store"
)

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

// reader reads one kind of staged file, decrypted, into the store: an
// extract of a contract table (tableReader, tables.go) or a prediction
// log (predictionLog, predictions.go).
type reader interface {
	// rejectsExt is the extension of the file of its rejected rows.
	rejectsExt() string
	// load streams plain into the store as entry's file, and the rows it
	// rejects into rejects; the report it returns is final. What only
	// this kind of file counts, it sets on res.
	load(ctx context.Context, plain io.Reader, entry store.File, rejects io.Writer, res *FileResult) (*extract.Report, store.Counts, error)
}

// readerFor picks the reader of a staged file's kind: fetch matched its
// name with a table's pattern, or with the prediction logs' (no table).
func (p *pipeline) readerFor(hs *hospitalState, table string) reader {
	if table == "" {
		return predictionLog{p: p, hs: hs}
	}
	return tableReader{p: p, hs: hs, t: hs.h.Table(table)}
}

// file decrypts, validates and loads one staged file.
func (p *pipeline) file(ctx context.Context, hs *hospitalState, e *staging.Entry) FileResult {
	h := hs.h
	rd := p.readerFor(hs, e.Table)
	res := FileResult{Hospital: h.ID, Name: e.Name, Table: tableOf(e.Table), Size: e.Size, SHA256: e.SHA256}
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
	rejects := extract.NewRejectsFile(filepath.Join(dir, e.Name+".rejected"+rd.rejectsExt()+decrypt.Suffix(h.Inbound.Encryption)),
		func(w io.Writer) (io.WriteCloser, error) { return p.keys.Seal(w, h.Inbound.Encryption) })

	var rep *extract.Report
	var c store.Counts
	plain, err := p.keys.Open(meter, h, e.Name)
	if err != nil {
		rep = extract.NewReport(h.ID, e.Name, err)
		var de *decrypt.Error
		res.KeyError = errors.As(err, &de) && de.Key
	} else {
		rep, c, err = rd.load(ctx, plain, entry, rejects, &res)
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

// dupReason says which key a file repeats; the key's values (patient
// data) only where the contract shows values.
func dupReason(dup *store.DuplicateKeyError, h *contract.Hospital) string {
	if h.Reports.ShowValues {
		return dup.Error()
	}
	return fmt.Sprintf("a key (%s) appears more than once in the file: each key may appear once per file", strings.Join(dup.Columns, ", "))
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
