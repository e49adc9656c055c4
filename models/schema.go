// Package models is the pure core that training and serving share: the
// schema of raw inputs, feature encoding, model families, metrics and the
// model artifact. It does no I/O, so that a model computes its features with
// the same code when it is trained (pipelines/train) and when it serves
// (serving/): there is no train/serve skew.
package models

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Type is the type of a raw column, in an extract or in a request.
type Type string

// The column types a contract may use.
const (
	String    Type = "string"
	Int       Type = "int"
	Float     Type = "float"
	Bool      Type = "bool"
	Date      Type = "date"
	Timestamp Type = "timestamp"
)

// Types lists every valid Type, in the order the documentation gives them.
var Types = []Type{String, Int, Float, Bool, Date, Timestamp}

// Numeric reports whether values of t are held in Value.Num.
func (t Type) Numeric() bool { return t != String }

// Column describes one raw column: its type and the rules a value must meet.
// Contracts use it for the columns of an extract (internal/contract's Column
// embeds it, with what only the file needs; pipelines/ingest validates every
// cell with it) and artifacts use it for the inputs a model accepts (serving
// validates every request field with it).
type Column struct {
	Name     string   `json:"name"`
	Type     Type     `json:"type"`
	Required bool     `json:"required,omitempty"`
	Min      *float64 `json:"min,omitempty"`
	Max      *float64 `json:"max,omitempty"`
	Allowed  []string `json:"allowed,omitempty"`
	Pattern  string   `json:"pattern,omitempty"`
	// Format is the layout of a date or timestamp in an extract, with the
	// tokens YYYY, MM, DD, hh, mm, ss (default YYYY-MM-DD for dates and
	// RFC 3339 for timestamps).
	Format string `json:"format,omitempty"`

	re      *regexp.Regexp
	layout  string
	allowed map[string]bool
}

// Value is one parsed cell. Numeric types keep their value in Num: int and
// float as themselves, bool as 0 or 1, date as days since 1970-01-01, and
// timestamp as seconds since the Unix epoch (UTC). Strings keep theirs in Str.
type Value struct {
	Null bool
	Num  float64
	Str  string
}

// Missing is the Value of an absent cell.
var Missing = Value{Null: true}

// Text returns v as a Value holding a string.
func Text(s string) Value { return Value{Str: s} }

// Number returns v as a Value holding a number.
func Number(f float64) Value { return Value{Num: f} }

// DateValue returns the Value of the date of t (its UTC calendar day).
func DateValue(t time.Time) Value {
	y, m, d := t.UTC().Date()
	return Value{Num: float64(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)}
}

// Time returns the time a date or timestamp value stands for.
func (v Value) Time(t Type) time.Time {
	if t == Date {
		return time.Unix(int64(v.Num)*86400, 0).UTC()
	}
	sec, frac := math.Modf(v.Num)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC()
}

// Format renders v as text in the canonical form of type t (the form that
// ParseText reads back with the default layout).
func (v Value) Format(t Type) string {
	if t == String {
		return v.Str
	}
	return string(v.AppendFormat(nil, t))
}

// AppendFormat appends Format's text to b. Serving keys categorical levels
// with it, so that looking up a level allocates nothing.
func (v Value) AppendFormat(b []byte, t Type) []byte {
	if v.Null {
		return b
	}
	switch t {
	case String:
		return append(b, v.Str...)
	case Int:
		return strconv.AppendInt(b, int64(v.Num), 10)
	case Bool:
		return strconv.AppendBool(b, v.Num != 0)
	case Date:
		return v.Time(Date).AppendFormat(b, "2006-01-02")
	case Timestamp:
		return v.Time(Timestamp).AppendFormat(b, time.RFC3339Nano)
	default:
		return strconv.AppendFloat(b, v.Num, 'g', -1, 64)
	}
}

// Prepare checks the column's definition and compiles its pattern and
// layout. It must be called before ParseText, ParseJSON or Check.
func (c *Column) Prepare() error {
	if c.Name == "" {
		return fmt.Errorf("column has no name")
	}
	switch c.Type {
	case String, Int, Float, Bool, Date, Timestamp:
	case "":
		return fmt.Errorf("column %s: no type (want one of %s)", c.Name, typeList())
	default:
		return fmt.Errorf("column %s: unknown type %q (want one of %s)", c.Name, c.Type, typeList())
	}
	if c.Min != nil && c.Max != nil && *c.Min > *c.Max {
		return fmt.Errorf("column %s: min %v is above max %v", c.Name, *c.Min, *c.Max)
	}
	if (c.Min != nil || c.Max != nil) && c.Type == String {
		return fmt.Errorf("column %s: min and max need a numeric type, not string", c.Name)
	}
	if c.Pattern != "" {
		re, err := regexp.Compile(c.Pattern)
		if err != nil {
			return fmt.Errorf("column %s: pattern %q: %v", c.Name, c.Pattern, err)
		}
		c.re = re
	}
	if c.Format != "" && c.Type != Date && c.Type != Timestamp {
		return fmt.Errorf("column %s: format applies to date and timestamp columns only", c.Name)
	}
	c.layout = layoutOf(c.Format)
	if len(c.Allowed) > 0 {
		c.allowed = make(map[string]bool, len(c.Allowed))
		for _, a := range c.Allowed {
			c.allowed[a] = true
		}
	}
	return nil
}

func typeList() string {
	s := make([]string, len(Types))
	for i, t := range Types {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

// layoutOf turns a YYYY-MM-DD style format into a Go time layout.
func layoutOf(format string) string {
	if format == "" {
		return ""
	}
	r := strings.NewReplacer("YYYY", "2006", "MM", "01", "DD", "02", "hh", "15", "mm", "04", "ss", "05")
	return r.Replace(format)
}

// FieldError says why one value was refused. Reason is written for the
// person who has to fix the input, and names the rule it broke.
type FieldError struct {
	Column string `json:"column"`
	Value  string `json:"value,omitempty"`
	Reason string `json:"reason"`
}

func (e *FieldError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", e.Column, e.Reason)
	}
	return fmt.Sprintf("%s %s: %s", e.Column, quoteShort(e.Value), e.Reason)
}

func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strconv.Quote(s)
}

func (c *Column) fail(raw, reason string) *FieldError {
	return &FieldError{Column: c.Name, Value: raw, Reason: reason}
}

// ParseText parses one value written as text (the empty string is a
// missing value) and checks it against the column's rules. An extract's
// cells come through internal/contract's Column, which knows the file's
// spellings of a missing value and its thousands separator.
func (c *Column) ParseText(raw string) (Value, *FieldError) {
	if !utf8.ValidString(raw) {
		return Missing, c.fail("", "not valid UTF-8")
	}
	if raw == "" {
		if c.Required {
			return Missing, c.fail("", "required value is missing")
		}
		return Missing, nil
	}
	v, ferr := c.parse(raw)
	if ferr != nil {
		return Missing, ferr
	}
	return v, c.check(v, raw)
}

func (c *Column) parse(raw string) (Value, *FieldError) {
	s := strings.TrimSpace(raw)
	switch c.Type {
	case String:
		return Value{Str: raw}, nil
	case Int, Float:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return Missing, c.fail(raw, "not a number")
		}
		if c.Type == Int {
			if f != math.Trunc(f) {
				return Missing, c.fail(raw, "not a whole number")
			}
			if math.Abs(f) > 1<<53 {
				return Missing, c.fail(raw, "integer too large")
			}
		}
		return Value{Num: f}, nil
	case Bool:
		switch strings.ToLower(s) {
		case "true", "t", "yes", "y", "1":
			return Value{Num: 1}, nil
		case "false", "f", "no", "n", "0":
			return Value{Num: 0}, nil
		}
		return Missing, c.fail(raw, "not a boolean (want true or false)")
	case Date:
		layout := c.layout
		if layout == "" {
			if days, ok := isoDate(s); ok {
				return Value{Num: float64(days)}, nil
			}
			layout = "2006-01-02"
		}
		t, err := time.Parse(layout, s)
		if err != nil {
			return Missing, c.fail(raw, "not a date (want "+formatName(c.Format, "YYYY-MM-DD")+")")
		}
		return DateValue(t), nil
	case Timestamp:
		var t time.Time
		var err error
		if c.layout != "" {
			t, err = time.Parse(c.layout, s)
		} else {
			t, err = time.Parse(time.RFC3339Nano, s)
		}
		if err != nil {
			return Missing, c.fail(raw, "not a timestamp (want "+formatName(c.Format, "RFC 3339, e.g. 2026-01-31T14:05:00Z")+")")
		}
		return Value{Num: float64(t.UnixNano()) / 1e9}, nil
	}
	return Missing, c.fail(raw, "unknown type "+string(c.Type))
}

// isoDate reads YYYY-MM-DD as days since 1970-01-01 without time.Parse,
// which costs a fifth of the time of an extract's load; anything else, or an
// impossible date, is left to time.Parse and its error.
func isoDate(s string) (int64, bool) {
	if len(s) != 10 || s[4] != '-' || s[7] != '-' {
		return 0, false
	}
	num := func(b string) (int64, bool) {
		var n int64
		for i := 0; i < len(b); i++ {
			if b[i] < '0' || b[i] > '9' {
				return 0, false
			}
			n = n*10 + int64(b[i]-'0')
		}
		return n, true
	}
	y, ok1 := num(s[:4])
	m, ok2 := num(s[5:7])
	d, ok3 := num(s[8:])
	if !ok1 || !ok2 || !ok3 || m < 1 || m > 12 || d < 1 || d > int64(daysIn(time.Month(m), int(y))) {
		return 0, false
	}
	// Days from the civil date (H. Hinnant's algorithm).
	if m <= 2 {
		y--
	}
	era := y / 400
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468, true
}

func daysIn(m time.Month, year int) int {
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

func formatName(format, def string) string {
	if format == "" {
		return def
	}
	return format
}

// Check checks a parsed value against the column's rules: required, range,
// allowed values and pattern.
func (c *Column) Check(v Value) *FieldError {
	if v.Null {
		if c.Required {
			return c.fail("", "required value is missing")
		}
		return nil
	}
	return c.check(v, v.Format(c.Type))
}

func (c *Column) check(v Value, raw string) *FieldError {
	if c.Type.Numeric() {
		if c.Min != nil && v.Num < *c.Min {
			return c.fail(raw, fmt.Sprintf("below the minimum %s", c.bound(*c.Min)))
		}
		if c.Max != nil && v.Num > *c.Max {
			return c.fail(raw, fmt.Sprintf("above the maximum %s", c.bound(*c.Max)))
		}
	}
	if c.allowed != nil {
		key := v.Str
		if c.Type != String {
			key = v.Format(c.Type)
		}
		if !c.allowed[key] {
			return c.fail(raw, "not an allowed value (want one of "+strings.Join(c.Allowed, ", ")+")")
		}
	}
	if c.re != nil && c.Type == String && !c.re.MatchString(v.Str) {
		return c.fail(raw, "does not match the pattern "+c.Pattern)
	}
	return nil
}

func (c *Column) bound(b float64) string {
	return strconv.FormatFloat(b, 'g', -1, 64)
}

// ParseJSON reads one field of a JSON request (as decoded by encoding/json
// with UseNumber, or plainly) and checks it against the column's rules.
func (c *Column) ParseJSON(raw any) (Value, *FieldError) {
	if raw == nil {
		if c.Required {
			return Missing, c.fail("", "required value is missing")
		}
		return Missing, nil
	}
	var v Value
	switch c.Type {
	case String:
		s, ok := raw.(string)
		if !ok {
			return Missing, c.fail(jsonText(raw), "wrong type: want a string")
		}
		v = Value{Str: s}
	case Int, Float:
		var f float64
		switch n := raw.(type) {
		case json.Number:
			x, err := n.Float64()
			if err != nil {
				return Missing, c.fail(n.String(), "not a number")
			}
			f = x
		case float64:
			f = n
		default:
			return Missing, c.fail(jsonText(raw), "wrong type: want a number")
		}
		if c.Type == Int && f != math.Trunc(f) {
			return Missing, c.fail(jsonText(raw), "wrong type: want a whole number")
		}
		v = Value{Num: f}
	case Bool:
		b, ok := raw.(bool)
		if !ok {
			return Missing, c.fail(jsonText(raw), "wrong type: want true or false")
		}
		if b {
			v = Value{Num: 1}
		}
	case Date, Timestamp:
		s, ok := raw.(string)
		if !ok {
			return Missing, c.fail(jsonText(raw), "wrong type: want a string")
		}
		// Requests always use the canonical layouts, whatever the extract's.
		canon := Column{Name: c.Name, Type: c.Type}
		parsed, ferr := canon.parse(s)
		if ferr != nil {
			return Missing, ferr
		}
		v = parsed
	default:
		return Missing, c.fail(jsonText(raw), "unknown type "+string(c.Type))
	}
	return v, c.check(v, jsonText(raw))
}

func jsonText(raw any) string {
	if s, ok := raw.(string); ok {
		return s
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return fmt.Sprint(raw)
	}
	return string(b)
}

// JSONFields renders a row as the fields of a request to the model server:
// numbers as JSON numbers (their shortest text reads back to the same
// bits), booleans, strings, and dates and timestamps in their canonical
// text; missing values are left out. ParseJSON reads them back.
func JSONFields(cols []Column, row []Value) map[string]any {
	out := make(map[string]any, len(cols))
	for i, c := range cols {
		v := row[i]
		switch {
		case v.Null:
		case c.Type == Bool:
			out[c.Name] = v.Num != 0
		case c.Type == Int || c.Type == Float:
			out[c.Name] = v.Num
		default:
			out[c.Name] = v.Format(c.Type)
		}
	}
	return out
}
