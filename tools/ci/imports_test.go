package ci

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/wardml/ward/internal/testenv"
)

const module = "github.com/wardml/ward"

// pkg is what go list says of one package.
type pkg struct {
	ImportPath string
	// Deps are every package it links, transitively (tests excluded).
	Deps []string
}

// importRules are DESIGN.md's rules of which way imports go, each a
// package pattern (a path under the module, "..." for a subtree), what its
// links may hold of ward (allow, patterns) and what they must not hold at
// all (deny, path prefixes).
var importRules = []struct {
	pkgs  string
	allow []string
	deny  []string
	why   string
}{
	{pkgs: "models/...", allow: []string{"models/..."},
		why: "models is pure: feature encoding, families, metrics, the artifact; training and serving import it, it imports none of them"},
	{pkgs: "serving/...", allow: []string{"serving/...", "models/...", "internal/exit", "internal/logging", "internal/config", "internal/version"},
		why: "the server in every image imports models and internal only, so the binary stays small"},
	{pkgs: "pipelines/...", deny: []string{module + "/tools/"},
		why: "the data side knows nothing of release"},
	{pkgs: "tools/ward-agent", deny: []string{module + "/pipelines/", module + "/serving", "github.com/jackc/pgx", "modernc.org/", "gonum.org/v1/plot"},
		why: "the hospital's agent links no data side, no database driver, no plotting"},
	{pkgs: "tools/agent/...", deny: []string{module + "/pipelines/", module + "/serving", "github.com/jackc/pgx", "modernc.org/", "gonum.org/v1/plot"},
		why: "the hospital's agent links no data side, no database driver, no plotting"},
}

func matches(pattern, path string) bool {
	p := module + "/" + strings.TrimSuffix(pattern, "/...")
	if strings.HasSuffix(pattern, "/...") {
		return path == p || strings.HasPrefix(path, p+"/")
	}
	return path == p
}

// violations lists every link that breaks a rule.
func violations(pkgs []pkg) []string {
	var out []string
	for _, p := range pkgs {
		for _, r := range importRules {
			if !matches(r.pkgs, p.ImportPath) {
				continue
			}
			for _, d := range p.Deps {
				bad := ""
				for _, deny := range r.deny {
					if strings.HasPrefix(d, deny) {
						bad = deny
					}
				}
				if r.allow != nil && (d == module || strings.HasPrefix(d, module+"/")) {
					ok := false
					for _, a := range r.allow {
						ok = ok || matches(a, d)
					}
					if !ok {
						bad = "ward outside " + strings.Join(r.allow, ", ")
					}
				}
				if bad != "" {
					out = append(out, fmt.Sprintf("%s links %s (%s): %s", strings.TrimPrefix(p.ImportPath, module+"/"), d, bad, r.why))
				}
			}
		}
	}
	return out
}

// DESIGN.md's import rules hold for the whole tree, as go list sees it
// (the packages each links, not only those it names), in the manner of
// go-containerregistry's pkg/registry/depcheck_test.go.
func TestImportRules(t *testing.T) {
	goBin := testenv.LookPath(t, "go", "golang-go")
	cmd := exec.Command(goBin, "list", "-json=ImportPath,Deps", module+"/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	seen := map[string]bool{}
	for _, p := range pkgs {
		seen[p.ImportPath] = true
	}
	for _, must := range []string{"models", "serving", "pipelines/train", "tools/ward-agent", "tools/agent"} {
		if !seen[module+"/"+must] {
			t.Errorf("go list lists no %s: the rules check nothing there", must)
		}
	}
	for _, v := range violations(pkgs) {
		t.Error(v)
	}
}

// The check finds what would break each rule.
func TestImportRulesCatchViolations(t *testing.T) {
	w := func(p string) string { return module + "/" + p }
	for _, c := range []struct {
		p    pkg
		want string
	}{
		{pkg{w("models"), []string{"math", w("internal/contract")}}, "models links " + w("internal/contract")},
		{pkg{w("models/trained"), []string{w("tools/image")}}, "models/trained links"},
		{pkg{w("serving"), []string{w("models"), w("pipelines/store")}}, "serving links " + w("pipelines/store")},
		{pkg{w("serving/cmd/ward-serve"), []string{w("tools/agent")}}, "serving/cmd/ward-serve links"},
		{pkg{w("pipelines/train"), []string{w("tools/image")}}, "pipelines/train links " + w("tools/image")},
		{pkg{w("tools/ward-agent"), []string{"github.com/jackc/pgx/v5"}}, "tools/ward-agent links github.com/jackc/pgx/v5"},
		{pkg{w("tools/ward-agent"), []string{"modernc.org/sqlite"}}, "modernc.org/sqlite"},
		{pkg{w("tools/ward-agent"), []string{"gonum.org/v1/plot/vg"}}, "gonum.org/v1/plot/vg"},
		{pkg{w("tools/agent/cli"), []string{w("pipelines/train/report")}}, "tools/agent/cli links " + w("pipelines/train/report")},
		{pkg{w("models/modeltest"), []string{w("internal/contract")}}, "models/modeltest links " + w("internal/contract")},
	} {
		got := strings.Join(violations([]pkg{c.p}), "\n")
		if !strings.Contains(got, c.want) {
			t.Errorf("%s with %v: %q, want %q", c.p.ImportPath, c.p.Deps, got, c.want)
		}
	}
	ok := []pkg{
		{w("models"), []string{"math", "gonum.org/v1/gonum/mat", w("models/trained")}},
		{w("serving"), []string{w("models"), w("internal/exit"), "github.com/jackc/pgx/v5"}},
		{w("pipelines/train"), []string{w("models"), w("internal/contract")}},
		{w("tools/image"), []string{w("pipelines/train")}},
	}
	if v := violations(ok); len(v) > 0 {
		t.Errorf("links the rules allow were refused: %v", v)
	}
}
