package image

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/models/modeltest"
)

// The image runs in a real OCI runtime and answers with its baked-in
// model: skopeo copies it from the registry to an OCI layout, umoci
// unpacks it into a bundle, runc runs it (in the host's network
// namespace), and a request to /v1/predict gets the model's answer.
func TestImageRunsInRunc(t *testing.T) {
	if runtime.GOOS != "linux" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64") {
		t.Skipf("the image is for linux/amd64 and linux/arm64, not %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	skopeo := testenv.LookPath(t, "skopeo", "skopeo")
	umoci := testenv.LookPath(t, "umoci", "umoci")
	runc := testenv.LookPath(t, "runc", "runc", "/usr/sbin")
	testenv.Require(t, os.Geteuid() == 0, "runc needs root to create the container (run the tests as root, as CI does)")

	reg := testenv.StartRegistry(t)
	tg := newTarget("docker-registry", reg.Host)
	ctx := context.Background()
	fitted := modeltest.StOlaf(t, 600, 1, 1)
	fitted.Artifact.Version = "2026-11-30.1"
	art, err := fitted.Artifact.Encode()
	if err != nil {
		t.Fatal(err)
	}
	m := Model{Hospital: "st-olaf", Version: "2026-11-30.1", Family: "ridge", Artifact: art}
	res, err := NewPublisher(WithRegistry(tg.client)).Publish(ctx, tg.repo(t, "ward/st-olaf"), build(t, m), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("from source", func(t *testing.T) { runInRunc(t, skopeo, umoci, runc, res, fitted) })

	// The same model on the server's image that ward package-server pushed,
	// built with no Go toolchain on PATH: ward package --base.
	key := testKey(t)
	base, err := ServerImage(testServer(t), Created(testTime))
	if err != nil {
		t.Fatal(err)
	}
	bres, err := NewPublisher(WithRemote(tg.remote()...), WithSigner(key)).PublishServer(ctx, tg.repo(t, "ward/serve"), base)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := exec.LookPath("go"); err == nil {
		t.Fatal("go is still on PATH")
	}
	pulled, err := PullBase(ctx, bres.Ref, &key.PublicKey, tg.remote()...)
	if err != nil {
		t.Fatal(err)
	}
	pub := NewPublisher(WithRemote(tg.remote()...), WithSigner(key), WithBase(pulled), WithBuild(Created(testTime)))
	onBase, err := Package(ctx, &Trained{Model: m}, tg.repo(t, "ward/st-olaf"), pub)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("on a base, without go", func(t *testing.T) { runInRunc(t, skopeo, umoci, runc, onBase, fitted) })
}

// runInRunc runs the published image in runc and asks it for the first
// validation case's prediction: the model's own answer.
func runInRunc(t *testing.T, skopeo, umoci, runc string, res *Published, fitted modeltest.Fitted) {
	dir := t.TempDir()
	layout, bundle := filepath.Join(dir, "oci"), filepath.Join(dir, "bundle")
	run(t, skopeo, "copy", "--src-tls-verify=false", "--override-os", "linux", "--override-arch", runtime.GOARCH,
		"docker://"+res.Ref.String(), "oci:"+layout+":serve")
	run(t, umoci, "unpack", "--image", layout+":serve", bundle)

	port := testenv.FreePort(t)
	configureBundle(t, filepath.Join(bundle, "config.json"), port)

	id := fmt.Sprintf("ward-test-%d", os.Getpid())
	var out bytes.Buffer
	cmd := exec.Command(runc, "run", "--bundle", bundle, id)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		exec.Command(runc, "kill", id, "KILL").Run()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
		exec.Command(runc, "delete", "--force", id).Run()
	})

	addr := "127.0.0.1:" + strconv.Itoa(port)
	if err := testenv.WaitTCP(addr, 30*time.Second, exited); err != nil {
		t.Fatalf("the container does not listen on %s: %v\n%s", addr, err, out.String())
	}
	// The server accepts connections before it is ready: wait for /readyz.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container is not ready: %v\n%s", err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	req, err := json.Marshal(modeltest.Request(fitted.Artifact.Inputs, fitted.Valid[0].Row))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+addr+"/v1/predict", "application/json", bytes.NewReader(req))
	if err != nil {
		t.Fatalf("POST /v1/predict: %v\n%s", err, out.String())
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var got struct {
		Hospital   string  `json:"hospital"`
		Version    string  `json:"model_version"`
		Prediction float64 `json:"prediction"`
	}
	if err := json.Unmarshal(body, &got); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/predict: %s %s: %v", resp.Status, body, err)
	}
	if want := fitted.Predicted[0].Value; got.Hospital != "st-olaf" || got.Version != "2026-11-30.1" || got.Prediction != want {
		t.Errorf("the container answered %+v, want the baked-in model st-olaf 2026-11-30.1 (%v, training's prediction)", got, want)
	}
}

// configureBundle runs the container in the host's network namespace, on
// port, without a terminal, as umoci set it up from the image's config
// (user 65532, /ward/serve, WARD_MODEL).
func configureBundle(t *testing.T, file string, port int) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	if user := proc["user"].(map[string]any); fmt.Sprint(user["uid"]) != "65532" {
		t.Errorf("the image runs as uid %v, want 65532", user["uid"])
	}
	proc["env"] = append(proc["env"].([]any), "PORT="+strconv.Itoa(port))
	linux := spec["linux"].(map[string]any)
	var ns []any
	for _, n := range linux["namespaces"].([]any) {
		if n.(map[string]any)["type"] != "network" {
			ns = append(ns, n)
		}
	}
	linux["namespaces"] = ns
	b, _ = json.MarshalIndent(spec, "", "  ")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, prog string, args ...string) {
	t.Helper()
	out, err := exec.Command(prog, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(prog), strings.Join(args, " "), err, out)
	}
}
