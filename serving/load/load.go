// Package load drives HTTP load at a server on loopback and measures it:
// closed-loop with wrk (as fast as the server answers, for throughput),
// and open-loop at a fixed rate in Go (for latency at a given load, timed
// from when each request was due, so a stalled server cannot hide its
// queue). The model server's load test and its benchmark
// (tools/dev/bench serve) use it; it is not part of the server binary.
package load

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Result is what a run measured.
type Result struct {
	Requests int
	Duration time.Duration
	// Non2xx counts answers that were not 2xx; Errors counts requests
	// that got no answer (connect, read, write errors and timeouts).
	Non2xx int
	Errors int
	// Latency percentiles: 50, 90, 99.
	P50, P90, P99 time.Duration
}

// Rate is the requests answered per second.
func (r Result) Rate() float64 { return float64(r.Requests) / r.Duration.Seconds() }

func (r Result) String() string {
	return fmt.Sprintf("%d requests in %s: %.0f req/s, p50 %s p90 %s p99 %s, %d non-2xx, %d errors",
		r.Requests, r.Duration.Round(time.Millisecond), r.Rate(), r.P50, r.P90, r.P99, r.Non2xx, r.Errors)
}

// Wrk runs wrk (Debian's package wrk) against url for d, POSTing body as
// JSON over conns keep-alive connections from threads threads.
func Wrk(ctx context.Context, url string, body []byte, d time.Duration, threads, conns int) (Result, error) {
	dir, err := os.MkdirTemp("", "ward-wrk-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "post.lua")
	lua := fmt.Sprintf("wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = [==[%s]==]\n", body)
	if err := os.WriteFile(script, []byte(lua), 0o644); err != nil {
		return Result{}, err
	}
	cmd := exec.CommandContext(ctx, "wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", fmt.Sprintf("%ds", int(d.Seconds())), "--latency", "-s", script, url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return Result{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	return parseWrk(string(out))
}

var (
	wrkTotal   = regexp.MustCompile(`(\d+) requests in ([\d.]+)(us|ms|s|m),`)
	wrkNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkSocket  = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkPercent = regexp.MustCompile(`(?m)^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$`)
)

func parseWrk(out string) (Result, error) {
	var r Result
	m := wrkTotal.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk: no request count in its output:\n%s", out)
	}
	r.Requests, _ = strconv.Atoi(m[1])
	r.Duration = duration(m[2], m[3])
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.Atoi(m[1])
	}
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(s)
			r.Errors += n
		}
	}
	for _, m := range wrkPercent.FindAllStringSubmatch(out, -1) {
		d := duration(m[2], m[3])
		switch m[1] {
		case "50":
			r.P50 = d
		case "90":
			r.P90 = d
		case "99":
			r.P99 = d
		}
	}
	if r.P99 == 0 {
		return r, fmt.Errorf("wrk: no latency distribution in its output:\n%s", out)
	}
	return r, nil
}

func duration(num, unit string) time.Duration {
	f, _ := strconv.ParseFloat(num, 64)
	scale := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute}[unit]
	return time.Duration(f * float64(scale))
}

// FixedRate POSTs body to url at rate requests per second for d, over
// conns keep-alive connections, and times each request from when it was
// due: a request that finds every connection busy waits, and its wait
// counts in its latency. It speaks HTTP/1.1 on raw connections, with the
// request written once, so that on a machine it shares with the server it
// takes little of the CPU the server needs (net/http's client would take
// more than the server).
func FixedRate(ctx context.Context, url string, body []byte, rate float64, d time.Duration, conns int) (Result, error) {
	u, err := neturl.Parse(url)
	if err != nil {
		return Result{}, err
	}
	req := fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		u.RequestURI(), u.Host, len(body), body)
	due := make(chan time.Time, int(rate*d.Seconds())+1)
	var mu sync.Mutex
	var lat []time.Duration
	var r Result
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			mine := make([]time.Duration, 0, 1024)
			non2xx, errs := 0, 0
			var c *conn
			for at := range due {
				if c == nil {
					var err error
					if c, err = dial(u.Host); err != nil {
						errs++
						continue
					}
				}
				code, err := c.roundTrip(req)
				if err != nil {
					errs++
					c.Close()
					c = nil
					continue
				}
				mine = append(mine, time.Since(at))
				if code/100 != 2 {
					non2xx++
				}
			}
			if c != nil {
				c.Close()
			}
			mu.Lock()
			lat = append(lat, mine...)
			r.Non2xx += non2xx
			r.Errors += errs
			mu.Unlock()
		})
	}
	// Send each request when it falls due (all that have, after a late
	// wake-up), stamped with the time it was due.
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	n := int(rate * d.Seconds())
	for i := 0; i < n && ctx.Err() == nil; {
		now := time.Now()
		for ; i < n; i++ {
			at := start.Add(time.Duration(i) * interval)
			if at.After(now) {
				time.Sleep(at.Sub(now))
				break
			}
			due <- at
		}
	}
	close(due)
	wg.Wait()
	r.Duration = time.Since(start)
	r.Requests = len(lat)
	if len(lat) == 0 {
		return r, fmt.Errorf("fixed rate: no request answered (%d errors)", r.Errors)
	}
	slices.Sort(lat)
	pick := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	r.P50, r.P90, r.P99 = pick(0.50), pick(0.90), pick(0.99)
	return r, ctx.Err()
}

// conn is one keep-alive HTTP/1.1 connection.
type conn struct {
	net.Conn
	r *bufio.Reader
}

func dial(host string) (*conn, error) {
	c, err := net.DialTimeout("tcp", host, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, r: bufio.NewReader(c)}, nil
}

// roundTrip writes a request and reads its answer, which must carry a
// Content-Length (the servers measured here answer small bodies).
func (c *conn) roundTrip(req []byte) (int, error) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	status, err := c.r.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	f := bytes.Fields(status)
	if len(f) < 2 {
		return 0, fmt.Errorf("bad status line %q", status)
	}
	code, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return 0, fmt.Errorf("bad status line %q", status)
	}
	length := -1
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			length, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if length < 0 {
		return 0, errors.New("an answer without Content-Length")
	}
	_, err = c.r.Discard(length)
	return code, err
}
