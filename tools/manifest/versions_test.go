package manifest

import (
	"context"
	"slices"
	"testing"
)

// Versions lists every version a hospital has had deployed, newest first,
// once each: a rolled-back version stays known (its predictions were
// served), and another hospital's are not listed.
func TestVersions(t *testing.T) {
	_, r := newRemote(t)
	ctx := context.Background()
	if got, err := r.Versions(ctx, "st-olaf"); err != nil || len(got) != 0 {
		t.Fatalf("before a deploy: %v, %v", got, err)
	}
	deploy(t, r, "st-olaf/v1")
	deploy(t, r, "st-olaf/v2")
	deploy(t, r, "mercy/v3")
	if _, err := r.Rollback(ctx, Rollback{Hospital: "st-olaf"}); err != nil {
		t.Fatal(err)
	}
	got, err := r.Versions(ctx, "st-olaf")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"v1", "v2"}; !slices.Equal(got, want) {
		t.Errorf("versions %v, want %v", got, want)
	}
}
