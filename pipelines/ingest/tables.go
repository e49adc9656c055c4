package ingest

import (
	"context"
	"io"
	"strings"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/pipelines/ingest/extract"
	"github.com/wardml/ward/pipelines/store"
)

// tableReader reads an extract of one of the contract's tables with
// extract (the contract's checks, the row count and staleness checks
// against what the database holds) and loads it with store.Load: a
// correction replaces rows, and a late extract of an older period never
// replaces newer rows.
type tableReader struct {
	p  *pipeline
	hs *hospitalState
	t  *contract.Table
}

func (tableReader) rejectsExt() string { return ".csv" }

func (r tableReader) load(ctx context.Context, plain io.Reader, entry store.File, rejects io.Writer, _ *FileResult) (*extract.Report, store.Counts, error) {
	h, t := r.hs.h, r.t
	x := extract.New(plain, h, t, entry.Name, r.options(ctx, rejects)...)
	opts := []store.LoadOption{store.WithRejected(func() int64 { return x.Report().Rejected }), store.WithPeriod(t.PeriodOf(entry.Name))}
	if h.IsCorrection(entry.Name) {
		opts = append(opts, store.WithReplace())
	}
	c, err := r.p.st.Load(ctx, entry, t, x.Rows(), opts...)
	rep := x.Report()
	if err == nil {
		refused(x, rep, c, h)
	}
	return rep, c, err
}

// options are extract's checks of the file against what the database and
// the ledger hold of its table.
func (r tableReader) options(ctx context.Context, rejects io.Writer) []extract.Option {
	h, t := r.hs.h, r.t
	opts := []extract.Option{extract.WithRejects(rejects)}
	if n, ok := r.hs.previous[t.Name]; ok && h.Thresholds.RowCountRatio > 0 {
		opts = append(opts, extract.WithPreviousRows(n))
	}
	if !h.Thresholds.MaxStaleness.IsZero() && t.TimeColumn != "" {
		// A failure to read it only skips the check; the load reports a
		// database that is really gone.
		if v, err := r.p.st.Newest(ctx, h.ID, t); err == nil && !v.Null {
			opts = append(opts, extract.WithNewestLoaded(v.Time(t.Column(t.TimeColumn).Type)))
		}
	}
	return opts
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
