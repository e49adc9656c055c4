package serving_test

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wardml/ward/internal/testenv"
)

// maxBinary is the size budget of the server binary in every image.
const maxBinary = 25 << 20

// buildServer builds ward-serve as images carry it: static, no cgo.
func buildServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ward-serve")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/ward-serve")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestStaticBinary(t *testing.T) {
	bin := buildServer(t)
	st, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > maxBinary {
		t.Errorf("ward-serve is %.1f MiB, over the %d MiB budget", float64(st.Size())/(1<<20), maxBinary>>20)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("ward-serve is dynamically linked (%v): it must run on an empty base image", p.Type)
		}
	}
	t.Logf("ward-serve: %.1f MiB, static", float64(st.Size())/(1<<20))
}

func TestBinaryStartsSwapsOnSIGHUPAndStopsOnSIGTERM(t *testing.T) {
	bin := buildServer(t)
	a, b := stOlaf(t)
	dir := t.TempDir()

	// A bad model at start: exit code 2, and a message naming the file.
	bad := writeFile(t, filepath.Join(dir, "bad.json"), a.Data[:200])
	cmd := exec.Command(bin, "--log-format", "json")
	cmd.Env = append(os.Environ(), "WARD_MODEL="+bad, "PORT=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ee, ok := errors.AsType[*exec.ExitError](err); !ok || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), bad) || !strings.Contains(stderr.String(), "truncated") {
		t.Fatalf("a truncated model: %v, stderr %s; want exit code 2 naming the file", err, stderr.String())
	}

	var stdout lockedBuffer
	srv := startBinary(t, bin, modelFile(t, a.Data), &stdout)
	model := srv.model
	s := &server{url: "http://" + srv.addr}
	if _, ans := s.post(t, stOlafCase()); ans["model_version"] != a.Artifact.Version {
		t.Fatalf("answer %v", ans)
	}

	writeModel(t, model, b.Data)
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "SIGHUP to swap in model B", func() bool { return s.version(t) == b.Artifact.Version })
	if _, ans := s.post(t, stOlafCase()); ans["model_version"] != b.Artifact.Version {
		t.Errorf("after SIGHUP: %v", ans["model_version"])
	}

	if err := srv.stop(t, 15*time.Second); err != nil {
		t.Errorf("after SIGTERM: %v\n%s", err, srv.ops.text())
	}
	lines := decodeLines(t, []byte(stdout.text()))
	if len(lines) != 2 || lines[0]["ward.model.version"] != a.Artifact.Version || lines[1]["ward.model.version"] != b.Artifact.Version {
		t.Errorf("prediction log on stdout: %v", lines)
	}
	for _, want := range []string{`"service.name":"ward-serve"`, `"message":"model swapped"`, `"message":"stopped"`} {
		if !strings.Contains(srv.ops.text(), want) {
			t.Errorf("stderr lacks %s:\n%s", want, srv.ops.text())
		}
	}
}

// binary is a ward-serve process started on a free port with --watch 0.
type binary struct {
	cmd    *exec.Cmd
	exited chan error
	ops    *lockedBuffer // its stderr
	addr   string
	model  string
}

// startBinary starts bin serving model, its prediction log to stdout,
// and waits until it listens; the test's cleanup kills it.
func startBinary(t *testing.T, bin, model string, stdout io.Writer) *binary {
	t.Helper()
	port := testenv.FreePort(t)
	b := &binary{cmd: exec.Command(bin, "--watch", "0"), exited: make(chan error, 1), ops: &lockedBuffer{}, addr: fmt.Sprintf("127.0.0.1:%d", port), model: model}
	b.cmd.Env = append(os.Environ(), "WARD_MODEL="+model, fmt.Sprintf("PORT=%d", port), "WARD_LOG_FORMAT=json")
	b.cmd.Stdout, b.cmd.Stderr = stdout, b.ops
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.exited <- b.cmd.Wait() }()
	t.Cleanup(func() {
		b.cmd.Process.Kill()
		<-b.exited
	})
	if err := testenv.WaitTCP(b.addr, 10*time.Second, nil); err != nil {
		t.Fatalf("%v\n%s", err, b.ops.text())
	}
	return b
}

// stop sends SIGTERM and returns how the process exited; the test fails
// if it is still running after within.
func (b *binary) stop(t *testing.T, within time.Duration) error {
	t.Helper()
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-b.exited:
		b.exited <- err // for the cleanup
		return err
	case <-time.After(within):
		t.Fatalf("still running %s after SIGTERM", within)
		return nil
	}
}
