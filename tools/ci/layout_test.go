package ci

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/wardml/ward/internal/testenv"
)

// The README's map of the layout matches the tree: every folder it names
// exists, and every Go package and top-level folder is in it, by its own
// row or named (`sub/`) in its parent's.
func TestReadmeMapsTheLayout(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Layout\n")
	if !ok {
		t.Fatal("README.md has no ## Layout section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	rows := map[string]string{} // folder -> its row
	tick := regexp.MustCompile("`([^`]+)`")
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || !strings.Contains(cells[1], "`") {
			continue
		}
		for _, m := range tick.FindAllStringSubmatch(cells[1], -1) {
			dir := strings.TrimSuffix(m[1], "/")
			rows[dir] = line
			if _, err := os.Stat(filepath.Join("../..", dir)); err != nil {
				t.Errorf("the layout names %s: %v", m[1], err)
			}
		}
	}
	covered := func(dir string) bool {
		if _, ok := rows[dir]; ok {
			return true
		}
		for named := range rows {
			if strings.HasPrefix(named, dir+"/") {
				return true
			}
		}
		for parent := filepath.Dir(dir); parent != "."; parent = filepath.Dir(parent) {
			if row, ok := rows[parent]; ok {
				rest, _ := filepath.Rel(parent, dir)
				return strings.Contains(row, "`"+rest+"/`") || strings.Contains(row, "`"+parent+"/"+rest+"`")
			}
		}
		return false
	}

	goBin := testenv.LookPath(t, "go", "golang-go")
	cmd := exec.Command(goBin, "list", "-f", "{{.Dir}}", module+"/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dirs := []string{}
	for _, d := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, d)
		if err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, filepath.ToSlash(rel))
	}
	top, err := os.ReadDir("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range top {
		if e.IsDir() && e.Name() != ".git" && e.Name() != ".ward" && e.Name() != "bin" && e.Name() != "out" {
			dirs = append(dirs, e.Name())
		}
	}
	for _, d := range dirs {
		// tools/ and the others are the fixed top level: their rows are
		// their subfolders'.
		if d == "tools" || d == "pipelines" || d == "internal" {
			continue
		}
		if !covered(d) {
			t.Errorf("%s is not in README.md's map of the layout", d)
		}
	}
}
