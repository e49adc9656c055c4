package contract

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Period is a span of months and days, written "3mo", "90d", "2w", "1y"
// or "0".
type Period struct {
	Months int
	Days   int
}

// IsZero reports whether the period is empty.
func (p Period) IsZero() bool { return p.Months == 0 && p.Days == 0 }

func (p Period) String() string {
	switch {
	case p.IsZero():
		return "0"
	case p.Days == 0 && p.Months%12 == 0:
		return strconv.Itoa(p.Months/12) + "y"
	case p.Days == 0:
		return strconv.Itoa(p.Months) + "mo"
	case p.Months == 0:
		return strconv.Itoa(p.Days) + "d"
	}
	return fmt.Sprintf("%dmo%dd", p.Months, p.Days)
}

// ParsePeriod reads "3mo", "90d", "2w", "1y" or "0".
func ParsePeriod(s string) (Period, error) {
	s = strings.TrimSpace(s)
	if s == "0" || s == "" {
		return Period{}, nil
	}
	for _, u := range []struct {
		suffix       string
		months, days int
	}{{"mo", 1, 0}, {"y", 12, 0}, {"w", 0, 7}, {"d", 0, 1}} {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.Atoi(num)
			if err != nil || n < 0 {
				break
			}
			return Period{Months: n * u.months, Days: n * u.days}, nil
		}
	}
	return Period{}, fmt.Errorf("period %q: want a count and a unit, like 3mo, 90d, 2w or 1y", s)
}

// UnmarshalYAML reads a period from its text form.
func (p *Period) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := ParsePeriod(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*p = v
	return nil
}

// MarshalYAML writes a period in its text form.
func (p Period) MarshalYAML() (any, error) { return p.String(), nil }

// DefaultPeriod finds an extract's month in its name: cases_2024-02.csv.gpg
// is of 2024-02.
const DefaultPeriod = `_(\d{4}-\d{2})`

func (t *Table) normalizePeriod() error {
	if t.Period == "" {
		t.Period = DefaultPeriod
	}
	re, err := regexp.Compile(t.Period)
	if err != nil {
		return fmt.Errorf("period %q: %v", t.Period, err)
	}
	if re.NumSubexp() != 1 {
		return errors.New("period " + strconv.Quote(t.Period) + ": want exactly one group (...) that captures the period, like _(\\d{4}-\\d{2})")
	}
	t.periodRE = re
	return nil
}

// PeriodOf is the period an extract's name says it covers (the first
// match of the table's period pattern), or "" when the name says none.
// Periods compare as text: 2023-12 is older than 2024-02.
func (t *Table) PeriodOf(fileName string) string {
	if t.periodRE == nil {
		return ""
	}
	m := t.periodRE.FindStringSubmatch(fileName)
	if m == nil {
		return ""
	}
	return m[1]
}
