package manifest

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/wardml/ward/internal/testenv"
)

func TestInitWritesTheLayoutOnce(t *testing.T) {
	remote, r := newRemote(t)
	head := remoteHead(t, remote)
	files := strings.Fields(testenv.Git(t, remote, "ls-tree", "-r", "--name-only", "main"))
	want := []string{"README.md", "base/deployment.yaml", "base/kustomization.yaml", "base/service.yaml"}
	if !slices.Equal(files, want) {
		t.Fatalf("files %v, want %v", files, want)
	}
	res, err := r.Init(context.Background(), false)
	if err != nil || res.Status != StatusUnchanged {
		t.Fatalf("second init: %+v, %v", res, err)
	}
	if remoteHead(t, remote) != head {
		t.Fatal("a second init committed")
	}
}

func TestDeployCommitMessageAndTrailers(t *testing.T) {
	remote, r := newRemote(t)
	deploy(t, r, "st-olaf/v1")
	res := deploy(t, r, "st-olaf/v2")
	v1, v2 := img("st-olaf/v1"), img("st-olaf/v2")

	head := remoteHead(t, remote)
	if res.Commits[len(res.Commits)-1] != head {
		t.Fatalf("result commit %v, remote head %s", res.Commits, head)
	}
	msg := testenv.Git(t, remote, "log", "-1", "--format=%B", "main")
	if s := subject(msg); s != "deploy(st-olaf): v2" {
		t.Errorf("subject %q", s)
	}
	cmd := execGit(remote, "interpret-trailers", "--parse")
	cmd.Stdin = strings.NewReader(msg)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	wantTrailers := "Ward-Hospital: st-olaf\nWard-Version: v2\nWard-Digest: " + v2.Digest + "\nWard-Previous-Digest: " + v1.Digest + "\n"
	if string(out) != wantTrailers {
		t.Errorf("git interpret-trailers --parse:\n%s\nwant:\n%s", out, wantTrailers)
	}
	// ParseTrailers reads what git reads.
	var ours strings.Builder
	for _, tr := range ParseTrailers(msg) {
		ours.WriteString(tr.Key + ": " + tr.Value + "\n")
	}
	if ours.String() != string(out) {
		t.Errorf("ParseTrailers:\n%s\ngit:\n%s", ours.String(), out)
	}
	// Only the hospital's folder changed.
	changed := testenv.Git(t, remote, "show", "--name-only", "--format=", "main")
	if changed != "hospitals/st-olaf/kustomization.yaml\nhospitals/st-olaf/release.yaml" {
		t.Errorf("the deploy changed:\n%s", changed)
	}
	// The deploy of v2 changes the pinned digest and the release, nothing else.
	diff := testenv.Git(t, remote, "diff", "-U0", "main~1", "main", "--", "hospitals/st-olaf/kustomization.yaml")
	var lines []string
	for _, l := range strings.Split(diff, "\n") {
		if (strings.HasPrefix(l, "+") || strings.HasPrefix(l, "-")) && !strings.HasPrefix(l, "+++") && !strings.HasPrefix(l, "---") {
			lines = append(lines, l[:1]+strings.TrimSpace(l[1:]))
		}
	}
	if !slices.Equal(lines, []string{"-digest: " + v1.Digest, "+digest: " + v2.Digest}) {
		t.Errorf("kustomization.yaml diff:\n%s", diff)
	}
	rel := gitFile(t, remote, "main", "hospitals/st-olaf/release.yaml")
	for _, want := range []string{"hospital: st-olaf", "version: v2", "image: " + v2.Ref, "digest: " + v2.Digest, "previous_digest: " + v1.Digest, "mae: 1234.5", "under_rate: 0.2"} {
		if !strings.Contains(rel, want) {
			t.Errorf("release.yaml lacks %q:\n%s", want, rel)
		}
	}
}

func TestDeployLiveDigestIsNoop(t *testing.T) {
	remote, r := newRemote(t)
	deploy(t, r, "st-olaf/v1")
	head := remoteHead(t, remote)
	i := img("st-olaf/v1")
	res, err := r.Deploy(context.Background(), Deployment{Hospital: "st-olaf", Image: i.Ref})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusUnchanged || !strings.Contains(res.Reason, "live already") || len(res.Commits) != 0 {
		t.Fatalf("result %+v", res)
	}
	if remoteHead(t, remote) != head {
		t.Fatal("deploying the live digest committed")
	}
}

func TestDeployDryRunCommitsNothing(t *testing.T) {
	remote, r := newRemote(t)
	deploy(t, r, "st-olaf/v1")
	head := remoteHead(t, remote)
	v1, v2 := img("st-olaf/v1"), img("st-olaf/v2")
	res, err := r.Deploy(context.Background(), Deployment{Hospital: "st-olaf", Image: v2.Ref, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusDryRun {
		t.Fatalf("status %s", res.Status)
	}
	for _, want := range []string{
		"--- a/hospitals/st-olaf/kustomization.yaml", "+++ b/hospitals/st-olaf/kustomization.yaml",
		"-    digest: " + v1.Digest, "+    digest: " + v2.Digest,
		"+++ b/hospitals/st-olaf/release.yaml", "-version: v1", "+version: v2",
	} {
		if !strings.Contains(res.Diff, want) {
			t.Errorf("dry-run diff lacks %q:\n%s", want, res.Diff)
		}
	}
	if remoteHead(t, remote) != head {
		t.Fatal("a dry run pushed")
	}
	if n := testenv.Git(t, remote, "rev-list", "--count", "--all"); n != "2" {
		t.Fatalf("the remote has %s commits, want 2", n)
	}
}

func TestDeployRefuses(t *testing.T) {
	remote, r := newRemote(t)
	deploy(t, r, "st-olaf/v1")
	head := remoteHead(t, remote)
	v2 := img("st-olaf/v2")
	ctx := context.Background()
	cases := []struct {
		name   string
		repo   *Repo
		d      Deployment
		target error
		says   []string
	}{
		{"tag", r, Deployment{Hospital: "st-olaf", Image: "registry.test/ward/st-olaf:v2"}, ErrUsage, []string{"reference by tag", "pin a digest"}},
		{"bad digest", r, Deployment{Hospital: "st-olaf", Image: "registry.test/ward/st-olaf@sha256:1234"}, ErrUsage, []string{"sha256:1234"}},
		{"bad hospital", r, Deployment{Hospital: "St Olaf", Image: v2.Ref}, ErrUsage, []string{`"St Olaf"`}},
		{"unsigned", r, Deployment{Hospital: "st-olaf", Image: "registry.test/ward/st-olaf@sha256:" + strings.Repeat("ab", 32)}, ErrUnverified, []string{"no signature verifies", "nothing deployed"}},
		{"other hospital", r, Deployment{Hospital: "mercy", Image: v2.Ref}, ErrUnverified, []string{`hospital "st-olaf", not "mercy"`}},
		{"digest mismatch", newRepo(t, remote, WithVerifier(func(context.Context, string) (Image, error) { return img("st-olaf/v3"), nil })),
			Deployment{Hospital: "st-olaf", Image: v2.Ref}, ErrUnverified, []string{"the verified image has digest " + img("st-olaf/v3").Digest}},
		{"no verifier", newRepo(t, remote, WithVerifier(nil)), Deployment{Hospital: "st-olaf", Image: v2.Ref}, ErrUsage, []string{"WARD_VERIFY_KEY"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.repo.Deploy(ctx, c.d)
			wantErr(t, err, c.target, c.says...)
		})
	}
	if remoteHead(t, remote) != head {
		t.Fatal("a refused deploy pushed")
	}

	empty := newRepo(t, testenv.BareRepo(t))
	_, err := empty.Deploy(ctx, Deployment{Hospital: "st-olaf", Image: v2.Ref})
	wantErr(t, err, ErrNotInitialized, "ward manifest init")
}

// A tag beside the digest is dropped: what is pinned is the digest.
func TestDeployDropsTagBesideDigest(t *testing.T) {
	remote, r := newRemote(t)
	v1 := img("st-olaf/v1")
	withTag := strings.Replace(v1.Ref, "@", ":v1@", 1)
	if _, err := r.Deploy(context.Background(), Deployment{Hospital: "st-olaf", Image: withTag}); err != nil {
		t.Fatal(err)
	}
	if rel := gitFile(t, remote, "main", "hospitals/st-olaf/release.yaml"); !strings.Contains(rel, "image: "+v1.Ref+"\n") {
		t.Fatalf("release.yaml:\n%s", rel)
	}
}

// A change a person made to the kustomization stays through a deploy.
func TestDeployKeepsHandEdits(t *testing.T) {
	remote, r := newRemote(t)
	deploy(t, r, "st-olaf/v1")
	dir := clone(t, remote)
	k := dir + "/hospitals/st-olaf/kustomization.yaml"
	data := gitFile(t, remote, "main", "hospitals/st-olaf/kustomization.yaml")
	data = strings.Replace(data, "images:", "# two more replicas for the winter\nreplicas:\n  - name: ward-serving\n    count: 4\nimages:", 1)
	writeFile(t, k, data)
	testenv.Git(t, dir, "commit", "--quiet", "-am", "st-olaf: 4 replicas")
	testenv.Git(t, dir, "push", "--quiet", "origin", "main")

	deploy(t, r, "st-olaf/v2")
	got := gitFile(t, remote, "main", "hospitals/st-olaf/kustomization.yaml")
	if got != strings.Replace(data, img("st-olaf/v1").Digest, img("st-olaf/v2").Digest, 1) {
		t.Fatalf("kustomization.yaml after the deploy:\n%s\nbefore:\n%s", got, data)
	}
}

func TestInitDryRunOnAnEmptyRemote(t *testing.T) {
	remote := testenv.BareRepo(t)
	r := newRepo(t, remote)
	res, err := r.Init(context.Background(), true)
	if err != nil || res.Status != StatusDryRun {
		t.Fatalf("%+v, %v", res, err)
	}
	for _, want := range []string{"+++ b/base/deployment.yaml", "+          image: ward-serving", "+++ b/README.md"} {
		if !strings.Contains(res.Diff, want) {
			t.Errorf("diff lacks %q:\n%s", want, res.Diff)
		}
	}
	if out, err := gitOutput(remote, "rev-parse", "--verify", "--quiet", "refs/heads/main"); err == nil {
		t.Fatalf("a dry run pushed: %s", out)
	}
}

func TestHospitalIDsAreFolderNames(t *testing.T) {
	_, r := newRemote(t)
	ctx := context.Background()
	for _, id := range []string{"../base", "st-olaf/..", "", "-x", "ST-OLAF"} {
		_, err := r.History(ctx, id)
		wantErr(t, err, ErrUsage, "hospital")
		_, err = r.Rollback(ctx, Rollback{Hospital: id})
		wantErr(t, err, ErrUsage, "hospital")
	}
}
