package contract

import (
	"fmt"
	"path"
)

// Thresholds say when ward rejects rows and files.
type Thresholds struct {
	// MaxRejectedRows is the fraction of a file's rows that may be
	// rejected before the whole file is quarantined (default 0.05).
	MaxRejectedRows *float64 `yaml:"max_rejected_rows"`
	// MaxErrors caps the failures collected per file (default 1000).
	MaxErrors int `yaml:"max_errors"`
	// RowCountRatio quarantines a file whose row count is more than this
	// many times larger, or smaller, than the previous extract of the same
	// table (default 0: no check).
	RowCountRatio float64 `yaml:"row_count_ratio"`
	// MaxStaleness quarantines a file whose newest time-column value is
	// older than the newest already loaded for that table by more than
	// this period (default: no check). A correction file is exempt.
	MaxStaleness Period `yaml:"max_staleness"`
	// Corrections is the pattern of file names that re-send rows (exempt
	// from the row-count and staleness checks). Default "*correction*".
	Corrections string `yaml:"corrections"`
}

// MaxRejected returns the fraction of rows that may be rejected.
func (t Thresholds) MaxRejected() float64 { return *t.MaxRejectedRows }

// IsCorrection reports whether a file name marks a correction file.
func (h *Hospital) IsCorrection(fileName string) bool {
	ok, _ := path.Match(h.Thresholds.Corrections, fileName)
	return ok
}

func (t *Thresholds) normalize() error {
	if t.MaxRejectedRows == nil {
		t.MaxRejectedRows = ptr(0.05)
	}
	if r := *t.MaxRejectedRows; r < 0 || r > 1 {
		return fmt.Errorf("max_rejected_rows %v: want a fraction between 0 and 1", r)
	}
	if t.MaxErrors == 0 {
		t.MaxErrors = 1000
	}
	if t.MaxErrors < 0 {
		return fmt.Errorf("max_errors %d is negative", t.MaxErrors)
	}
	if t.RowCountRatio != 0 && t.RowCountRatio < 1 {
		return fmt.Errorf("row_count_ratio %v: want 0 (off) or at least 1", t.RowCountRatio)
	}
	if t.Corrections == "" {
		t.Corrections = "*correction*"
	}
	if _, err := path.Match(t.Corrections, ""); err != nil {
		return fmt.Errorf("corrections pattern %q: %v", t.Corrections, err)
	}
	return nil
}
