package page

import (
	"math"
	"strconv"
	"strings"
)

// Num writes a number for people: whole and with thousands separators
// from 100 up, else with 2 to 4 significant decimals.
func Num(v float64) string {
	if math.Abs(v) < 100 {
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
	return group(strconv.FormatFloat(math.Round(v), 'f', 0, 64))
}

// Count writes a count with thousands separators.
func Count[N int | int64](n N) string { return group(strconv.FormatInt(int64(n), 10)) }

func group(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Percent writes a fraction as a percentage with one decimal.
func Percent(v float64) string { return strconv.FormatFloat(100*v, 'f', 1, 64) + "%" }

// OptPercent is Percent, or n/a for nil.
func OptPercent(v *float64) string {
	if v == nil {
		return "n/a"
	}
	return Percent(*v)
}
