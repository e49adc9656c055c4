package store

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/wardml/ward/models"
)

// A timestamp parsed from an extract, stored at PostgreSQL's microsecond
// precision and read back, is the same Value, bit for bit.
func TestTimestampsRoundTripExactly(t *testing.T) {
	col := models.Column{Name: "at", Type: models.Timestamp}
	if err := col.Prepare(); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 100_000 {
		want := time.UnixMicro(rng.Int64N(4e15) - 2e15).UTC() // 1906 to 2096: further out, a float64 of seconds holds less than a microsecond
		v, ferr := col.ParseText(want.Format(time.RFC3339Nano))
		if ferr != nil {
			t.Fatal(ferr)
		}
		got := timestamp(v)
		if !got.Equal(want) {
			t.Fatalf("%s: stored as %s", want.Format(time.RFC3339Nano), got.Format(time.RFC3339Nano))
		}
		if back := timeValue(got); back != v {
			t.Fatalf("%s: read back as %v, parsed as %v", want.Format(time.RFC3339Nano), back, v)
		}
		text := got.Format(timeText)
		if sv, err := scanValue(models.Timestamp, text); err != nil || sv != v {
			t.Fatalf("%s: SQLite text %s reads as %v, %v", want, text, sv, err)
		}
	}
}
