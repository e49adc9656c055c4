package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// GitEnv is the environment the git command line runs with in tests: no
// user or system configuration, a fixed identity.
var GitEnv = []string{
	"GIT_CONFIG_NOSYSTEM=1",
	"GIT_CONFIG_GLOBAL=/dev/null",
	"GIT_AUTHOR_NAME=Ward Test", "GIT_AUTHOR_EMAIL=test@ward.invalid",
	"GIT_COMMITTER_NAME=Ward Test", "GIT_COMMITTER_EMAIL=test@ward.invalid",
	"GIT_TERMINAL_PROMPT=0",
}

// BareRepo creates an empty bare repository with the real git command line
// (a remote, as a Git host would hold it) and returns its path.
func BareRepo(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "remote.git")
	Git(t, "", "init", "--quiet", "--bare", "--initial-branch=main", dir)
	return dir
}

// Git runs the real git command line in dir and returns its trimmed
// standard output; a failure fails the test with git's output.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	bin := LookPath(t, "git", "git")
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), GitEnv...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// Run runs a program in dir and returns its trimmed standard output; a
// failure fails the test with the program's output.
func Run(t testing.TB, dir, prog string, args ...string) string {
	t.Helper()
	cmd := exec.Command(prog, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", prog, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}
