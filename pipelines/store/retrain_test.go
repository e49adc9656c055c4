package store

import (
	"context"
	"testing"
	"time"
)

// A mark stays until a model trained from data read after it; the first
// mark of a hospital keeps its place in the order.
func TestRetrainMarks(t *testing.T) {
	engines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url)
		t0 := time.Date(2026, 3, 1, 3, 17, 0, 0, time.UTC)
		for i, m := range []RetrainMark{
			{Hospital: "riverside", Version: "2025.01-aaa", Reason: "drift in age", At: t0.Add(time.Hour)},
			{Hospital: "northgate", Version: "2025.01-bbb", Reason: "drift in doctor_id", At: t0},
			{Hospital: "riverside", Version: "2025.02-ccc", Reason: "drift again", At: t0.Add(2 * time.Hour)},
		} {
			added, err := s.MarkRetrain(ctx, m)
			if err != nil || added != (i < 2) {
				t.Fatalf("mark %d: added %v, %v", i, added, err)
			}
		}
		marks, err := s.RetrainMarks(ctx)
		if err != nil || len(marks) != 2 || marks[0].Hospital != "northgate" || marks[1].Hospital != "riverside" ||
			marks[1].Version != "2025.01-aaa" || !marks[0].At.Equal(t0) {
			t.Fatalf("marks %+v, %v; want northgate then riverside's first mark", marks, err)
		}
		// Training that read its data before riverside's mark leaves it.
		if err := s.ClearRetrain(ctx, "riverside", t0.Add(30*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := s.ClearRetrain(ctx, "northgate", t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		marks, err = s.RetrainMarks(ctx)
		if err != nil || len(marks) != 1 || marks[0].Hospital != "riverside" {
			t.Fatalf("after clearing: %+v, %v; want riverside's alone", marks, err)
		}
	})
}
