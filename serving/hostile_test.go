package serving_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wardml/ward/models/modeltest"
)

// batchBomb is a body of max bytes: {"instances":[{},{},...]}, hundreds of
// thousands of empty cases, each of which costs a decoder a map.
func batchBomb(max int) []byte {
	b := append(make([]byte, 0, max), `{"instances":[{}`...)
	for len(b)+4 <= max {
		b = append(b, ",{}"...)
	}
	return append(b, "]}"...)
}

// 150 clients sending 1 MiB batch bombs at once to the real ward-serve
// binary: its peak memory (the child's maxrss) stays under 256 MiB, every
// answer is a 400 naming the batch limit or a 503 with Retry-After, and a
// real case is answered afterwards.
func TestBatchBombsKeepMemoryBounded(t *testing.T) {
	const (
		clients  = 150
		requests = 2 // per client
		limit    = 256 << 20
	)
	bin := buildServer(t)
	a, _ := stOlaf(t)
	srv := startBinary(t, bin, modelFile(t, a.Data), io.Discard)
	addr := srv.addr
	url := "http://" + addr + "/v1/predict"
	bomb := batchBomb(1<<20 - 64)

	var mu sync.Mutex
	codes := map[int]int{}
	var bad []string
	var wg sync.WaitGroup
	start := make(chan struct{})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 60 * time.Second}
	for range clients {
		wg.Go(func() {
			<-start
			for range requests {
				resp, err := client.Post(url, "application/json", bytes.NewReader(bomb))
				if err != nil {
					// The server answers and closes before the body is
					// all sent: a reset is a refusal too.
					mu.Lock()
					codes[0]++
					mu.Unlock()
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				mu.Lock()
				codes[resp.StatusCode]++
				switch {
				case resp.StatusCode == http.StatusBadRequest && strings.Contains(string(body), "at most 100 per request"):
				case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
				default:
					bad = append(bad, fmt.Sprintf("%s %s", resp.Status, body))
				}
				mu.Unlock()
			}
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	t.Logf("%d clients x %d bombs of %d bytes in %s: answers by status %v (0: connection cut)", clients, requests, len(bomb), time.Since(began).Round(time.Millisecond), codes)
	if len(bad) > 0 {
		t.Errorf("%d unexpected answers, first: %s", len(bad), bad[0])
	}
	if codes[http.StatusBadRequest] == 0 {
		t.Errorf("no bomb was refused with a 400: %v", codes)
	}
	s := &server{url: "http://" + addr}
	if code, ans := s.post(t, stOlafCase()); code != http.StatusOK {
		t.Errorf("a real case after the bombs: %d %v", code, ans)
	}

	if err := srv.stop(t, 30*time.Second); err != nil {
		t.Fatalf("after SIGTERM: %v\n%s", err, srv.ops.text())
	}
	ru, ok := srv.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Fatal("no rusage for the server process")
	}
	peak := ru.Maxrss << 10 // KiB on Linux
	t.Logf("ward-serve peak RSS: %.1f MiB (bound %d MiB)", float64(peak)/(1<<20), limit>>20)
	if peak > limit {
		t.Errorf("ward-serve peaked at %.1f MiB under %d batch-bomb clients, over %d MiB", float64(peak)/(1<<20), clients, limit>>20)
	}
}

// Beyond --max-in-flight a request waits --queue-wait for a turn, then
// gets a 503 with Retry-After; a body that stalls after its turn came
// loses the turn within seconds, not at the read timeout.
func TestRequestsBeyondTheTurnsAreRefusedBriefly(t *testing.T) {
	a, _ := stOlaf(t)
	cfg := config(t, modelFile(t, a.Data))
	cfg.MaxInFlight, cfg.QueueWait = 1, 200*time.Millisecond
	cfg.ReadTimeout = time.Minute
	s := start(t, cfg)

	finish := slowRequest(t, s.url) // holds the one turn
	resp, err := http.Post(s.url+"/v1/predict", "application/json", strings.NewReader(`{"age": 61}`))
	if err != nil {
		t.Fatal(err)
	}
	ans := decodeBody(t, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || !strings.Contains(fmt.Sprint(ans["error"]), "busy: 1 predictions in flight") {
		t.Errorf("a request beyond the turns: %d, Retry-After %q, %v", resp.StatusCode, resp.Header.Get("Retry-After"), ans)
	}
	if code, ans := finish(); code != http.StatusOK {
		t.Errorf("the request that held the turn: %d %v", code, ans)
	}

	// A client that sends a tenth of its body and stops.
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"age\": 6")
	time.Sleep(100 * time.Millisecond) // its turn is taken
	began := time.Now()
	for {
		code, _ := s.post(t, stOlafCase())
		if code == http.StatusOK {
			break
		}
		if code != http.StatusServiceUnavailable || time.Since(began) > 15*time.Second {
			t.Fatalf("while a body stalls: %d after %s", code, time.Since(began))
		}
	}
	t.Logf("a stalled body held the only turn for %s", time.Since(began).Round(time.Millisecond))
}

// FuzzPredictRequest sends any body to /v1/predict: the server answers it
// (a prediction, or a refusal that is JSON and says why), never crashes,
// and never predicts from a body that is not one JSON object.
func FuzzPredictRequest(f *testing.F) {
	// A small model: every fuzzing worker fits it.
	fitted := modeltest.StOlaf(f, 400, 1, 1)
	cfg := config(f, modelFile(f, fitted.Data))
	cfg.MaxBatch, cfg.MaxBody = 3, 4096
	srv, err := newServer(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close() })
	h := srv.Handler()
	good, _ := json.Marshal(stOlafCase())
	f.Add(good)
	f.Add([]byte(`{"instances":[` + string(good) + `,` + string(good) + `]}`))
	f.Add(batchBomb(600))
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/predict", bytes.NewReader(body)))
		switch w.Code {
		case http.StatusOK:
			var v map[string]any
			if json.Unmarshal(body, &v) != nil {
				t.Fatalf("predicted from a body that is not a JSON object: %q", body)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		default:
			t.Fatalf("status %d for %q", w.Code, body)
		}
		var ans map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &ans); err != nil {
			t.Fatalf("answer %q to %q is not JSON: %v", w.Body, body, err)
		}
		if w.Code != http.StatusOK && ans["error"] == "" {
			t.Fatalf("a refusal without a reason: %s", w.Body)
		}
	})
}
