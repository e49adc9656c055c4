package serving_test

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
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

	model := modelFile(t, a.Data)
	port := testenv.FreePort(t)
	cmd = exec.Command(bin, "--watch", "0")
	cmd.Env = append(os.Environ(), "WARD_MODEL="+model, fmt.Sprintf("PORT=%d", port), "WARD_LOG_FORMAT=json")
	var stdout lockedBuffer
	var ops lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &ops
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := testenv.WaitTCP(addr, 10*time.Second, nil); err != nil {
		t.Fatalf("%v\n%s", err, ops.text())
	}
	s := &server{url: "http://" + addr}
	if _, ans := s.post(t, stOlafCase()); ans["model_version"] != a.Artifact.Version {
		t.Fatalf("answer %v", ans)
	}

	writeModel(t, model, b.Data)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "SIGHUP to swap in model B", func() bool { return s.version(t) == b.Artifact.Version })
	if _, ans := s.post(t, stOlafCase()); ans["model_version"] != b.Artifact.Version {
		t.Errorf("after SIGHUP: %v", ans["model_version"])
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("after SIGTERM: %v\n%s", err, ops.text())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("still running 15 s after SIGTERM")
	}
	lines := decodeLines(t, []byte(stdout.text()))
	if len(lines) != 2 || lines[0]["ward.model.version"] != a.Artifact.Version || lines[1]["ward.model.version"] != b.Artifact.Version {
		t.Errorf("prediction log on stdout: %v", lines)
	}
	for _, want := range []string{`"service.name":"ward-serve"`, `"message":"model swapped"`, `"message":"stopped"`} {
		if !strings.Contains(ops.text(), want) {
			t.Errorf("stderr lacks %s:\n%s", want, ops.text())
		}
	}
}
