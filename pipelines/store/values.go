package store

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/wardml/ward/models"
)

// timeText is how SQLite holds timestamps: UTC, always six fraction digits,
// so that comparing the text compares the times.
const timeText = "2006-01-02T15:04:05.000000Z"

// dateText is how SQLite holds dates.
const dateText = "2006-01-02"

// timestamp turns a timestamp value into a time at microsecond precision
// (PostgreSQL's), rounding rather than truncating so that a time read back
// gives the same Value it was stored from (exactly, for times between 1906
// and 2096; further out a float64 of seconds holds less than a
// microsecond).
func timestamp(v models.Value) time.Time {
	return time.UnixMicro(int64(math.Round(v.Num * 1e6))).UTC()
}

// timeValue is the Value of a timestamp, computed as models computes it
// when it parses one.
func timeValue(t time.Time) models.Value {
	return models.Number(float64(t.UnixNano()) / 1e9)
}

// quote quotes an SQL identifier.
func quote(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// quoteAll quotes each name, prefixed (e.g. "m."), and joins them with commas.
func quoteAll(prefix string, names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = prefix + quote(n)
	}
	return strings.Join(q, ", ")
}

// valueScanner reads one column of a result into a models.Value, whatever
// the driver gives for it: PostgreSQL's dates and timestamps come as
// time.Time, SQLite's as ward's text; booleans as bool or 0/1.
type valueScanner struct {
	typ models.Type
	v   models.Value
}

func (s *valueScanner) Scan(src any) error {
	v, err := scanValue(s.typ, src)
	s.v = v
	return err
}

func scanValue(typ models.Type, src any) (models.Value, error) {
	switch x := src.(type) {
	case nil:
		return models.Missing, nil
	case []byte:
		return scanValue(typ, string(x))
	case string:
		switch typ {
		case models.String:
			return models.Text(x), nil
		case models.Date:
			t, err := time.Parse(dateText, x)
			if err != nil {
				return models.Missing, fmt.Errorf("date %q: %w", x, err)
			}
			return models.DateValue(t), nil
		case models.Timestamp:
			t, err := time.Parse(time.RFC3339Nano, x)
			if err != nil {
				return models.Missing, fmt.Errorf("timestamp %q: %w", x, err)
			}
			return timeValue(t), nil
		default:
			f, err := strconv.ParseFloat(x, 64)
			if err != nil {
				return models.Missing, fmt.Errorf("%s %q: %w", typ, x, err)
			}
			return models.Number(f), nil
		}
	case int64:
		if typ == models.String {
			return models.Text(strconv.FormatInt(x, 10)), nil
		}
		return models.Number(float64(x)), nil
	case float64:
		if typ == models.String {
			return models.Text(strconv.FormatFloat(x, 'g', -1, 64)), nil
		}
		return models.Number(x), nil
	case bool:
		if x {
			return models.Number(1), nil
		}
		return models.Number(0), nil
	case time.Time:
		if typ == models.Date {
			return models.DateValue(x), nil
		}
		return timeValue(x), nil
	}
	return models.Missing, fmt.Errorf("cannot read %T as %s", src, typ)
}

// timeScanner reads a TIMESTAMPTZ column of ward's own tables.
type timeScanner struct{ t *time.Time }

func (s timeScanner) Scan(src any) error {
	switch x := src.(type) {
	case nil:
		*s.t = time.Time{}
	case time.Time:
		*s.t = x.UTC()
	case string:
		t, err := time.Parse(time.RFC3339Nano, x)
		if err != nil {
			return fmt.Errorf("time %q: %w", x, err)
		}
		*s.t = t
	default:
		return fmt.Errorf("cannot read %T as a time", src)
	}
	return nil
}
