package agent

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/tools/manifest"
)

// trusted makes f's manifest repo a new one whose trust file lists ward's
// SSH key (which signs f's deploys) and a person's GnuPG and SSH keys.
func (f *fixture) trusted(person *testenv.GPGKey, personSSH *testenv.SSHKey) {
	t := f.t
	t.Helper()
	ward := testenv.NewSSHKey(t, "ward-ci")
	trust := ward.AllowedSigner("ci@ward.invalid") + "\n" + personSSH.AllowedSigner("ada@ward.invalid") + "\n" + person.Public
	f.remote = testenv.BareRepo(t)
	var err error
	f.repo, err = manifest.New(f.remote, manifest.WithVerifier(f.verify), manifest.WithAuthor("Ward CI <ci@ward.invalid>"), manifest.WithSignKey(ward.Private))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.repo.InitTrust(context.Background(), false, []byte(trust)); err != nil {
		t.Fatal(err)
	}
}

// signedGit runs git in a clone of f's remote as key and pushes.
func (f *fixture) signedGit(key any, args ...string) string {
	t := f.t
	t.Helper()
	dir := filepath.Join(t.TempDir(), "clone")
	testenv.Git(t, "", "clone", "--quiet", f.remote, dir)
	testenv.GitSigned(t, dir, key, args...)
	testenv.Git(t, dir, "push", "--quiet", "origin", "main")
	return testenv.Git(t, f.remote, "rev-parse", "main")
}

// The "done when" for the manifest side: with a trust file, the
// agent follows ward's signed deploys; refuses an unsigned commit that
// puts v1 back (and keeps serving v2), and a signed one that is not a
// rollback; follows a signed git revert to v1 and a signed
// --allow-downgrade deploy; and a restarted agent refuses a force push that
// drops the commit it applied last.
func TestAgentFollowsOnlyTrustedHistory(t *testing.T) {
	host, _, _ := inProcessRegistry(t)
	f := newFixture(t, host)
	person := testenv.NewGPGKey(t, "Grace Hopper", "grace@ward.invalid")
	personSSH := testenv.NewSSHKey(t, "ada")
	f.trusted(person, personSSH)
	v1 := f.publish("v1", model(t, "v1", 1), f.key)
	f.publish("v2", model(t, "v2", 3), f.key)
	f.publish("v3", model(t, "v3", 2), f.key)
	ctx := context.Background()
	data := t.TempDir()
	a := f.startAgent(data)

	f.mustDeploy("v1")
	a.waitServing(t, f, "v1", 30*time.Second)
	f.mustDeploy("v2")
	a.waitServing(t, f, "v2", 30*time.Second)
	deployV2 := head(t, f)
	waitFor(t, 5*time.Second, "v2's deploy applied", func() bool { return a.Status().Manifest.Applied == deployV2 })
	if st := a.Status(); st.Manifest.Applied != deployV2 || st.Manifest.Provenance == nil || !st.Manifest.Provenance.Trusted ||
		!strings.Contains(st.Manifest.Provenance.Decider.Signer, "SSH ci@ward.invalid") {
		t.Fatalf("status at v2: %+v", st.Manifest)
	}

	// The hostile insider's plain commit that puts v1 back.
	since := time.Now()
	unsigned := f.pinByHand(v1)
	fl := a.waitFailure(t, StepTrust, since)
	if fl.Commit != unsigned || !strings.Contains(fl.Message, short(unsigned)) || !strings.Contains(fl.Message, "not signed") {
		t.Fatalf("refusal of the unsigned commit: %+v", fl)
	}
	if st := a.Status(); st.Refused == nil || st.Refused.Step != StepTrust || st.Serving.Version != "v2" || st.InSync {
		t.Fatalf("status after the refusal: %+v", st)
	}
	if v, err := answer(http.DefaultClient, a.url, f.request); err != nil || v != "v2" {
		t.Fatalf("after the refusal: %q, %v", v, err)
	}
	waitFor(t, 5*time.Second, "the refusal logged", func() bool {
		return strings.Contains(a.logs.String(), `"event.action":"agent.refuse"`) && strings.Contains(a.logs.String(), unsigned)
	})
	// A signed revert of it recovers (v2 again: nothing to switch).
	f.signedGit(personSSH, "revert", "--no-edit", unsigned)
	waitFor(t, 10*time.Second, "in sync after the signed revert", func() bool { return a.Status().InSync && a.Status().Refused == nil })

	// A signed commit that pins v1 but is no rollback: refused too.
	f.signWith = person
	since = time.Now()
	handV1 := f.pinByHand(v1)
	fl = a.waitFailure(t, StepDowngrade, since)
	if fl.Commit != handV1 || !strings.Contains(fl.Message, "v1 ("+v1.Digest) || !strings.Contains(fl.Message, "is older than v2") || !strings.Contains(fl.Message, short(handV1)) {
		t.Fatalf("refusal of the downgrade: %+v", fl)
	}
	f.signedGit(person, "revert", "--no-edit", handV1)
	waitFor(t, 10*time.Second, "in sync after reverting the downgrade", func() bool { return a.Status().InSync })

	// A signed git revert of v2's deploy is a rollback: v1.
	f.signedGit(person, "revert", "--no-edit", deployV2)
	a.waitServing(t, f, "v1", 30*time.Second)

	// v3, then an explicit, signed downgrade to v1 (not rolled back).
	f.mustDeploy("v3")
	a.waitServing(t, f, "v3", 30*time.Second)
	if res, err := f.repo.Deploy(ctx, manifest.Deployment{Hospital: "st-olaf", Image: v1.Ref, AllowDowngrade: true}); err != nil || res.Status != manifest.StatusCommitted {
		t.Fatalf("deploy --allow-downgrade v1: %+v, %v", res, err)
	}
	a.waitServing(t, f, "v1", 30*time.Second)
	applied := head(t, f)
	waitFor(t, 5*time.Second, "the head applied", func() bool { return a.Status().Manifest.Applied == applied })
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}

	// A force push that drops what the agent applied: a restarted agent
	// serves v1 from disk and refuses the rewritten history.
	testenv.Git(t, f.remote, "update-ref", "refs/heads/main", deployV2)
	b := f.startAgent(data)
	fl = b.waitFailure(t, StepTrust, time.Time{})
	if !strings.Contains(fl.Message, "does not descend from "+short(applied)) || !strings.Contains(fl.Message, "force push") {
		t.Fatalf("refusal of the force push: %+v", fl)
	}
	if v, err := answer(http.DefaultClient, b.url, f.request); err != nil || v != "v1" {
		t.Fatalf("after the force push: %q, %v", v, err)
	}
	if rec, err := os.ReadFile(filepath.Join(data, appliedFile)); err != nil || !strings.Contains(string(rec), applied) {
		t.Fatalf("%s: %s, %v", appliedFile, rec, err)
	}
}

// Without a trust file the agent follows as before and says so, once.
func TestAgentWarnsWithoutTrustFile(t *testing.T) {
	host, _, _ := inProcessRegistry(t)
	f := newFixture(t, host)
	f.publish("v1", model(t, "v1", 1), f.key)
	f.publish("v2", model(t, "v2", 2), f.key)
	a := f.startAgent("")
	f.mustDeploy("v1")
	a.waitServing(t, f, "v1", 30*time.Second)
	f.mustDeploy("v2")
	a.waitServing(t, f, "v2", 30*time.Second)
	if n := strings.Count(a.logs.String(), "THE MANIFEST REPO HAS NO TRUST FILE"); n != 1 {
		t.Fatalf("the warning was logged %d times:\n%s", n, a.logs.String())
	}
}
