package contract

import (
	"strings"
	"unicode/utf8"

	"github.com/wardml/ward/models"
)

// Column is one column of a table's extracts: the model column (its type
// and rules, which serving checks requests with too) and how the files
// write it, which only ingest needs. The model column's keys sit inline in
// the contract, beside header, thousands and missing.
type Column struct {
	models.Column `yaml:",inline"`
	// Header is the column's name in the file when it differs from Name
	// (an extract with awkward or empty headers: header: "" names a
	// column whose header is empty).
	Header *string `yaml:"header,omitempty"`
	// Thousands is a thousands separator that numbers in the extract may
	// carry ("108,429.42").
	Thousands string `yaml:"thousands,omitempty"`
	// Missing lists the spellings of a missing value in the extract; the
	// empty string always counts as missing.
	Missing []string `yaml:"missing,omitempty"`
}

// FileHeader is the column's name in an extract's header row.
func (c *Column) FileHeader() string {
	if c.Header != nil {
		return *c.Header
	}
	return c.Name
}

// IsMissing reports whether raw spells a missing value in an extract.
func (c *Column) IsMissing(raw string) bool {
	if raw == "" {
		return true
	}
	for _, m := range c.Missing {
		if raw == m {
			return true
		}
	}
	return false
}

// ParseText parses one cell of an extract and checks it against the
// column's rules: a spelling of a missing value is a missing value, and a
// number may carry the thousands separator; the rest is the model column's
// own parsing.
func (c *Column) ParseText(raw string) (models.Value, *models.FieldError) {
	// Invalid UTF-8 is never a spelling or a separator: the model column
	// refuses it as it stands.
	if c.IsMissing(raw) && utf8.ValidString(raw) {
		return c.Column.ParseText("")
	}
	if c.Thousands != "" && (c.Type == models.Int || c.Type == models.Float) && utf8.ValidString(raw) {
		return c.parseNumber(raw)
	}
	return c.Column.ParseText(raw)
}

// parseNumber drops the thousands separators from a number, after the
// spaces around the cell: what is left must be the number alone ("1000 ,"
// is not a number). Errors quote the cell as the file has it.
func (c *Column) parseNumber(raw string) (models.Value, *models.FieldError) {
	num := strings.ReplaceAll(strings.TrimSpace(raw), c.Thousands, "")
	if num == "" || strings.TrimSpace(num) != num {
		return models.Missing, &models.FieldError{Column: c.Name, Value: raw, Reason: "not a number"}
	}
	v, ferr := c.Column.ParseText(num)
	if ferr != nil {
		ferr.Value = raw
	}
	return v, ferr
}
