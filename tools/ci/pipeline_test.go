package ci

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/feedback"
	"github.com/wardml/ward/pipelines/feedback/report"
	"github.com/wardml/ward/pipelines/store"
	"github.com/wardml/ward/serving"
	"github.com/wardml/ward/tools/site/sitetest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// workflow is the part of a GitHub Actions workflow that the runner below
// follows.
type workflow struct {
	Env  map[string]string `yaml:"env"`
	Jobs map[string]struct {
		Needs    stringOrList      `yaml:"needs"`
		Outputs  map[string]string `yaml:"outputs"`
		Env      map[string]string `yaml:"env"`
		Strategy struct {
			Matrix map[string]string `yaml:"matrix"`
		} `yaml:"strategy"`
		Steps []struct {
			ID   string            `yaml:"id"`
			Name string            `yaml:"name"`
			Uses string            `yaml:"uses"`
			Run  string            `yaml:"run"`
			Env  map[string]string `yaml:"env"`
			With map[string]string `yaml:"with"`
		} `yaml:"steps"`
	} `yaml:"jobs"`
}

type stringOrList []string

func (s *stringOrList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = []string{n.Value}
		return nil
	}
	return n.Decode((*[]string)(s))
}

// runner runs a workflow's jobs as GitHub Actions would: jobs in the order
// of their needs, each in a fresh workspace (the repository's files), a
// matrix job once per value, artifacts carried from job to job, and every
// run step with bash, its env and the expressions it names filled in. The
// actions it stands in for are checkout and setup-go (the workspace is the
// checkout; Go is here) and upload/download-artifact (copies).
type runner struct {
	t         *testing.T
	secrets   map[string]string
	vars      map[string]string
	inputs    map[string]string
	artifacts string
	extraEnv  []string
	log       strings.Builder
	// summary is the file GITHUB_STEP_SUMMARY names, for every job.
	summary string
}

var expr = regexp.MustCompile(`\$\{\{\s*([^}]*?)\s*\}\}`)

func (r *runner) eval(s string, ctx map[string]string) string {
	return expr.ReplaceAllStringFunc(s, func(m string) string {
		e := strings.TrimSpace(expr.FindStringSubmatch(m)[1])
		// A || 'default': the first that is not empty.
		if first, alt, ok := strings.Cut(e, "||"); ok {
			if v := r.eval("${{ "+strings.TrimSpace(first)+" }}", ctx); v != "" {
				return v
			}
			return strings.Trim(strings.TrimSpace(alt), "'")
		}
		switch {
		case strings.HasPrefix(e, "secrets."):
			return r.secrets[strings.TrimPrefix(e, "secrets.")]
		case strings.HasPrefix(e, "vars."):
			return r.vars[strings.TrimPrefix(e, "vars.")]
		case strings.HasPrefix(e, "inputs."):
			return r.inputs[strings.TrimPrefix(e, "inputs.")]
		}
		if v, ok := ctx[e]; ok {
			return v
		}
		r.t.Fatalf("the test's runner cannot evaluate ${{ %s }}", e)
		return ""
	})
}

// workspace makes a fresh checkout: the repository's files, by links.
func (r *runner) workspace() string {
	dir := r.t.TempDir()
	entries, err := os.ReadDir(root)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "out" || e.Name() == "bin" || e.Name() == ".git" || e.Name() == "hospitals" {
			continue
		}
		abs, _ := filepath.Abs(filepath.Join(root, e.Name()))
		if err := os.Symlink(abs, filepath.Join(dir, e.Name())); err != nil {
			r.t.Fatal(err)
		}
	}
	return dir
}

// run runs the workflow file; hospitals is the contracts folder each
// checkout gets (the repository's, in the real pipeline).
func (r *runner) run(file, hospitals string) {
	r.t.Helper()
	b, err := os.ReadFile(filepath.Join(root, ".github", "workflows", file))
	if err != nil {
		r.t.Fatal(err)
	}
	var wf workflow
	if err := yaml.Unmarshal(b, &wf); err != nil {
		r.t.Fatal(err)
	}
	outputs := map[string]map[string]string{}
	done := map[string]bool{}
	for len(done) < len(wf.Jobs) {
		progressed := false
		for _, name := range slices.Sorted(func(yield func(string) bool) {
			for n := range wf.Jobs {
				if !yield(n) {
					return
				}
			}
		}) {
			job := wf.Jobs[name]
			if done[name] || slices.ContainsFunc(job.Needs, func(n string) bool { return !done[n] }) {
				continue
			}
			ctx := map[string]string{}
			for need, outs := range outputs {
				for k, v := range outs {
					ctx["needs."+need+".outputs."+k] = v
				}
			}
			matrix := []map[string]string{{}}
			for key, val := range job.Strategy.Matrix {
				var values []string
				e := strings.TrimSpace(expr.FindStringSubmatch(val)[1])
				inner := strings.TrimSuffix(strings.TrimPrefix(e, "fromJSON("), ")")
				if err := json.Unmarshal([]byte(ctx[inner]), &values); err != nil {
					r.t.Fatalf("job %s: matrix %s = %s: %v", name, key, ctx[inner], err)
				}
				matrix = nil
				for _, v := range values {
					matrix = append(matrix, map[string]string{"matrix." + key: v})
				}
			}
			for _, m := range matrix {
				jobCtx := map[string]string{}
				for k, v := range ctx {
					jobCtx[k] = v
				}
				for k, v := range m {
					jobCtx[k] = v
				}
				outs := r.runJob(name, wf, jobCtx, hospitals)
				if len(job.Outputs) > 0 {
					outputs[name] = map[string]string{}
					for k, v := range job.Outputs {
						outputs[name][k] = r.eval(v, outs)
					}
				}
			}
			done[name] = true
			progressed = true
		}
		if !progressed {
			r.t.Fatalf("%s: jobs wait on each other", file)
		}
	}
}

func (r *runner) runJob(name string, wf workflow, ctx map[string]string, hospitals string) map[string]string {
	r.t.Helper()
	job := wf.Jobs[name]
	ws := r.workspace()
	if err := os.CopyFS(filepath.Join(ws, "hospitals"), os.DirFS(hospitals)); err != nil {
		r.t.Fatal(err)
	}
	ghEnv := filepath.Join(r.t.TempDir(), "github_env")
	os.WriteFile(ghEnv, nil, 0o600)
	stepOutputs := map[string]string{}
	for i, st := range job.Steps {
		with := map[string]string{}
		for k, v := range st.With {
			with[k] = r.eval(v, ctx)
		}
		switch {
		case strings.HasPrefix(st.Uses, "actions/checkout@"), strings.HasPrefix(st.Uses, "actions/setup-go@"):
			continue
		case strings.HasPrefix(st.Uses, "actions/upload-artifact@"):
			src, dst := filepath.Join(ws, with["path"]), filepath.Join(r.artifacts, with["name"])
			if st, err := os.Stat(src); err == nil && !st.IsDir() {
				// A single file is the artifact's one file.
				os.MkdirAll(dst, 0o755)
				if b, err := os.ReadFile(src); err != nil || os.WriteFile(filepath.Join(dst, filepath.Base(src)), b, 0o644) != nil {
					r.t.Fatalf("job %s: upload-artifact %s: %v", name, with["path"], err)
				}
				continue
			}
			if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
				r.t.Fatalf("job %s: upload-artifact %s: %v", name, with["path"], err)
			}
			continue
		case strings.HasPrefix(st.Uses, "actions/download-artifact@"):
			arts, _ := os.ReadDir(r.artifacts)
			for _, a := range arts {
				if ok, _ := path.Match(with["pattern"], a.Name()); ok {
					if err := os.CopyFS(filepath.Join(ws, with["path"], a.Name()), os.DirFS(filepath.Join(r.artifacts, a.Name()))); err != nil {
						r.t.Fatal(err)
					}
				}
			}
			continue
		case st.Uses != "":
			r.t.Fatalf("job %s: the test's runner does not know the action %s", name, st.Uses)
		}
		ghOut := filepath.Join(r.t.TempDir(), "github_output")
		os.WriteFile(ghOut, nil, 0o600)
		cmd := exec.Command("bash", "-e", "-o", "pipefail", "-c", st.Run)
		cmd.Dir = ws
		if r.summary == "" {
			r.summary = filepath.Join(r.t.TempDir(), "step_summary.md")
		}
		cmd.Env = append(os.Environ(), "GITHUB_ACTIONS=true", "GITHUB_ENV="+ghEnv, "GITHUB_OUTPUT="+ghOut, "RUNNER_TEMP="+r.t.TempDir(), "GITHUB_STEP_SUMMARY="+r.summary)
		cmd.Env = append(cmd.Env, r.extraEnv...)
		for _, env := range []map[string]string{wf.Env, job.Env, st.Env} {
			for k, v := range env {
				cmd.Env = append(cmd.Env, k+"="+r.eval(v, ctx))
			}
		}
		cmd.Env = append(cmd.Env, readKV(r.t, ghEnv)...)
		out, err := cmd.CombinedOutput()
		fmt.Fprintf(&r.log, "== %s / %s (%s) %v\n%s\n", name, st.Name, ctx["matrix.hospital"], err, out)
		if err != nil {
			r.t.Fatalf("job %s, step %d %q failed: %v\n%s", name, i, st.Name, err, out)
		}
		if st.ID != "" {
			for _, kv := range readKV(r.t, ghOut) {
				k, v, _ := strings.Cut(kv, "=")
				stepOutputs["steps."+st.ID+".outputs."+k] = v
			}
		}
	}
	return stepOutputs
}

func readKV(t *testing.T, file string) []string {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "=") {
			out = append(out, sc.Text())
		}
	}
	return out
}

func read(t *testing.T, file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPipelineEndToEnd runs the steps of .github/workflows/pipeline.yml and
// rollback.yml, as written, against real services: hospitals' encrypted
// extracts on OpenSSH's sshd, PostgreSQL, Debian's docker-registry and a
// bare Git remote. Two scheduled runs (the second after a new month of
// extracts arrives) deploy v1 then v2 of every hospital; the rollback
// workflow reverts one hospital to v1.
func TestPipelineEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("the whole pipeline takes minutes; not in -short")
	}
	pg := testenv.Postgres(t)
	reg := testenv.StartRegistry(t)
	sshd := testenv.StartSSHD(t)
	remote := testenv.BareRepo(t)
	work := t.TempDir()
	bin := filepath.Join(work, "bin", "ward")
	wardCmd := func(env []string, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ward %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	testenv.Run(t, root, "go", "build", "-o", bin, "./tools/ward")

	// The hospitals' side: 3 hospitals, 13 months of encrypted extracts;
	// the last month arrives before the second run.
	group := filepath.Join(work, "group")
	wardCmd(nil, "synth", "--out", group, "--hospitals", "3", "--months", "13", "--start", "2024-01")
	drop := filepath.Join(sshd.Root, "drop")
	later := filepath.Join(work, "later")
	if err := filepath.WalkDir(filepath.Join(group, "sftp"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(filepath.Join(group, "sftp"), p)
		dst := filepath.Join(drop, rel)
		if strings.Contains(d.Name(), "2025-01") {
			dst = filepath.Join(later, rel)
		}
		os.MkdirAll(filepath.Dir(dst), 0o755)
		return os.Rename(p, dst)
	}); err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(work, "signing")
	wardCmd(nil, "keys", "generate", "--out", keys)

	r := &runner{
		t: t,
		secrets: map[string]string{
			"WARD_DATABASE":     pg,
			"WARD_SFTP_KEY":     read(t, sshd.ClientKey),
			"WARD_KNOWN_HOSTS":  read(t, sshd.KnownHosts),
			"WARD_PGP_KEY":      read(t, filepath.Join(group, "keys", "ingest.pgp")),
			"WARD_AGE_IDENTITY": read(t, filepath.Join(group, "keys", "ingest.age")),
			"WARD_SIGNING_KEY":  read(t, filepath.Join(keys, "ward.key")),
		},
		vars: map[string]string{
			"WARD_SFTP":          sshd.URL("/" + strings.TrimPrefix(drop, "/")),
			"WARD_REGISTRY":      reg.Host,
			"WARD_MANIFEST_REPO": remote,
			"WARD_VERIFY_KEY":    read(t, filepath.Join(keys, "ward.pub")),
		},
		artifacts: filepath.Join(work, "artifacts"),
		// Files that are complete need no second listing in a test.
		extraEnv: []string{"SOURCE_DATE_EPOCH=1764504000"},
	}
	defer func() {
		if t.Failed() {
			t.Logf("the runs:\n%s", r.log.String())
		}
	}()
	hospitals := filepath.Join(group, "hospitals")
	// The group's policy: roll a degraded model back, retrain a drifted one.
	setPolicy(t, hospitals, "  on_degraded: rollback\n  on_drift: retrain")
	wardCmd([]string{"WARD_MANIFEST_REPO=" + remote}, "manifest", "init")

	r.run("pipeline.yml", hospitals)
	ids := []string{"northgate", "riverside", "st-olaf"}
	v1 := map[string]string{}
	env := []string{"WARD_MANIFEST_REPO=" + remote, "WARD_REGISTRY=" + reg.Host, "WARD_DATABASE=" + pg, "WARD_HOSPITALS=" + hospitals}
	for _, id := range ids {
		out := wardCmd(env, "history", "--hospital", id, "--output", "json")
		var tl struct {
			Live struct{ Version, Image, Digest string }
		}
		if err := json.Unmarshal([]byte(out), &tl); err != nil || tl.Live.Digest == "" {
			t.Fatalf("after the first run, %s has no live release: %v\n%s", id, err, out)
		}
		v1[id] = tl.Live.Version
		wardCmd(env, "verify", tl.Live.Image, "--key", filepath.Join(keys, "ward.pub"))
	}

	// A new month arrives; the next scheduled run ships v2.
	if err := os.CopyFS(drop, os.DirFS(later)); err != nil {
		t.Fatal(err)
	}
	r.artifacts = filepath.Join(work, "artifacts2")
	r.run("pipeline.yml", hospitals)
	for _, id := range ids {
		out := wardCmd(env, "history", "--hospital", id, "--output", "json")
		var tl struct{ Live struct{ Version string } }
		json.Unmarshal([]byte(out), &tl)
		if tl.Live.Version == v1[id] || !strings.HasPrefix(tl.Live.Version, "2025.01-") {
			t.Fatalf("after the second run, %s runs %q; want a model of the data to 2025-01, not %s", id, tl.Live.Version, v1[id])
		}
		// Its gate compared it with the model in production, read from
		// the image the manifest pinned.
		var m struct {
			Gate struct {
				Passed            bool   `json:"passed"`
				ProductionVersion string `json:"production_version"`
			} `json:"gate"`
		}
		if err := json.Unmarshal([]byte(read(t, filepath.Join(r.artifacts, "model-"+id, "report", "metrics.json"))), &m); err != nil || !m.Gate.Passed || m.Gate.ProductionVersion != v1[id] {
			t.Fatalf("%s's second model was gated against %q (passed %v, %v); want the deployed %s", id, m.Gate.ProductionVersion, m.Gate.Passed, err, v1[id])
		}
	}

	// A person rolls riverside back with the rollback workflow.
	r.inputs = map[string]string{"hospital": "riverside", "to": ""}
	r.run("rollback.yml", hospitals)
	log := testenv.Git(t, remote, "log", "--format=%s", "main")
	if !strings.HasPrefix(log, `Revert "deploy(riverside): 2025.01-`) {
		t.Fatalf("the manifest repo's last commit is not the revert of riverside's deploy:\n%s", log)
	}
	out := wardCmd(env, "history", "--hospital", "riverside", "--output", "json")
	var tl struct {
		Live     struct{ Version string }
		Rejected []struct{ Version string }
	}
	json.Unmarshal([]byte(out), &tl)
	if tl.Live.Version != v1["riverside"] || len(tl.Rejected) != 1 {
		t.Fatalf("after the rollback, riverside: %s", out)
	}

	// The next scheduled run (no new data) does not undo the rollback.
	r.artifacts = filepath.Join(work, "artifacts3")
	r.run("pipeline.yml", hospitals)
	json.Unmarshal([]byte(wardCmd(env, "history", "--hospital", "riverside", "--output", "json")), &tl)
	if tl.Live.Version != v1["riverside"] {
		t.Fatalf("a scheduled run re-deployed what was rolled back: riverside runs %s", tl.Live.Version)
	}

	// Feedback on schedule. No model has served yet: every run's feedback
	// judged nothing and did nothing.
	checkPlan(t, r.artifacts, map[string]string{"northgate": "", "riverside": "", "st-olaf": ""}, false)
	f := &fleet{t: t, bin: bin, pg: pg, hospitals: hospitals, env: append(env, "WARD_SIGNING_KEY="+filepath.Join(keys, "ward.key"),
		"WARD_VERIFY_KEY="+filepath.Join(keys, "ward.pub"))}
	for _, dir := range []string{"artifacts", "artifacts2"} {
		f.learn(filepath.Join(work, dir))
	}
	live := func(id string) string {
		var tl struct{ Live struct{ Version string } }
		json.Unmarshal([]byte(wardCmd(env, "history", "--hospital", id, "--output", "json")), &tl)
		return tl.Live.Version
	}
	head := func() string { return strings.TrimSpace(testenv.Git(t, remote, "rev-parse", "main")) }

	// A healthy fleet: each hospital's live model serves January's cases;
	// the next run judges them healthy and changes nothing.
	for _, id := range ids {
		f.serve(id, live(id), "2025-01")
	}
	before := head()
	r.artifacts = filepath.Join(work, "artifacts4")
	r.run("pipeline.yml", hospitals)
	checkPlan(t, r.artifacts, map[string]string{"northgate": "", "riverside": "", "st-olaf": ""}, false)
	if after := head(); after != before {
		t.Fatalf("a healthy fleet moved the manifest repo from %s to %s:\n%s", before, after, testenv.Git(t, remote, "log", "--format=%s", before+".."+after))
	}

	// A bad model reaches northgate (every bill halved) and serves; the
	// scheduled feedback stage alone rolls it back, with its evidence.
	good := live("northgate")
	halved := f.ship("northgate", good, 0.5, "-halved")
	f.serve("northgate", halved, "2025-01")
	r.artifacts = filepath.Join(work, "artifacts5")
	r.run("pipeline.yml", hospitals)
	checkPlan(t, r.artifacts, map[string]string{"northgate": "done", "riverside": "", "st-olaf": ""}, false)
	msg := testenv.Git(t, remote, "log", "-1", "--format=%B", "main")
	for _, want := range []string{`Revert "deploy(northgate): ` + halved + `"`, "This reverts commit ", "Rolled back by ward feedback --apply",
		"Ward-Verdict: degraded", "Ward-Live-MAE: ", "Ward-Validation-MAE: ", "Ward-Cases: ", "Ward-Window: ", "Ward-Version: " + good} {
		if !strings.Contains(msg, want) {
			t.Errorf("the manifest repo's last commit is not feedback's revert of %s (no %q):\n%s", halved, want, msg)
		}
	}
	if v := live("northgate"); v != good {
		t.Fatalf("after the feedback stage, northgate runs %s; want %s back", v, good)
	}
	if sum := read(t, r.summary); !strings.Contains(sum, "## Feedback") || !strings.Contains(sum, "rolled back "+halved) {
		t.Errorf("the job summary does not say what feedback did:\n%s", sum)
	}

	// A fleet-wide shock: a bad model at every hospital at once. The
	// stage rolls back one (the limit a run), holds the others back and
	// raises an incident.
	for _, id := range ids {
		bad := f.ship(id, live(id), 0.4, "-shock")
		f.serve(id, bad, "2025-01")
	}
	before = head()
	r.vars["WARD_MAX_ROLLBACKS"] = "1"
	r.artifacts = filepath.Join(work, "artifacts6")
	r.run("pipeline.yml", hospitals)
	plan := checkPlan(t, r.artifacts, nil, true)
	var done, declined int
	for _, d := range plan.Decisions {
		switch d.Rollback.Status {
		case "done":
			done++
		case "declined":
			declined++
			if !d.Alert || !strings.Contains(d.Rollback.Reason, "fleet-wide fault") {
				t.Errorf("%s held back without the incident's alert: %+v", d.Hospital, d)
			}
		}
	}
	reverts := strings.Count(testenv.Git(t, remote, "log", "--format=%s", before+"..main"), "Revert \"deploy(")
	if done != 1 || declined != 2 || reverts != 1 || !strings.Contains(plan.Incident, "3 hospitals have a degraded model at once") {
		t.Fatalf("a fleet-wide shock: %d rolled back, %d held back, %d reverts, incident %q; want 1, 2, 1 and an incident", done, declined, reverts, plan.Incident)
	}
	if !strings.Contains(r.log.String(), "::warning::feedback") || !strings.Contains(r.log.String(), `"incident: rollbacks held back"`) {
		t.Errorf("the run does not warn of the incident")
	}

	// The run published the fleet view as an artifact: it opens clean in
	// Chromium and shows every hospital and the rollbacks feedback made.
	site := sitetest.Check(t, sitetest.Start(t), filepath.Join(r.artifacts, "site"), "pipeline-site-index")
	index := site.Pages["index.html"].Text
	for _, id := range ids {
		if !strings.Contains(index, id) || !strings.Contains(index, live(id)) {
			t.Errorf("the site's index does not show %s running %s:\n%s", id, live(id), index)
		}
	}
	if !strings.Contains(index, "ward feedback: degraded, live MAE") {
		t.Errorf("the site's index does not show feedback's rollback and its evidence:\n%s", index)
	}
}

// setPolicy adds lines to the feedback section of every contract.
func setPolicy(t *testing.T, hospitals, lines string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(hospitals, "*", "hospital.yaml"))
	for _, f := range files {
		b := read(t, f)
		if !strings.Contains(b, "  min_cases: 50\n") {
			t.Fatalf("%s has no feedback.min_cases to add the policy beside", f)
		}
		if err := os.WriteFile(f, []byte(strings.Replace(b, "  min_cases: 50\n", "  min_cases: 50\n"+lines+"\n", 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// checkPlan reads a run's feedback plan (the feedback job's artifact) and
// checks each hospital's rollback status ("" for none; want nil: any),
// that nothing else was done, and whether it alerted.
func checkPlan(t *testing.T, artifacts string, want map[string]string, alert bool) *feedback.Plan {
	t.Helper()
	var p feedback.Plan
	if err := json.Unmarshal([]byte(read(t, filepath.Join(artifacts, "feedback", report.PlanFile))), &p); err != nil {
		t.Fatal(err)
	}
	alerted := false
	for _, d := range p.Decisions {
		alerted = alerted || d.Alert
		if want == nil {
			continue
		}
		got := ""
		if d.Rollback != nil {
			got = d.Rollback.Status
		}
		if got != want[d.Hospital] || d.Retrain != nil {
			t.Errorf("%s: rollback %q, retrain %+v (%s); want rollback %q and no retrain", d.Hospital, got, d.Retrain, d.Summary, want[d.Hospital])
		}
	}
	if alerted != alert {
		t.Errorf("the plan alerts %v; want %v:\n%+v", alerted, alert, p)
	}
	return &p
}

// fleet is the hospitals' side of the test: their model servers, and a
// hurried person who ships a bad model.
type fleet struct {
	t         *testing.T
	bin, pg   string
	hospitals string
	env       []string
	models    map[string]*models.Artifact // hospital/version
}

// learn reads the models of a run's artifacts.
func (f *fleet) learn(dir string) {
	arts, err := feedback.ReadModels(dir)
	if err != nil {
		f.t.Fatal(err)
	}
	if f.models == nil {
		f.models = map[string]*models.Artifact{}
	}
	for _, a := range arts {
		f.models[a.Hospital+"/"+a.Version] = a
	}
}

func (f *fleet) model(id, version string) *models.Artifact {
	a := f.models[id+"/"+version]
	if a == nil {
		f.t.Fatalf("no model %s of %s", version, id)
	}
	return a
}

// ship packages and deploys a model of id made from version's with every
// bill times factor, as ward package and ward deploy do in a hurry; it
// returns its version.
func (f *fleet) ship(id, version string, factor float64, suffix string) string {
	f.t.Helper()
	a := f.model(id, version)
	data, _ := a.Encode()
	bad, _ := models.Decode(data)
	bad.Intercept += math.Log(factor)
	bad.Version = version + suffix
	if data, _ = bad.Encode(); data == nil {
		f.t.Fatal("encode")
	}
	f.models[id+"/"+bad.Version] = bad
	file := filepath.Join(f.t.TempDir(), "model.json")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		f.t.Fatal(err)
	}
	images := filepath.Join(f.t.TempDir(), "images.json")
	out := f.ward("package", "--hospital", id, "--model", file, "--platform", "linux/"+runtime.GOARCH, "--output", "json")
	if err := os.WriteFile(images, []byte(out), 0o644); err != nil {
		f.t.Fatal(err)
	}
	f.ward("deploy", "--images", images)
	return bad.Version
}

func (f *fleet) ward(args ...string) string {
	f.t.Helper()
	cmd := exec.Command(f.bin, args...)
	cmd.Dir = root
	cmd.Env = append(append(os.Environ(), f.env...), "SOURCE_DATE_EPOCH=1764504000")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		f.t.Fatalf("ward %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// serve runs the hospital's model server (the real one, in process) with
// a model version, writing its predictions to the database as a server
// may (--predictions-db), and sends it the cases of a month, as the
// hospital's client does at pre-admission.
func (f *fleet) serve(id, version, month string) {
	t := f.t
	t.Helper()
	a := f.model(id, version)
	hs, err := contract.LoadAll(f.hospitals)
	if err != nil {
		t.Fatal(err)
	}
	h := hs[slices.IndexFunc(hs, func(h *contract.Hospital) bool { return h.ID == id })]
	data, _ := a.Encode()
	file := filepath.Join(t.TempDir(), "model.json")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	flags := serving.BindFlags(fs)
	if err := fs.Parse([]string{"--model", file, "--listen", "127.0.0.1:0", "--watch", "0", "--id-field", h.Training.ID, "--predictions-db", f.pg}); err != nil {
		t.Fatal(err)
	}
	cfg, err := flags.Config(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	srv, err := serving.New(cfg, serving.WithStdout(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("the model server of %s: %v", id, err)
		}
	}()

	st, err := store.Open(context.Background(), f.pg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cases := st.Training(h)
	col := func(name string) int {
		return slices.IndexFunc(cases.Columns, func(c models.Column) bool { return c.Name == name })
	}
	at, caseID := col(h.Training.TimeColumn), col(h.Training.ID)
	pick := make([]int, len(a.Inputs))
	for i, c := range a.Inputs {
		pick[i] = col(c.Name)
	}
	var batch []map[string]any
	sent := 0
	send := func() {
		if len(batch) == 0 {
			return
		}
		body, _ := json.Marshal(map[string]any{"instances": batch})
		resp, err := http.Post("http://"+ln.Addr().String()+"/v1/predict", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s: %s", id, resp.Status, answer)
		}
		sent += len(batch)
		batch = batch[:0]
	}
	for row, err := range cases.Rows(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		if row[at].Null || row[at].Time(cases.Columns[at].Type).Format("2006-01") != month {
			continue
		}
		in := make([]models.Value, len(pick))
		for i, j := range pick {
			in[i] = row[j]
		}
		req := models.JSONFields(a.Inputs, in)
		req[h.Training.ID] = row[caseID].Format(cases.Columns[caseID].Type)
		if batch = append(batch, req); len(batch) == 100 {
			send()
		}
	}
	send()
	if sent < h.Feedback.MinCases {
		t.Fatalf("%s: %d cases of %s sent, fewer than min_cases %d", id, sent, month, h.Feedback.MinCases)
	}
}
