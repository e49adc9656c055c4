package manifest

import (
	"context"
	"strings"
	"testing"

	"github.com/wardml/ward/internal/testenv"
)

func TestCompareModels(t *testing.T) {
	nov, dec := Window{From: "2025-01-01", To: "2026-11-30"}, Window{From: "2025-02-01", To: "2026-12-31"}
	for _, c := range []struct {
		a      string
		aw     Window
		b      string
		bw     Window
		want   int
		reason string
	}{
		{"v1", Window{}, "v2", Window{}, -1, "versions"},
		{"v10", Window{}, "v9", Window{}, 1, "digit runs as numbers"},
		{"2026.09-aaaa", Window{}, "2026.10-0000", Window{}, -1, "ward's versions by month"},
		{"2026.11-ffff", Window{}, "2026.11-0000", Window{}, 0, "the same month: not ordered by the hash"},
		{"2026.12-aaaa", nov, "2026.11-bbbb", dec, -1, "the data window first"},
		{"x", dec, "y", dec, -1, "the same window: the version"},
	} {
		if got := CompareModels(c.a, c.aw, c.b, c.bw); got != c.want {
			t.Errorf("%s: CompareModels(%s, %s) = %d, want %d", c.reason, c.a, c.b, got, c.want)
		}
	}
	w, err := ModelWindow([]byte(`{"version":"v1","lineage":{"train":{"from":"2025-01-01","to":"2026-09-30"},"validation":{"from":"2026-10-01","to":"2026-11-30"}}}`))
	if err != nil || w != nov {
		t.Errorf("ModelWindow: %+v, %v", w, err)
	}
	if _, err := ModelWindow([]byte("not json")); err == nil {
		t.Error("ModelWindow of garbage: no error")
	}
}

// ward deploy refuses to move a hospital to an older model unless asked;
// asked, it says so in a trailer. A rollback needs no asking.
func TestDeployRefusesDowngrade(t *testing.T) {
	ctx := context.Background()
	remote, r := newRemote(t)
	deploy(t, r, "st-olaf/v1")
	deploy(t, r, "st-olaf/v3")
	head := remoteHead(t, remote)
	_, err := r.Deploy(ctx, Deployment{Hospital: "st-olaf", Image: img("st-olaf/v2").Ref})
	wantErr(t, err, ErrDowngrade, "v2 ("+img("st-olaf/v2").Digest+") is older than v3 ("+img("st-olaf/v3").Digest+")", "--allow-downgrade", "ward rollback")
	if remoteHead(t, remote) != head {
		t.Fatal("a refused downgrade pushed")
	}
	res, err := r.Deploy(ctx, Deployment{Hospital: "st-olaf", Image: img("st-olaf/v2").Ref, AllowDowngrade: true})
	if err != nil || res.Status != StatusCommitted {
		t.Fatalf("deploy --allow-downgrade: %+v, %v", res, err)
	}
	msg := testenv.Git(t, remote, "log", "-1", "--format=%B", "main")
	if tr := trailer(ParseTrailers(msg), TrailerAllowDowngrade); tr != "v3 -> v2" {
		t.Errorf("trailer %q in:\n%s", tr, msg)
	}
	if _, err := r.Rollback(ctx, Rollback{Hospital: "st-olaf"}); err != nil {
		t.Fatalf("rollback to v3: %v", err)
	}
	if _, err := r.Rollback(ctx, Rollback{Hospital: "st-olaf"}); err != nil {
		t.Fatalf("rollback to v1: %v", err)
	}
}

// A deploy or rollback that finds another release than it expected
// commits nothing and names the one it found.
func TestDeployExpectsThePreviousDigest(t *testing.T) {
	ctx := context.Background()
	remote, r := newRemote(t)
	_, err := r.Deploy(ctx, Deployment{Hospital: "st-olaf", Image: img("st-olaf/v1").Ref, ExpectDigest: img("st-olaf/v2").Digest})
	wantErr(t, err, ErrMoved, "holds none", "--expect-digest none")
	if _, err := r.Deploy(ctx, Deployment{Hospital: "st-olaf", Image: img("st-olaf/v1").Ref, ExpectDigest: ExpectNone}); err != nil {
		t.Fatal(err)
	}
	head := remoteHead(t, remote)
	v1 := img("st-olaf/v1").Digest
	_, err = r.Deploy(ctx, Deployment{Hospital: "st-olaf", Image: img("st-olaf/v2").Ref, ExpectDigest: img("st-olaf/v3").Digest})
	wantErr(t, err, ErrMoved, "holds "+v1+" (v1)", "--expect-digest "+v1)
	_, err = r.Rollback(ctx, Rollback{Hospital: "st-olaf", ExpectDigest: img("st-olaf/v3").Digest})
	wantErr(t, err, ErrMoved, v1)
	_, err = r.Deploy(ctx, Deployment{Hospital: "st-olaf", Image: img("st-olaf/v2").Ref, ExpectDigest: "sha256:nope"})
	wantErr(t, err, ErrUsage, "--expect-digest")
	if remoteHead(t, remote) != head {
		t.Fatal("a refused deploy pushed")
	}
	if res, err := r.Deploy(ctx, Deployment{Hospital: "st-olaf", Image: img("st-olaf/v2").Ref, ExpectDigest: v1}); err != nil || !strings.Contains(res.Release.Version, "v2") {
		t.Fatalf("deploy with the right digest: %+v, %v", res, err)
	}
}
