package models

import (
	"testing"
	"time"
)

// The fast path for YYYY-MM-DD gives what time.Parse gives, for every day
// of four centuries and for the dates it must refuse.
func TestISODateMatchesTimeParse(t *testing.T) {
	c := Column{Name: "d", Type: Date}
	if err := c.Prepare(); err != nil {
		t.Fatal(err)
	}
	for d := time.Date(1850, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() < 2250; d = d.AddDate(0, 0, 1) {
		s := d.Format("2006-01-02")
		got, ferr := c.ParseText(s)
		if ferr != nil || got != DateValue(d) {
			t.Fatalf("%s: %v %v, want %v", s, got, ferr, DateValue(d))
		}
	}
	for _, bad := range []string{"2026-02-29", "2026-13-01", "2026-00-10", "2026-04-31", "2026-1-01", "20x6-01-01", "2026-01-00"} {
		if _, ferr := c.ParseText(bad); ferr == nil || ferr.Reason != "not a date (want YYYY-MM-DD)" {
			t.Errorf("%s: %v, want not a date", bad, ferr)
		}
	}
}
