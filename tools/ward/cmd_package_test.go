package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/models/modeltest"
	"github.com/wardml/ward/tools/image"
	"github.com/wardml/ward/tools/registry"
)

// wardRun runs the CLI in-process with env on top of the test's own.
func wardRun(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb, append(os.Environ(), env...))
	return code, out.String(), errb.String()
}

var (
	serveOnce sync.Once
	serveBins *image.Server
	serveErr  error
)

// serverFlags builds the real model server (serving/cmd/ward-serve) once
// and gives it to ward package as prebuilt binaries.
func serverFlags(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	var flags []string
	for p, b := range builtServer(t).Binaries {
		f := filepath.Join(dir, strings.ReplaceAll(p, "/", "-"))
		if err := os.WriteFile(f, b, 0o755); err != nil {
			t.Fatal(err)
		}
		flags = append(flags, "--server", p+"="+f)
	}
	return flags
}

func builtServer(t *testing.T) *image.Server {
	t.Helper()
	testenv.LookPath(t, "go", "golang-go")
	serveOnce.Do(func() {
		serveBins, serveErr = image.BuildServer(context.Background(), "../..", image.DefaultServerPackage, image.Platforms)
	})
	if serveErr != nil {
		t.Fatal(serveErr)
	}
	return serveBins
}

// writeModel writes a real st-olaf model of the given version, as ward
// train leaves it (model.json and its report folder), into dir.
func writeModel(t *testing.T, dir, version string) (string, *models.Artifact) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "report"), 0o755); err != nil {
		t.Fatal(err)
	}
	fitted := modeltest.StOlaf(t, 600, 1, 1)
	fitted.Artifact.Version = version
	data, err := fitted.Artifact.Encode()
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "model.json")
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report", "report.html"), []byte("<h1>report</h1>"), 0o644); err != nil {
		t.Fatal(err)
	}
	return f, fitted.Artifact
}

func TestPackageAndVerifyCommands(t *testing.T) {
	srv, err := registry.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	work := t.TempDir()
	hospitals := filepath.Join(work, "hospitals")
	for _, id := range []string{"st-olaf", "sparcs"} {
		b, err := os.ReadFile(filepath.Join("../../internal/contract/testdata", id, "hospital.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(hospitals, id), 0o755)
		os.WriteFile(filepath.Join(hospitals, id, "hospital.yaml"), b, 0o644)
	}
	keys := filepath.Join(work, "keys")
	env := []string{"WARD_HOSPITALS=" + hospitals, "WARD_REGISTRY=" + srv.Host + "/group", "WARD_SIGNING_PASSWORD=pw",
		"WARD_SIGNING_KEY=" + filepath.Join(keys, "ward.key"), "SOURCE_DATE_EPOCH=1764504000", "WARD_LOG_FORMAT=json"}

	if code, out, errs := wardRun(t, env[:3], "keys", "generate", "--out", keys); code != 0 || !strings.Contains(out, "(encrypted)") {
		t.Fatalf("keys generate: %d\n%s%s", code, out, errs)
	}
	if st, err := os.Stat(filepath.Join(keys, "ward.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("ward.key: %v %v", st, err)
	}
	if code, _, errs := wardRun(t, env[:3], "keys", "generate", "--out", keys); code != 2 || !strings.Contains(errs, "exists: pass --force") {
		t.Errorf("keys generate over existing keys: %d %s", code, errs)
	}

	modelDir := filepath.Join(work, "models")
	model, art := writeModel(t, filepath.Join(modelDir, "st-olaf"), "2026-11-30.1")
	args := append([]string{"package", "--hospital", "st-olaf", "--model", model}, serverFlags(t)...)
	code, out, errs := wardRun(t, env, args...)
	if code != 0 {
		t.Fatalf("package: exit %d\n%s", code, errs)
	}
	line := regexp.MustCompile(`^` + regexp.QuoteMeta(srv.Host) + `/group/ward/st-olaf@sha256:[0-9a-f]{64}\n$`)
	if !line.MatchString(out) {
		t.Fatalf("package printed %q, want one REF@sha256:DIGEST line", out)
	}
	ref := strings.TrimSpace(out)
	if code, again, _ := wardRun(t, env, args...); code != 0 || again != out {
		t.Errorf("package again: %d %q, want the same digest %q", code, again, out)
	}

	pub := filepath.Join(keys, "ward.pub")
	if code, out, errs := wardRun(t, env, "verify", ref, "--key", pub); code != 0 || !strings.Contains(out, "hospital st-olaf, model 2026-11-30.1 (ridge)") {
		t.Errorf("verify: %d\n%s%s", code, out, errs)
	}
	if code, out, errs := wardRun(t, env, "verify", ref, "--key", pub, "--output", "json"); code != 0 || !strings.Contains(out, fmt.Sprintf(`"mae": %v`, art.Metrics["validation"].MAE)) {
		t.Errorf("verify --output json: %d\n%s%s", code, out, errs)
	}

	other := filepath.Join(work, "other")
	wardRun(t, nil, "keys", "generate", "--out", other)
	if code, _, errs := wardRun(t, env, "verify", ref, "--key", filepath.Join(other, "ward.pub")); code != 1 || !strings.Contains(errs, "not signed by this key") {
		t.Errorf("verify with another key: %d %s", code, errs)
	}
	if code, _, errs := wardRun(t, env, "verify", srv.Host+"/group/ward/st-olaf:2026-11-30.1", "--key", pub); code != 2 || !strings.Contains(errs, "is not pinned by digest") {
		t.Errorf("verify by tag: %d %s", code, errs)
	}

	// --all: sparcs's model names another hospital; st-olaf still goes
	// through, and the command fails.
	writeModel(t, filepath.Join(modelDir, "sparcs"), "v9")
	code, out, errs = wardRun(t, env, append([]string{"package", "--all", "--models", modelDir, "--output", "json"}, serverFlags(t)...)...)
	if code != 1 || !strings.Contains(errs, `model `+filepath.Join(modelDir, "sparcs", "model.json")+` is for hospital \"st-olaf\", not \"sparcs\"`) {
		t.Errorf("package --all with a wrong model: exit %d\n%s", code, errs)
	}
	var results []struct{ Hospital, Image, Error string }
	if err := json.Unmarshal([]byte(out), &results); err != nil || len(results) != 2 || results[1].Image != ref {
		t.Errorf("package --all --output json: %s (%v)", out, err)
	}
}

func TestPackageRefusesBadSetup(t *testing.T) {
	work := t.TempDir()
	os.MkdirAll(filepath.Join(work, "hospitals", "st-olaf"), 0o755)
	b, _ := os.ReadFile("../../internal/contract/testdata/st-olaf/hospital.yaml")
	os.WriteFile(filepath.Join(work, "hospitals", "st-olaf", "hospital.yaml"), b, 0o644)
	model, _ := writeModel(t, filepath.Join(work, "m"), "v1")
	env := []string{"WARD_HOSPITALS=" + filepath.Join(work, "hospitals"), "WARD_REGISTRY=127.0.0.1:1"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"package", "--model", model}, "give --hospital ID --model FILE, or --all --models DIR"},
		{[]string{"package", "--hospital", "nowhere", "--model", model}, `hospital "nowhere": no nowhere/hospital.yaml`},
		{[]string{"package", "--hospital", "st-olaf", "--model", model}, "no signing key: set WARD_SIGNING_KEY"},
		{[]string{"package", "--hospital", "st-olaf", "--model", model, "--signature-format", "sigstore"}, `--signature-format: signature format "sigstore": want legacy`},
	} {
		code, _, errs := wardRun(t, env, c.args...)
		if code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d %s, want 2 and %q", c.args, code, errs, c.want)
		}
	}
}

// A model whose gate failed in training is refused alone, skipped by --all,
// and packaged with --force.
func TestPackageHonoursTheGate(t *testing.T) {
	srv, err := registry.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	work := t.TempDir()
	hospitals := filepath.Join(work, "hospitals", "st-olaf")
	os.MkdirAll(hospitals, 0o755)
	b, _ := os.ReadFile("../../internal/contract/testdata/st-olaf/hospital.yaml")
	os.WriteFile(filepath.Join(hospitals, "hospital.yaml"), b, 0o644)
	keys := filepath.Join(work, "keys")
	env := []string{"WARD_HOSPITALS=" + filepath.Dir(hospitals), "WARD_REGISTRY=" + srv.Host, "WARD_SIGNING_KEY=" + filepath.Join(keys, "ward.key"), "WARD_LOG_FORMAT=json"}
	if code, _, errs := wardRun(t, env[:2], "keys", "generate", "--out", keys); code != 0 {
		t.Fatal(errs)
	}
	modelDir := filepath.Join(work, "models")
	model, _ := writeModel(t, filepath.Join(modelDir, "st-olaf"), "v2")
	failed := `{"hospital": "st-olaf", "gate": {"passed": false, "metric": "mae", "reason": "mae 910 is 4.0% above production's 875 (allowed 2.0%)"}}`
	os.WriteFile(filepath.Join(modelDir, "st-olaf", "report", "metrics.json"), []byte(failed), 0o644)

	flags := serverFlags(t)
	code, _, errs := wardRun(t, env, append([]string{"package", "--hospital", "st-olaf", "--model", model}, flags...)...)
	if code != 1 || !strings.Contains(errs, "the model failed its gate: mae 910 is 4.0% above production's 875") || !strings.Contains(errs, "--force") {
		t.Fatalf("package of a gate-failed model: %d %s", code, errs)
	}
	code, out, errs := wardRun(t, env, append([]string{"package", "--all", "--models", modelDir, "--output", "json"}, flags...)...)
	var results []struct{ Hospital, Image, Skipped string }
	if err := json.Unmarshal([]byte(out), &results); code != 0 || err != nil || len(results) != 1 || results[0].Image != "" || !strings.Contains(results[0].Skipped, "failed its gate") {
		t.Fatalf("package --all with a gate-failed model: %d %s %s", code, out, errs)
	}
	code, out, errs = wardRun(t, env, append([]string{"package", "--hospital", "st-olaf", "--model", model, "--force"}, flags...)...)
	if code != 0 || !strings.Contains(out, "@sha256:") {
		t.Fatalf("package --force: %d %s %s", code, out, errs)
	}
}
