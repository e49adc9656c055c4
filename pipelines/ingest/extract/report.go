package extract

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/ingest/decrypt"
)

// Verdict is what became of a file.
type Verdict string

// The verdicts of a validation report.
const (
	Loaded      Verdict = "loaded"
	Partial     Verdict = "partially loaded"
	Quarantined Verdict = "quarantined"
	// Failed is a run that could not finish for a reason that is not the
	// file's (a disk or database error): the next run tries again.
	Failed Verdict = "failed"
)

// Failure is one value, row or file that broke the contract.
type Failure struct {
	// Row is the data row, from 1 (the header is not counted).
	Row int64 `json:"row"`
	// Line is the row's first line in a CSV file.
	Line   int64  `json:"line,omitempty"`
	Column string `json:"column,omitempty"`
	Value  string `json:"value,omitempty"`
	Reason string `json:"reason"`
}

func (f Failure) String() string {
	s := "row " + strconv.FormatInt(f.Row, 10)
	if f.Line > 0 && f.Line != f.Row+1 {
		s += " (line " + strconv.FormatInt(f.Line, 10) + ")"
	}
	return s + ": " + f.cell()
}

// cell is the failure without its row: what the rejected-rows file says.
func (f Failure) cell() string {
	if f.Column == "" {
		return f.Reason
	}
	fe := models.FieldError{Column: f.Column, Value: f.Value, Reason: f.Reason}
	return fe.Error()
}

// Report is the validation report of one file.
type Report struct {
	Hospital string `json:"hospital"`
	File     string `json:"file"`
	// SHA256 of the staged file; the pipeline sets it.
	SHA256  string  `json:"sha256,omitempty"`
	Table   string  `json:"table,omitempty"`
	Format  string  `json:"format,omitempty"`
	Verdict Verdict `json:"verdict"`
	Reason  string  `json:"reason,omitempty"`
	// Rows were read; Good passed every check; Rejected did not.
	Rows     int64 `json:"rows"`
	Good     int64 `json:"good"`
	Rejected int64 `json:"rejected"`
	// FailuresTotal counts every failure; Failures lists the first
	// max_errors of them.
	FailuresTotal int64     `json:"failures_total"`
	Failures      []Failure `json:"failures"`
	// Checks lists the file-level checks that ran, and their inputs.
	Checks []string `json:"checks,omitempty"`
	// Rejects is the file of rejected rows, if any; the pipeline sets it.
	Rejects string `json:"rejected_rows_file,omitempty"`
	// Refused counts the good rows the loader refused (a newer row of
	// their key was loaded before); their failures are listed.
	Refused int64 `json:"refused,omitempty"`
	// ShowValues lets the report quote failing cells (the contract's
	// reports.show_values), capped; without it Write drops them.
	ShowValues bool `json:"-"`
}

// shownValue is what a report may show of a cell: nothing, unless the
// contract says so, and then at most contract.MaxShownValue bytes.
func shownValue(v string, show bool) string {
	if !show {
		return ""
	}
	if len(v) <= contract.MaxShownValue {
		return v
	}
	cut := contract.MaxShownValue
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return v[:cut] + "..."
}

// shown is the report as it may be written: each failure's value dropped
// or capped (shownValue).
func (r *Report) shown() *Report {
	c := *r
	c.Failures = make([]Failure, len(r.Failures))
	for i, f := range r.Failures {
		f.Value = shownValue(f.Value, r.ShowValues)
		c.Failures[i] = f
	}
	return &c
}

// NewReport is the report of a file that failed before it could be read
// (it could not be decrypted, say): quarantined when err is the file's
// fault, failed otherwise.
func NewReport(hospital, file string, err error) *Report {
	r := &Report{Hospital: hospital, File: file, Verdict: Failed, Reason: err.Error(), Failures: []Failure{}}
	var q *QuarantineError
	var d *decrypt.Error
	switch {
	case errors.As(err, &q):
		r.Verdict, r.Reason = Quarantined, q.Reason
	case errors.As(err, &d):
		r.Verdict, r.Reason = Quarantined, d.Error()
	}
	return r
}

// Summary is the verdict in one line.
func (r *Report) Summary() string {
	switch r.Verdict {
	case Loaded:
		return fmt.Sprintf("loaded: %d rows", r.Good)
	case Partial:
		return fmt.Sprintf("partially loaded: %d rows, %d of %d rejected", r.Good, r.Rejected, r.Rows)
	case Quarantined:
		return "quarantined: " + r.Reason
	}
	return "failed (the next run tries again): " + r.Reason
}

// Text renders the report for a person.
func (r *Report) Text() string {
	r = r.shown()
	var b strings.Builder
	line := func(k, v string) { fmt.Fprintf(&b, "%-9s %s\n", k, v) }
	b.WriteString("ward ingest: validation report\n\n")
	line("hospital", r.Hospital)
	line("file", r.File)
	if r.SHA256 != "" {
		line("sha256", r.SHA256)
	}
	if r.Table != "" {
		line("table", r.Table+" ("+r.Format+")")
	}
	line("verdict", r.Summary())
	line("rows", fmt.Sprintf("%d read, %d good, %d rejected", r.Rows, r.Good, r.Rejected))
	if r.Refused > 0 {
		line("refused", fmt.Sprintf("%d rows: the database holds newer rows of their keys, which were kept", r.Refused))
	}
	for _, c := range r.Checks {
		line("check", c)
	}
	if r.Rejects != "" {
		line("rejected", r.Rejects)
	}
	if r.FailuresTotal > 0 {
		fmt.Fprintf(&b, "\nfailures: %d", r.FailuresTotal)
		if int64(len(r.Failures)) < r.FailuresTotal {
			fmt.Fprintf(&b, " (the first %d listed)", len(r.Failures))
		}
		b.WriteString("\n")
		for _, f := range r.Failures {
			b.WriteString("  " + f.String() + "\n")
		}
	}
	return b.String()
}

// Write writes the report as <dir>/<file>.validation.json and .txt (0600:
// with reports.show_values a report quotes the values that failed, which
// are patient data).
func (r *Report) Write(dir string) (jsonFile, textFile string, err error) {
	base := filepath.Join(dir, filepath.Base(r.File))
	js, err := json.MarshalIndent(r.shown(), "", "  ")
	if err != nil {
		return "", "", err
	}
	jsonFile, textFile = base+".validation.json", base+".validation.txt"
	if err := writeFile(jsonFile, append(js, '\n')); err != nil {
		return "", "", err
	}
	if err := writeFile(textFile, []byte(r.Text())); err != nil {
		return "", "", err
	}
	return jsonFile, textFile, nil
}

// writeFile replaces file atomically, readable by its owner only.
func writeFile(file string, data []byte) error {
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// rejectWriter writes rejected rows as CSV, its header with the first row.
type rejectWriter struct {
	w      *csv.Writer
	header []string
	n      int
}

func newRejectWriter(w io.Writer, header []string) *rejectWriter {
	return &rejectWriter{w: csv.NewWriter(w), header: header}
}

func (r *rejectWriter) write(raw []string, row int64, reasons []string) error {
	if r.n == 0 {
		if err := r.w.Write(append(append([]string{}, r.header...), "ward_row", "ward_reason")); err != nil {
			return err
		}
	}
	r.n++
	rec := make([]string, 0, len(raw)+2)
	for _, c := range raw {
		rec = append(rec, strings.ToValidUTF8(c, "\uFFFD"))
	}
	return r.w.Write(append(rec, strconv.FormatInt(row, 10), strings.Join(reasons, "; ")))
}

func (r *rejectWriter) flush() error {
	r.w.Flush()
	return r.w.Error()
}

// RejectsFile is the file of a file's rejected rows: created (0600) with
// the first row written to it, so a clean file leaves none, and encrypted
// through seal when one is given (decrypt.Keys.Seal: encrypted to the key
// the extracts are encrypted to, so no plaintext patient data lands on
// disk). Its folder should be private too (staging.Store.ReportDir).
type RejectsFile struct {
	path string
	seal func(io.Writer) (io.WriteCloser, error)
	f    *os.File
	w    io.WriteCloser
}

// NewRejectsFile prepares the rejected-rows file at path.
func NewRejectsFile(path string, seal func(io.Writer) (io.WriteCloser, error)) *RejectsFile {
	return &RejectsFile{path: path, seal: seal}
}

func (r *RejectsFile) Write(p []byte) (int, error) {
	if r.w == nil {
		f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return 0, err
		}
		r.f, r.w = f, f
		if r.seal != nil {
			if r.w, err = r.seal(f); err != nil {
				f.Close()
				return 0, err
			}
		}
	}
	return r.w.Write(p)
}

// Finish closes the file and returns its path, or "" when no row was
// written to it.
func (r *RejectsFile) Finish() (string, error) {
	if r.w == nil {
		return "", nil
	}
	err := r.w.Close()
	if r.w != io.WriteCloser(r.f) {
		if cerr := r.f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return "", fmt.Errorf("rejected rows %s: %w", r.path, err)
	}
	return r.path, nil
}
