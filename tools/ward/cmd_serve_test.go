package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/models"
)

// tinyModel fits a two-input model: enough for the command's wiring.
func tinyModel(t *testing.T) []byte {
	t.Helper()
	inputs := []models.Column{{Name: "x", Type: models.Float, Required: true}, {Name: "g", Type: models.String}}
	for i := range inputs {
		if err := inputs[i].Prepare(); err != nil {
			t.Fatal(err)
		}
	}
	cases := func(from, to int) models.Cases {
		return func(yield func(models.Case, error) bool) {
			for i := from; i < to; i++ {
				x := float64(i%97) / 10
				g := []string{"a", "b", "c"}[i%3]
				y := math.Exp(3 + 0.2*x + 0.1*float64(i%3) + 0.01*float64(i%7))
				if !yield(models.Case{Row: []models.Value{models.Number(x), models.Text(g)}, Target: models.Number(y)}, nil) {
					return
				}
			}
		}
	}
	spec := models.Spec{
		Hospital: "tiny", Inputs: inputs,
		Features: []models.Feature{{Name: "x", Kind: models.Numeric}, {Name: "g", Kind: models.Categorical}},
		Target:   "bill", TargetTransform: models.Log, Lambdas: []float64{1}, MinRows: 10,
		Lineage: models.Lineage{Files: []models.File{{Name: "tiny/cases.csv", SHA256: strings.Repeat("0", 64)}}, Contract: strings.Repeat("0", 64), Ward: "test"},
	}
	a, err := models.Fit(spec, cases(0, 300), cases(300, 400))
	if err != nil {
		t.Fatal(err)
	}
	data, err := a.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestServeCommand(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "model.json")
	if err := os.WriteFile(model, tinyModel(t), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"format_version": 1`), 0o644)
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"serve", "--model", bad, "--listen", "127.0.0.1:0"}, &bytes.Buffer{}, &stderr, nil); code != exit.Config || !strings.Contains(stderr.String(), bad+": artifact: truncated") {
		t.Fatalf("a bad model: exit %d, %s", code, stderr.String())
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, logs syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--model", model, "--listen", addr, "--log-format", "json"}, &stdout, &logs, []string{"WARD_MODEL_DIGEST=sha256:" + strings.Repeat("9", 64)})
	}()
	var resp *http.Response
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err = http.Post("http://"+addr+"/v1/predict", "application/json", strings.NewReader(`{"x": 2.5, "g": "b"}`))
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		cancel()
		t.Fatalf("%v\n%s", err, logs.String())
	}
	var ans map[string]any
	json.NewDecoder(resp.Body).Decode(&ans)
	resp.Body.Close()
	if resp.StatusCode != 200 || ans["hospital"] != "tiny" || !(ans["prediction"].(float64) > 0) || ans["model_digest"] != "sha256:"+strings.Repeat("9", 64) {
		t.Errorf("answer %d %v", resp.StatusCode, ans)
	}
	cancel()
	if code := <-done; code != exit.OK {
		t.Errorf("exit %d after the context ended\n%s", code, logs.String())
	}
	if !strings.Contains(stdout.String(), `"ward.hospital":"tiny"`) {
		t.Errorf("stdout lacks the prediction log: %s", stdout.String())
	}
	if !strings.Contains(logs.String(), `"message":"model loaded"`) {
		t.Errorf("log: %s", logs.String())
	}
}
