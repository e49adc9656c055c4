package extract

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/wardml/ward/models"
)

// TestKeySetSettlesFalsePositivesAndRepeats drives the key check with
// hashes made to collide in the filter: a row that only looks seen goes on,
// a true repeat is rejected naming the first row.
func TestKeySetSettlesFalsePositivesAndRepeats(t *testing.T) {
	k, err := newKeySet(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer k.close()
	a := [2]uint64{5, 0xdeadbeef}
	b := [2]uint64{5 + 1<<18, 0xdeadbeef} // same block, same bits, another key
	if cleared, _ := k.add(a, 1); !cleared {
		t.Fatal("first key not cleared")
	}
	if cleared, _ := k.add(b, 2); cleared {
		t.Fatal("a key with the same filter bits was cleared")
	}
	k.wait(b, []models.Value{models.Text("b")}, 2, 3)
	if cleared, _ := k.add(a, 3); cleared {
		t.Fatal("a repeated key was cleared")
	}
	k.wait(a, []models.Value{models.Text("a")}, 3, 4)
	got := map[int64]int64{}
	if err := k.settle(func(w waitingRow, first int64) error { got[w.num] = first; return nil }); err != nil {
		t.Fatal(err)
	}
	if got[2] != 2 || got[3] != 1 || len(got) != 2 {
		t.Fatalf("settled %v; want row 2 its own first, row 3 a repeat of row 1", got)
	}
	if len(k.waiting) != 0 {
		t.Fatal("rows still waiting after settle")
	}
}

// TestManyRepeatsSettleEarly makes more repeats than the key check holds
// back at once: every repeat is rejected naming its first row, every other
// row loads once.
func TestManyRepeatsSettleEarly(t *testing.T) {
	h := stOlaf(t)
	all := 1.0
	h.Thresholds.MaxRejectedRows = &all
	// Every even row repeats the key of the row before it.
	n := 2*maxWaiting + 3000
	data := casesCSV(n, func(i int, row string) string {
		if i%2 == 0 {
			return caseRow(i - 1)[:8] + row[8:]
		}
		return row
	})
	x := New(bytes.NewReader(data), h, h.Table("cases"), "cases_2026-01.csv")
	good := 0
	seen := map[string]bool{}
	for row, err := range x.Rows() {
		if err != nil {
			t.Fatal(err)
		}
		id := row[0].Str
		if seen[id] {
			t.Fatalf("key %s loaded twice", id)
		}
		seen[id] = true
		good++
	}
	rep := x.Report()
	if rep.Rejected != int64(n/2) || good != n-n/2 {
		t.Fatalf("%d good + %d rejected of %d rows", good, rep.Rejected, n)
	}
	for _, f := range rep.Failures {
		if want := fmt.Sprintf("duplicate key: first seen in row %d", f.Row-1); f.Reason != want {
			t.Fatalf("failure %+v, want %q", f, want)
		}
	}
}

// Issue 14.3: a file that repeats one key reads the key check's spill once
// for that key, not once per maxWaiting of its repeats (which made 10M
// copies of a row cost 70 s). The share of rejects is allowed here, so
// the whole file is read.
func TestRepeatedKeyReadsTheSpillOnce(t *testing.T) {
	h := stOlaf(t)
	all := 1.0
	h.Thresholds.MaxRejectedRows = &all
	const n = 200_000
	var b bytes.Buffer
	b.WriteString(casesHeader + "\n")
	row := caseRow(1) + "\n"
	for range n {
		b.WriteString(row)
	}
	res := extract(t, h, "cases", "cases.csv", &b)
	if res.err != nil || res.rep.Good != 1 || res.rep.Rejected != n-1 {
		t.Fatalf("%d good, %d rejected, %v", res.rep.Good, res.rep.Rejected, res.err)
	}
	// One settle of the first maxWaiting rows, then none.
	if got, bound := res.x.keys.settleReads, int64(2*maxWaiting*spillRecord); got > bound {
		t.Fatalf("settling read %d bytes of the spill (of %d), want at most %d", got, n*spillRecord, bound)
	}
}
