package image

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DefaultServerPackage is the main package of the model server.
const DefaultServerPackage = "./serving/cmd/ward-serve"

// BuildServer compiles the Go main package pkg (a path that `go build`
// takes, relative to dir) once per platform: static (CGO_ENABLED=0),
// -trimpath, stripped, with an empty build id, so that the same source
// gives the same bytes and every hospital's image shares the layer.
func BuildServer(ctx context.Context, dir, pkg string, platforms []string) (*Server, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("build %s: the go command is not on PATH: install Go or give prebuilt binaries (--server linux/amd64=FILE)", pkg)
	}
	tmp, err := os.MkdirTemp("", "ward-serve-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bins := map[string][]byte{}
	for _, p := range platforms {
		goos, goarch, ok := strings.Cut(p, "/")
		if !ok || goos == "" || goarch == "" {
			return nil, fmt.Errorf("build %s: platform %q: want os/arch, e.g. linux/amd64", pkg, p)
		}
		out := filepath.Join(tmp, goos+"-"+goarch)
		cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, pkg)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("build %s for %s: %w\n%s", pkg, p, err, strings.TrimSpace(stderr.String()))
		}
		b, err := os.ReadFile(out)
		if err != nil {
			return nil, err
		}
		bins[p] = b
	}
	return NewServer(bins), nil
}

// LoadServer reads prebuilt binaries, given as platform -> file.
func LoadServer(files map[string]string) (*Server, error) {
	bins := map[string][]byte{}
	for p, f := range files {
		if goos, goarch, ok := strings.Cut(p, "/"); !ok || goos == "" || goarch == "" {
			return nil, fmt.Errorf("server binary %s: platform %q: want os/arch, e.g. linux/amd64", f, p)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("server binary for %s: %w", p, err)
		}
		bins[p] = b
	}
	return NewServer(bins), nil
}
