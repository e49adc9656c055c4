package manifest

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/wardml/ward/internal/testenv"
)

// actions is a timeline's actions, newest first.
func actions(tl *Timeline) []string {
	var out []string
	for _, e := range tl.Events {
		out = append(out, e.Action)
	}
	return out
}

func history(t *testing.T, r *Repo, id string) *Timeline {
	t.Helper()
	tl, err := r.History(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return tl
}

// sameFolder checks that the hospital's folder at two commits is the same
// tree, by the real git.
func sameFolder(t *testing.T, remote, a, b, id string) {
	t.Helper()
	ta := testenv.Git(t, remote, "rev-parse", a+":"+HospitalDir(id))
	tb := testenv.Git(t, remote, "rev-parse", b+":"+HospitalDir(id))
	if ta != tb {
		t.Fatalf("%s at %s is tree %s, at %s tree %s", HospitalDir(id), a, ta, b, tb)
	}
}

func TestRollbackWritesARevert(t *testing.T) {
	remote, r := newRemote(t)
	c1 := deploy(t, r, "st-olaf/v1").Commits[0]
	deploy(t, r, "mercy/v1")
	c2 := deploy(t, r, "st-olaf/v2").Commits[0]
	v1, v2 := img("st-olaf/v1"), img("st-olaf/v2")

	res, err := r.Rollback(context.Background(), Rollback{Hospital: "st-olaf"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusCommitted || res.Release.Digest != v1.Digest || res.Previous.Digest != v2.Digest {
		t.Fatalf("result %+v", res)
	}
	log := testenv.Git(t, remote, "log", "--format=%s", "main")
	if first, _, _ := strings.Cut(log, "\n"); first != `Revert "deploy(st-olaf): v2"` {
		t.Fatalf("git log:\n%s", log)
	}
	msg := testenv.Git(t, remote, "log", "-1", "--format=%B", "main")
	for _, want := range []string{"This reverts commit " + c2 + ".", "Ward-Hospital: st-olaf", "Ward-Version: v1", "Ward-Digest: " + v1.Digest, "Ward-Previous-Digest: " + v2.Digest} {
		if !strings.Contains(msg, want) {
			t.Errorf("revert message lacks %q:\n%s", want, msg)
		}
	}
	// The files are exactly those of v1's deploy.
	sameFolder(t, remote, c1, "main", "st-olaf")

	tl := history(t, r, "st-olaf")
	if got := actions(tl); !slices.Equal(got, []string{ActionRollback, ActionDeploy, ActionDeploy}) {
		t.Fatalf("actions %v", got)
	}
	if tl.Events[0].Reverts != c2 || !slices.Equal(tl.Events[1].RevertedBy, []string{tl.Events[0].Commit}) || !tl.Events[1].Rejected || tl.Events[2].Rejected {
		t.Errorf("events %+v", tl.Events)
	}
	if len(tl.Rejected) != 1 || tl.Rejected[0].Digest != v2.Digest || tl.Rejected[0].Commit != tl.Events[0].Commit {
		t.Errorf("rejected %+v", tl.Rejected)
	}
	if tl.Live.Digest != v1.Digest {
		t.Errorf("live %+v", tl.Live)
	}
	// The other hospital's timeline does not see any of it.
	if got := actions(history(t, r, "mercy")); !slices.Equal(got, []string{ActionDeploy}) {
		t.Errorf("mercy: %v", got)
	}

	redeployRefusedUnlessForced(t, remote, r, tl.Events[0].Commit)
}

// redeployRefusedUnlessForced: the next deploy of the rolled-back v2 is
// refused, and goes through with Force.
func redeployRefusedUnlessForced(t *testing.T, remote string, r *Repo, rollback string) {
	t.Helper()
	v2 := img("st-olaf/v2")
	head := remoteHead(t, remote)
	_, err := r.Deploy(context.Background(), Deployment{Hospital: "st-olaf", Image: v2.Ref})
	wantErr(t, err, ErrRejected, v2.Digest, "(v2) was rolled back by "+short(rollback), "--force")
	if remoteHead(t, remote) != head {
		t.Fatal("a refused deploy pushed")
	}
	res, err := r.Deploy(context.Background(), Deployment{Hospital: "st-olaf", Image: v2.Ref, Force: true})
	if err != nil || res.Status != StatusCommitted {
		t.Fatalf("deploy --force: %+v, %v", res, err)
	}
	if msg := testenv.Git(t, remote, "log", "-1", "--format=%B", "main"); !strings.Contains(msg, "Deployed with --force: "+v2.Digest+" was rolled back by "+short(rollback)) {
		t.Errorf("forced deploy message:\n%s", msg)
	}
	tl := history(t, r, "st-olaf")
	if len(tl.Rejected) != 0 || tl.Events[0].Action != ActionDeploy || tl.Events[0].Rejected || tl.Live.Digest != v2.Digest {
		t.Errorf("after deploy --force: rejected %+v, events %+v", tl.Rejected, tl.Events[0])
	}
}

// A git revert made by hand and pushed is a rollback like ward's.
func TestHandRevertCountsAsRollback(t *testing.T) {
	remote, r := newRemote(t)
	c1 := deploy(t, r, "st-olaf/v1").Commits[0]
	c2 := deploy(t, r, "st-olaf/v2").Commits[0]
	dir := clone(t, remote)
	testenv.Git(t, dir, "revert", "--no-edit", c2)
	testenv.Git(t, dir, "push", "--quiet", "origin", "main")
	if s := testenv.Git(t, remote, "log", "-1", "--format=%s", "main"); s != `Revert "deploy(st-olaf): v2"` {
		t.Fatalf("git revert wrote %q", s)
	}
	sameFolder(t, remote, c1, "main", "st-olaf")

	tl := history(t, r, "st-olaf")
	if got := actions(tl); !slices.Equal(got, []string{ActionRollback, ActionDeploy, ActionDeploy}) {
		t.Fatalf("actions %v", got)
	}
	if tl.Events[0].Reverts != c2 || len(tl.Rejected) != 1 || tl.Rejected[0].Digest != img("st-olaf/v2").Digest || tl.Live.Version != "v1" {
		t.Fatalf("timeline %+v", tl)
	}
	// ward rollback now has nothing before v1 to go back to.
	_, err := r.Rollback(context.Background(), Rollback{Hospital: "st-olaf"})
	if err == nil || !strings.Contains(err.Error(), "only deploy in effect") {
		t.Fatalf("rollback: %v", err)
	}
	redeployRefusedUnlessForced(t, remote, r, tl.Events[0].Commit)
}

// The revert of a rollback (by hand) deploys again: the digest is no
// longer rejected, and the next rollback reverts that reapply.
func TestRevertOfRollbackReapplies(t *testing.T) {
	remote, r := newRemote(t)
	deploy(t, r, "st-olaf/v1")
	c2 := deploy(t, r, "st-olaf/v2").Commits[0]
	rb, err := r.Rollback(context.Background(), Rollback{Hospital: "st-olaf"})
	if err != nil {
		t.Fatal(err)
	}
	dir := clone(t, remote)
	testenv.Git(t, dir, "revert", "--no-edit", "HEAD")
	testenv.Git(t, dir, "push", "--quiet", "origin", "main")
	reapply := remoteHead(t, remote)
	reapplySubject := testenv.Git(t, remote, "log", "-1", "--format=%s", "main")
	sameFolder(t, remote, c2, "main", "st-olaf")

	tl := history(t, r, "st-olaf")
	if got := actions(tl); !slices.Equal(got, []string{ActionReapply, ActionRollback, ActionDeploy, ActionDeploy}) {
		t.Fatalf("actions %v", got)
	}
	if len(tl.Rejected) != 0 || tl.Events[0].Reverts != rb.Commits[0] || tl.Live.Version != "v2" {
		t.Fatalf("timeline %+v", tl)
	}
	// v2 is live: deploying it again changes nothing.
	res, err := r.Deploy(context.Background(), Deployment{Hospital: "st-olaf", Image: img("st-olaf/v2").Ref})
	if err != nil || res.Status != StatusUnchanged {
		t.Fatalf("deploy v2: %+v, %v", res, err)
	}
	// ward rollback reverts the reapply, and v2 is rejected again.
	res, err = r.Rollback(context.Background(), Rollback{Hospital: "st-olaf"})
	if err != nil || res.Release.Version != "v1" {
		t.Fatalf("rollback: %+v, %v", res, err)
	}
	msg := testenv.Git(t, remote, "log", "-1", "--format=%B", "main")
	// git names the revert of a revert Reapply (since 2.43) or Revert "Revert ...".
	if !strings.HasPrefix(msg, revertSubject(reapplySubject)+"\n") || !strings.Contains(msg, "This reverts commit "+reapply+".") {
		t.Fatalf("message:\n%s", msg)
	}
	tl = history(t, r, "st-olaf")
	if len(tl.Rejected) != 1 || tl.Rejected[0].Version != "v2" || tl.Events[0].Action != ActionRollback {
		t.Fatalf("rejected %+v, events %v", tl.Rejected, actions(tl))
	}
}

func TestRevertSubject(t *testing.T) {
	for in, want := range map[string]string{
		"deploy(st-olaf): v2":                   `Revert "deploy(st-olaf): v2"`,
		`Revert "deploy(st-olaf): v2"`:          `Reapply "deploy(st-olaf): v2"`,
		`Reapply "deploy(st-olaf): v2"`:         `Revert "Reapply "deploy(st-olaf): v2""`,
		`Revert "Revert "deploy(st-olaf): v2""`: `Reapply "Revert "deploy(st-olaf): v2""`,
	} {
		if got := revertSubject(in); got != want {
			t.Errorf("revertSubject(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestRollbackTo(t *testing.T) {
	remote, r := newRemote(t)
	c1 := deploy(t, r, "st-olaf/v1").Commits[0]
	c2 := deploy(t, r, "st-olaf/v2").Commits[0]
	c3 := deploy(t, r, "st-olaf/v3").Commits[0]

	_, err := r.Rollback(context.Background(), Rollback{Hospital: "st-olaf", To: "v9"})
	wantErr(t, err, ErrUsage, "--to v9", "v3 (", "v2 (", "v1 (")
	res, err := r.Rollback(context.Background(), Rollback{Hospital: "st-olaf", To: "v3"})
	if err != nil || res.Status != StatusUnchanged {
		t.Fatalf("rollback --to the live release: %+v, %v", res, err)
	}

	res, err = r.Rollback(context.Background(), Rollback{Hospital: "st-olaf", To: img("st-olaf/v1").Digest})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Commits) != 2 || res.Release.Version != "v1" {
		t.Fatalf("result %+v", res)
	}
	subjects := testenv.Git(t, remote, "log", "-2", "--format=%s", "main")
	if subjects != "Revert \"deploy(st-olaf): v2\"\nRevert \"deploy(st-olaf): v3\"" {
		t.Fatalf("git log:\n%s", subjects)
	}
	for i, target := range []string{c3, c2} {
		if msg := testenv.Git(t, remote, "log", "-1", "--format=%B", res.Commits[i]); !strings.Contains(msg, "This reverts commit "+target+".") {
			t.Errorf("commit %d:\n%s", i, msg)
		}
	}
	sameFolder(t, remote, c1, "main", "st-olaf")
	tl := history(t, r, "st-olaf")
	var rejected []string
	for _, rj := range tl.Rejected {
		rejected = append(rejected, rj.Version)
	}
	slices.Sort(rejected)
	if !slices.Equal(rejected, []string{"v2", "v3"}) {
		t.Fatalf("rejected %v", rejected)
	}
}

func TestRollbackDryRun(t *testing.T) {
	remote, r := newRemote(t)
	deploy(t, r, "st-olaf/v1")
	deploy(t, r, "st-olaf/v2")
	head := remoteHead(t, remote)
	res, err := r.Rollback(context.Background(), Rollback{Hospital: "st-olaf", DryRun: true})
	if err != nil || res.Status != StatusDryRun {
		t.Fatalf("%+v, %v", res, err)
	}
	if !strings.Contains(res.Diff, "-version: v2") || !strings.Contains(res.Diff, "+version: v1") {
		t.Errorf("diff:\n%s", res.Diff)
	}
	if remoteHead(t, remote) != head {
		t.Fatal("a dry run pushed")
	}
}

// A rollback whose files changed since the deploy stops, names the file,
// the deploy and the change, and changes nothing.
func TestRollbackConflict(t *testing.T) {
	remote, r := newRemote(t)
	deploy(t, r, "st-olaf/v1")
	c2 := deploy(t, r, "st-olaf/v2").Commits[0]
	dir := clone(t, remote)
	k := dir + "/hospitals/st-olaf/kustomization.yaml"
	data := gitFile(t, remote, "main", "hospitals/st-olaf/kustomization.yaml")
	writeFile(t, k, strings.Replace(data, "namePrefix: st-olaf-", "namePrefix: st-olaf-general-", 1))
	testenv.Git(t, dir, "commit", "--quiet", "-am", "st-olaf: rename")
	testenv.Git(t, dir, "push", "--quiet", "origin", "main")
	edit := remoteHead(t, remote)

	_, err := r.Rollback(context.Background(), Rollback{Hospital: "st-olaf"})
	wantErr(t, err, ErrConflict, "hospitals/st-olaf/kustomization.yaml changed since deploy "+short(c2)+" (v2) by "+short(edit), `"st-olaf: rename"`, "nothing was rolled back", "git revert", "ward deploy --force")
	if remoteHead(t, remote) != edit {
		t.Fatal("a conflicting rollback pushed")
	}
	if got := actions(history(t, r, "st-olaf")); !slices.Equal(got, []string{ActionChange, ActionDeploy, ActionDeploy}) {
		t.Errorf("actions %v", got)
	}
}

// A hand edit that breaks the manifest is reported, and deploys stop
// until it is fixed.
func TestInvalidManifestStopsDeploys(t *testing.T) {
	remote, r := newRemote(t)
	deploy(t, r, "st-olaf/v1")
	dir := clone(t, remote)
	data := gitFile(t, remote, "main", "hospitals/st-olaf/release.yaml")
	writeFile(t, dir+"/hospitals/st-olaf/release.yaml", strings.Replace(data, "digest: sha256:", "digest: sha256:00", 1))
	testenv.Git(t, dir, "commit", "--quiet", "-am", "oops")
	testenv.Git(t, dir, "push", "--quiet", "origin", "main")

	tl := history(t, r, "st-olaf")
	if tl.Live != nil || !strings.Contains(tl.Problem, "hospitals/st-olaf/release.yaml: digest") {
		t.Fatalf("live %+v, problem %q", tl.Live, tl.Problem)
	}
	_, err := r.Deploy(context.Background(), Deployment{Hospital: "st-olaf", Image: img("st-olaf/v2").Ref})
	wantErr(t, err, ErrInvalid, "hospitals/st-olaf/release.yaml", "fix it by hand")
}
