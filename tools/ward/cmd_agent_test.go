package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/models/modeltest"
	"github.com/wardml/ward/tools/image"
	"github.com/wardml/ward/tools/registry"
	"github.com/wardml/ward/tools/signing"
)

// ward agent, wired from the settings: it follows what ward deploy
// commits, polls when the webhook asks (with the secret), writes the
// prediction log on stdout, and stops cleanly when its context ends.
func TestAgentCommand(t *testing.T) {
	reg, err := registry.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	key, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := signing.MarshalPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubFile := filepath.Join(t.TempDir(), "ward.pub")
	if err := os.WriteFile(pubFile, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	client := registry.NewClient()
	repo, err := client.Repository(reg.Host, "ward/st-olaf")
	if err != nil {
		t.Fatal(err)
	}
	fitted := modeltest.StOlaf(t, 400, 1, 1)
	fitted.Artifact.Version = "v1"
	art, err := fitted.Artifact.Encode()
	if err != nil {
		t.Fatal(err)
	}
	img, err := image.Build(image.Model{Hospital: "st-olaf", Version: "v1", Family: "ridge", Artifact: art}, builtServer(t), image.Created(time.Unix(1764504000, 0)))
	if err != nil {
		t.Fatal(err)
	}
	res, err := image.NewPublisher(image.WithRemote(client.Remote(context.Background())...), image.WithSigner(key)).Publish(context.Background(), repo, img, nil)
	if err != nil {
		t.Fatal(err)
	}

	remote := testenv.BareRepo(t)
	env := []string{"WARD_REGISTRY=" + reg.Host, "WARD_VERIFY_KEY=" + pubFile, "WARD_AGENT_WEBHOOK_SECRET=s3cret"}
	if code, out, errOut := ward(t, remote, env, "manifest", "init"); code != exit.OK {
		t.Fatalf("manifest init: %d\n%s%s", code, out, errOut)
	}
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	agentEnv := append([]string{"WARD_MANIFEST_REPO=" + remote, "WARD_LOG_FORMAT=json", "WARD_ID_FIELD=case_ref"}, env...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"agent", "--hospital", "st-olaf", "--listen", addr, "--data", t.TempDir(), "--poll", "1h"}, &out, &errOut, agentEnv)
	}()
	defer func() {
		if t.Failed() {
			t.Logf("ward agent's stderr:\n%s", errOut.String())
		}
	}()
	url := "http://" + addr
	waitHTTP(t, url+"/agent/status")

	if code, o, e := ward(t, remote, env, "deploy", "--hospital", "st-olaf", "--image", res.Ref.String()); code != exit.OK {
		t.Fatalf("deploy: %d\n%s%s", code, o, e)
	}
	// The poll is an hour away: only the webhook brings the deploy.
	refresh := func(secret string) int {
		req, _ := http.NewRequest(http.MethodPost, url+"/agent/refresh", nil)
		req.Header.Set("X-Ward-Webhook-Secret", secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := refresh("guess"); code != http.StatusUnauthorized {
		t.Fatalf("refresh with a wrong secret: %d", code)
	}
	if code := refresh("s3cret"); code != http.StatusAccepted {
		t.Fatalf("refresh: %d", code)
	}
	var status struct {
		Serving *struct{ Version, Digest string }
	}
	deadline := time.Now().Add(30 * time.Second)
	for status.Serving == nil {
		if time.Now().After(deadline) {
			t.Fatal("ward agent did not serve v1 within 30s")
		}
		time.Sleep(50 * time.Millisecond)
		if err := json.Unmarshal([]byte(get(t, url+"/agent/status")), &status); err != nil {
			t.Fatal(err)
		}
	}
	if status.Serving.Version != "v1" || status.Serving.Digest != res.Ref.DigestStr() {
		t.Fatalf("serving %+v", status.Serving)
	}

	body, _ := json.Marshal(modeltest.Request(fitted.Artifact.Inputs, fitted.Valid[0].Row))
	body = append(bytes.TrimSuffix(body, []byte("}")), []byte(`,"case_ref":"case-42"}`)...)
	resp, err := http.Post(url+"/v1/predict", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(answer), `"model_version":"v1"`) {
		t.Fatalf("predict: %s %s", resp.Status, answer)
	}
	// The server took WARD_ID_FIELD from the agent's environment.
	for !strings.Contains(out.String(), `"ward.case_id":"case-42"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no prediction log line on stdout:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	cancel()
	select {
	case code := <-done:
		if code != exit.OK {
			t.Fatalf("ward agent exited %d", code)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("ward agent did not stop")
	}
	if !strings.Contains(errOut.String(), `"message":"agent stopped"`) {
		t.Errorf("no stop in the log:\n%s", errOut.String())
	}
	if strings.Contains(errOut.String(), "s3cret") {
		t.Error("the webhook secret is in the log")
	}

	for _, c := range []struct {
		env  []string
		args []string
		want string
	}{
		{agentEnv, []string{"agent"}, "want --hospital ID"},
		{agentEnv, []string{"agent", "--hospital", "../x"}, "want lower-case letters"},
		{agentEnv[:3], []string{"agent", "--hospital", "st-olaf"}, "no public key"},
		{agentEnv[1:], []string{"agent", "--hospital", "st-olaf"}, "WARD_MANIFEST_REPO"},
		{agentEnv, []string{"agent", "--hospital", "st-olaf", "--listen", "nowhere:x", "--data", t.TempDir()}, "--listen nowhere:x"},
		{agentEnv, []string{"agent", "--hospital", "st-olaf", "--keep", "1", "--data", t.TempDir()}, "want at least 2"},
	} {
		var o, e bytes.Buffer
		if code := run(context.Background(), c.args, &o, &e, c.env); code != exit.Config || !strings.Contains(e.String(), c.want) {
			t.Errorf("%v: exit %d %s, want 2 and %q", c.args, code, e.String(), c.want)
		}
	}
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
