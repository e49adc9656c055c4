package testenv

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Registry is a running OCI registry (Debian's docker-registry, that is
// CNCF distribution 2.8) with its storage in a temporary folder.
type Registry struct {
	// Host is 127.0.0.1:PORT; images are pushed to Host/REPO.
	Host string
	// Storage is the registry's blob folder.
	Storage string
	svc     *service
}

// StartRegistry starts a docker-registry for the test, on a free loopback
// port, and stops it when the test ends.
func StartRegistry(t testing.TB) *Registry {
	t.Helper()
	bin := LookPath(t, "docker-registry", "docker-registry")
	dir := t.TempDir()
	port := FreePort(t)
	host := "127.0.0.1:" + strconv.Itoa(port)
	storage := filepath.Join(dir, "storage")
	conf := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, storage, host)
	confFile := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	svc, err := startService("docker-registry", exec.Command(bin, "serve", confFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.stop)
	if err := WaitTCP(host, 30*time.Second, svc.exited); err != nil {
		t.Fatalf("docker-registry on %s: %v\n%s", host, err, svc.Output())
	}
	// Ready when the API answers.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry on %s: /v2/ not ready: %v\n%s", host, err, svc.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &Registry{Host: host, Storage: storage, svc: svc}
}

// Log returns what the registry printed.
func (r *Registry) Log() string { return r.svc.Output() }
