package ci

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/wardml/ward/internal/testenv"
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
}

var expr = regexp.MustCompile(`\$\{\{\s*([^}]*?)\s*\}\}`)

func (r *runner) eval(s string, ctx map[string]string) string {
	return expr.ReplaceAllStringFunc(s, func(m string) string {
		e := strings.TrimSpace(expr.FindStringSubmatch(m)[1])
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
		cmd.Env = append(os.Environ(), "GITHUB_ACTIONS=true", "GITHUB_ENV="+ghEnv, "GITHUB_OUTPUT="+ghOut, "RUNNER_TEMP="+r.t.TempDir())
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
}
