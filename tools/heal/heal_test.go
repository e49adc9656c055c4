package heal

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/feedback"
	"github.com/wardml/ward/pipelines/store"
	"github.com/wardml/ward/tools/manifest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// image is a packaged image of a hospital's version, with a digest of its
// own; the verifier below accepts exactly these (tools/image tests the
// signatures; here what counts is what the policy does with the repo).
func image(hospital, version string) manifest.Image {
	sum := sha256.Sum256([]byte(hospital + "/" + version))
	d := "sha256:" + hex.EncodeToString(sum[:])
	return manifest.Image{Ref: "registry.test/ward/" + hospital + "@" + d, Digest: d, Hospital: hospital, Version: version}
}

func verifier(_ context.Context, ref string) (manifest.Image, error) {
	for _, h := range []string{"north", "south"} {
		for _, v := range []string{"v1", "v2", "v3"} {
			if i := image(h, v); i.Ref == ref {
				return i, nil
			}
		}
	}
	return manifest.Image{}, errors.New("no signature verifies with the key")
}

// model is a judged model version: live MAE at ratio times a validation
// MAE of 1000 over 300 cases.
func model(version string, ratio float64) feedback.Model {
	m := feedback.Model{Version: version, Artifact: true, Live: models.Metrics{Count: 300, MAE: 1000 * ratio}, Validation: &models.Metrics{MAE: 1000},
		First: time.Date(2025, 2, 1, 8, 0, 0, 0, time.UTC), Last: time.Date(2025, 2, 27, 17, 0, 0, 0, time.UTC), MAERatio: &ratio}
	m.Degraded = ratio > 1.25
	m.Verdict = feedback.Healthy
	if m.Degraded {
		m.Verdict = feedback.Degraded
	}
	return m
}

func report(current map[string][]feedback.Model) *feedback.Report {
	r := &feedback.Report{}
	for _, id := range []string{"north", "south"} {
		ms := current[id]
		cur := ms[len(ms)-1]
		r.Hospitals = append(r.Hospitals, feedback.Hospital{Hospital: id, Current: cur.Version, Verdict: cur.Verdict, Reason: "live",
			Degraded: cur.Degraded, Drifted: cur.Drifted, Models: ms, Degradation: 0.25, MinCases: 50})
	}
	return r
}

// The policy on a real manifest repo (a bare repo, the real git) with
// signed commits, and a real database: a degraded model is reverted with
// its evidence in the message, signed; the next run, which still sees the
// degraded model's predictions, does nothing more; the release live by
// that rollback is never rolled back; a release that moved between the
// assessment and the revert is left alone; a drifted hospital is marked
// for retraining.
func TestApply(t *testing.T) {
	ctx := context.Background()
	remote := testenv.BareRepo(t)
	key := filepath.Join(t.TempDir(), "sign")
	keygen := testenv.LookPath(t, "ssh-keygen", "openssh-client")
	if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-C", "ward-ci", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	repo, err := manifest.New(remote, manifest.WithVerifier(verifier), manifest.WithAuthor("Ward CI <ci@ward.invalid>"), manifest.WithSignKey(key))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Init(ctx, false); err != nil {
		t.Fatal(err)
	}
	for _, hv := range []string{"north/v1", "north/v2", "south/v1", "south/v2"} {
		h, v, _ := strings.Cut(hv, "/")
		if _, err := repo.Deploy(ctx, manifest.Deployment{Hospital: h, Image: image(h, v).Ref}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "ward.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d := 0.25
	hs := []*contract.Hospital{
		{ID: "north", Feedback: contract.Feedback{Degradation: &d, MinCases: 50, OnDegraded: contract.PolicyRollback, OnDrift: contract.PolicyRetrain}},
		{ID: "south", Feedback: contract.Feedback{Degradation: &d, MinCases: 50, OnDegraded: contract.PolicyRollback, OnDrift: contract.PolicyRetrain}},
	}
	run := func(r *feedback.Report, between func()) *feedback.Plan {
		t.Helper()
		tls, err := Histories(ctx, repo, []string{"north", "south"})
		if err != nil {
			t.Fatal(err)
		}
		p := feedback.Decide(r, hs, Lives(tls), 2)
		if between != nil {
			between()
		}
		if err := Apply(ctx, p, repo, st, time.Now()); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// north's v2 is degraded; south's v2 has drifted.
	drifted := model("v2", 1.0)
	drifted.Drifted, drifted.Verdict = true, feedback.Drifted
	bad := report(map[string][]feedback.Model{"north": {model("v1", 1.0), model("v2", 1.9)}, "south": {model("v1", 1.0), drifted}})
	p := run(bad, nil)
	north := p.Decisions[0]
	if north.Rollback == nil || north.Rollback.Status != feedback.StatusDone || north.Alert {
		t.Fatalf("north: %+v; want rolled back", north)
	}
	msg := testenv.Git(t, remote, "log", "-1", "--format=%B", "main")
	for _, want := range []string{`Revert "deploy(north): v2"`, "This reverts commit ", "Rolled back by ward feedback --apply", "live MAE 1,900 over 300 cases",
		"Ward-Hospital: north", "Ward-Version: v1", "Ward-Verdict: degraded", "Ward-Live-MAE: 1,900", "Ward-Validation-MAE: 1,000",
		"Ward-MAE-Ratio: 1.900", "Ward-Cases: 300", "Ward-Window: 2025-02-01T08:00:00Z/2025-02-27T17:00:00Z"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the revert's message has no %q:\n%s", want, msg)
		}
	}
	if raw := testenv.Git(t, remote, "cat-file", "commit", "main"); !strings.Contains(raw, "-----BEGIN SSH SIGNATURE-----") {
		t.Errorf("the revert is not signed:\n%s", raw)
	}
	if !strings.HasPrefix(north.Rollback.Commit, strings.TrimSpace(testenv.Git(t, remote, "rev-parse", "main"))) {
		t.Errorf("the plan names commit %s", north.Rollback.Commit)
	}
	tl, err := repo.History(ctx, "north")
	if err != nil || tl.Live.Version != "v1" || len(tl.Rejected) != 1 || tl.Rejected[0].Version != "v2" {
		t.Fatalf("north after the rollback: %+v, %v", tl, err)
	}
	marks, err := st.RetrainMarks(ctx)
	if err != nil || len(marks) != 1 || marks[0].Hospital != "south" || marks[0].Version != "v2" || p.Decisions[1].Retrain.Status != feedback.StatusDone {
		t.Fatalf("retrain marks %+v, %v; south %+v", marks, err, p.Decisions[1])
	}

	// The next run still sees v2's predictions as north's latest: v2 is
	// replaced already, nothing more is done, nobody is called.
	head := testenv.Git(t, remote, "rev-parse", "main")
	p = run(bad, nil)
	if s := p.Decisions[0].Rollback; s.Status != feedback.StatusDeclined || !strings.Contains(s.Reason, "replaced already") || p.Decisions[0].Alert {
		t.Fatalf("second run, north: %+v", p.Decisions[0])
	}
	if !strings.Contains(p.Decisions[1].Retrain.Reason, "marked already") {
		t.Fatalf("second run, south: %+v", p.Decisions[1].Retrain)
	}
	// v1, live by the rollback, turns out degraded too: no second revert.
	p = run(report(map[string][]feedback.Model{"north": {model("v2", 1.9), model("v1", 1.6)}, "south": {model("v1", 1.0), model("v2", 1.0)}}), nil)
	if s := p.Decisions[0].Rollback; s.Status != feedback.StatusDeclined || !strings.Contains(s.Reason, "never rolls back a rollback") || !p.Decisions[0].Alert {
		t.Fatalf("north degraded again: %+v", p.Decisions[0])
	}
	if got := testenv.Git(t, remote, "rev-parse", "main"); got != head {
		t.Fatalf("runs that declined moved main from %s to %s", head, got)
	}

	// south is degraded, but a person deploys v3 between the assessment
	// and the revert: v3 is not reverted.
	p = run(report(map[string][]feedback.Model{"north": {model("v1", 1.0)}, "south": {model("v1", 1.0), model("v2", 2.0)}}), func() {
		if _, err := repo.Deploy(ctx, manifest.Deployment{Hospital: "south", Image: image("south", "v3").Ref}); err != nil {
			t.Fatal(err)
		}
	})
	if s := p.Decisions[1].Rollback; s.Status != feedback.StatusDeclined || !strings.Contains(s.Reason, ErrMoved.Error()) {
		t.Fatalf("south moved: %+v", p.Decisions[1].Rollback)
	}
	if tl, _ := repo.History(ctx, "south"); tl.Live.Version != "v3" {
		t.Fatalf("south runs %s; want v3, not reverted", tl.Live.Version)
	}
}
