package ingest

import (
	"fmt"
	"maps"
	"slices"
	"strings"
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
