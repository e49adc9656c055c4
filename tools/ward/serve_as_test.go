package main

import (
	"context"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardml/ward/internal/testenv"
)

// ward packed as an image's /ward/serve (what ward demo does outside a
// ward checkout) is the model server: run as .../serve with the flags the
// agent gives a server, it serves the model.
func TestWardRunAsServeIsTheServer(t *testing.T) {
	goBin := testenv.LookPath(t, "go", "golang-go")
	dir := t.TempDir()
	bin := filepath.Join(dir, "ward", "serve")
	build := exec.Command(goBin, "build", "-trimpath", "-o", bin, ".")
	build.Env = append(build.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	model, _ := writeModel(t, filepath.Join(dir, "models"), "2026-11-30.1")
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--model", model, "--listen", addr, "--watch", "0")
	var out lockedOutput
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("ward run as serve is not ready on %s: %v\n%s", addr, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := get(t, "http://"+addr+"/v1/model"); !regexp.MustCompile(`"hospital":\s*"st-olaf"`).MatchString(got) {
		t.Errorf("/v1/model: %s", got)
	}
}

type lockedOutput struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedOutput) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedOutput) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
