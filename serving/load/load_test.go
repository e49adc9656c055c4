package load

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestFixedRateKeepsTheRateAndCountsFailures(t *testing.T) {
	var seen atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if seen.Add(1)%10 == 0 {
			http.Error(w, "no", http.StatusBadRequest)
			return
		}
		time.Sleep(2 * time.Millisecond)
		w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	r, err := FixedRate(context.Background(), srv.URL+"/v1/predict", []byte(`{"a":1}`), 400, 2*time.Second, 8)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 800 || int(seen.Load()) != 800 || r.Errors != 0 {
		t.Errorf("%d answered, %d seen, %d errors: want 800 of each and none failed", r.Requests, seen.Load(), r.Errors)
	}
	if r.Non2xx != 80 {
		t.Errorf("%d not 2xx, want 80", r.Non2xx)
	}
	if r.P50 < 2*time.Millisecond || r.P99 < r.P50 || r.Duration < 2*time.Second-10*time.Millisecond {
		t.Errorf("p50 %s p99 %s over %s: the server takes 2 ms a request", r.P50, r.P99, r.Duration)
	}
}

func TestFixedRateCountsRequestsWithoutAnAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hj, _ := w.(http.Hijacker)
		c, _, _ := hj.Hijack()
		c.Close()
	}))
	defer srv.Close()
	r, err := FixedRate(context.Background(), srv.URL, []byte(`{}`), 100, time.Second, 2)
	if err == nil || r.Errors != 100 {
		t.Errorf("%+v, %v: want 100 errors and an error", r, err)
	}
}

func TestParseWrk(t *testing.T) {
	out := `Running 10s test @ http://127.0.0.1:8080/v1/predict
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20ms    2.01ms  40.11ms   92.35%
    Req/Sec    12.34k   800.12    14.01k    70.00%
  Latency Distribution
     50%  653.00us
     75%    1.01ms
     90%    2.50ms
     99%   10.20ms
  122811 requests in 10.00s, 40.12MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  12280.81
Transfer/sec:      4.01MB
`
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 122811 || r.Duration != 10*time.Second || r.Errors != 3 || r.Non2xx != 5 ||
		r.P50 != 653*time.Microsecond || r.P90 != 2500*time.Microsecond || r.P99 != 10200*time.Microsecond {
		t.Errorf("%+v", r)
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused"); err == nil {
		t.Error("output without figures parsed")
	}
}
