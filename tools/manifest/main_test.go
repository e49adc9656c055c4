package manifest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/wardml/ward/internal/testenv"
)

// helperEnv makes the test binary a deploy process (see deployProcess):
// the concurrency test runs two of them at once against one remote.
const helperEnv = "MANIFEST_TEST_DEPLOY"

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(deployProcess(spec))
	}
	os.Exit(m.Run())
}

// deployProcess deploys one test image ("hospital/version") to the remote
// in MANIFEST_TEST_REMOTE, starting at the Unix nanosecond in
// MANIFEST_TEST_START so that two processes race, and prints the result.
func deployProcess(spec string) int {
	i, ok := images[spec]
	if !ok {
		fmt.Fprintln(os.Stderr, "no test image", spec)
		return 2
	}
	r, err := New(os.Getenv("MANIFEST_TEST_REMOTE"), WithVerifier(trusted(i)), WithAuthor("Ward CI <ci@ward.invalid>"), WithAttempts(8))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if start, err := strconv.ParseInt(os.Getenv("MANIFEST_TEST_START"), 10, 64); err == nil {
		time.Sleep(time.Until(time.Unix(0, start)))
	}
	res, err := r.Deploy(context.Background(), Deployment{Hospital: i.Hospital, Image: i.Ref})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// execGit is the real git with the tests' environment.
func execGit(dir string, args ...string) *exec.Cmd {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), testenv.GitEnv...)
	return cmd
}
