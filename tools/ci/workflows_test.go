// Package ci holds the tests of ward's own pipelines: the GitHub Actions
// workflows and the Jenkinsfile run the stages of tools/ci/stage, and these
// tests lint them and run the stages against real services.
package ci

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"

	"github.com/wardml/ward/internal/testenv"
)

const root = "../.."

func TestWorkflowsPassActionlint(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(root, ".github", "workflows", "*.yml"))
	if err != nil || len(files) != 3 {
		t.Fatalf("workflows: %v %v; want pipeline, rollback and ci", files, err)
	}
	var out bytes.Buffer
	l, err := actionlint.NewLinter(&out, &actionlint.LinterOptions{
		Shellcheck: testenv.LookPath(t, "shellcheck", "shellcheck"),
		Color:      actionlint.ColorOptionKindNever,
	})
	if err != nil {
		t.Fatal(err)
	}
	errs, err := l.LintFiles(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) > 0 {
		t.Fatalf("actionlint reports %d problems:\n%s", len(errs), out.String())
	}
}

func TestStageScriptPassesShellcheck(t *testing.T) {
	sc := testenv.LookPath(t, "shellcheck", "shellcheck")
	for _, f := range []string{"tools/ci/stage", "tools/dev/test", ".ci/run"} {
		testenv.Run(t, root, sc, f)
	}
}

var stageCall = regexp.MustCompile(`tools/ci/stage ([a-z]+)`)

func stages(t *testing.T, files ...string) []string {
	t.Helper()
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range stageCall.FindAllStringSubmatch(string(b), -1) {
			if !slices.Contains(out, m[1]) {
				out = append(out, m[1])
			}
		}
	}
	return out
}

// Both CI systems call the same commands: the Jenkinsfile runs every stage
// the workflows run, in the same order, but for two that only GitHub needs:
// secrets (Jenkins binds credentials as files) and collect (Jenkins's
// parallel branches share one workspace, so no artifacts travel).
func TestJenkinsfileRunsTheWorkflowsStages(t *testing.T) {
	gh := stages(t, ".github/workflows/pipeline.yml", ".github/workflows/rollback.yml")
	gh = slices.DeleteFunc(gh, func(s string) bool { return s == "secrets" || s == "collect" })
	jk := stages(t, "Jenkinsfile")
	want := []string{"build", "ingest", "hospitals", "train", "feedback", "publish", "site", "rollback"}
	if !slices.Equal(gh, want) || !slices.Equal(jk, want) {
		t.Fatalf("stages: workflows %v, Jenkinsfile %v; want both %v", gh, jk, want)
	}
	b, _ := os.ReadFile(filepath.Join(root, "Jenkinsfile"))
	for _, want := range []string{"cron(", "parallel branches", "withCredentials(", "archiveArtifacts", "parameters {", "params.ACTION == 'rollback'",
		// Feedback's exit code 4 is a finding: the build goes unstable, not red.
		"returnStatus: true", "status == 4", "unstable(", "out/feedback/**", "out/site/**"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the Jenkinsfile lacks %q", want)
		}
	}
}
