package agent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// runFront runs an agent on a loopback port until the test ends.
func runFront(t *testing.T, a *Agent) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

// 200 clients that send a signed webhook's body a byte every 3 s: the
// front endpoint closes every one at its read timeout, not minutes later.
func TestFrontClosesSlowClientsAtTheReadTimeout(t *testing.T) {
	const clients, timeout = 200, time.Second
	addr := runFront(t, idle(t, WithWebhookSecret("a webhook secret"), WithFrontTimeouts(timeout, timeout, timeout)))
	var wg sync.WaitGroup
	held := make(chan time.Duration, clients)
	began := time.Now()
	for range clients {
		wg.Go(func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				held <- -1
				return
			}
			defer c.Close()
			fmt.Fprintf(c, "POST /agent/refresh HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: sha256=00\r\nContent-Length: 1000\r\n\r\n")
			// A byte every 3 s, at most 5 of them; the server's close ends it.
			for range 5 {
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				if _, err := c.Read(make([]byte, 512)); err != nil && !os.IsTimeout(err) {
					held <- time.Since(began)
					return
				}
				if _, err := c.Write([]byte("x")); err != nil {
					held <- time.Since(began)
					return
				}
			}
			held <- time.Since(began)
		})
	}
	wg.Wait()
	close(held)
	var longest time.Duration
	for d := range held {
		if d < 0 {
			t.Fatal("a client could not connect")
		}
		longest = max(longest, d)
	}
	t.Logf("%d slow clients, read timeout %s: the last was cut after %s", clients, timeout, longest.Round(time.Millisecond))
	if longest > 4*timeout+time.Second {
		t.Errorf("a slow client held its connection for %s, read timeout %s", longest, timeout)
	}
}

// TestHoldIdleConnections is not a test: TestIdleConnectionsDoNotStopPredictions
// runs the test binary with it to hold connections from another process.
func TestHoldIdleConnections(t *testing.T) {
	addr, n := os.Getenv("WARD_TEST_HOLD_ADDR"), os.Getenv("WARD_TEST_HOLD_N")
	if addr == "" {
		return
	}
	count, _ := strconv.Atoi(n)
	var conns []net.Conn
	for range count {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	fmt.Printf("held %d\n", len(conns))
	io.Copy(io.Discard, os.Stdin) // until the parent lets go
}

// With the file limit at 1,024, 1,100 idle connections (from another
// process) do not keep a real /v1/predict out: the front endpoint closes
// the connections that wait longest for a request to make room.
func TestIdleConnectionsDoNotStopPredictions(t *testing.T) {
	host, _, _ := inProcessRegistry(t)
	f := newFixture(t, host)
	f.publish("v1", model(t, "v1", 1), f.key)
	f.mustDeploy("v1")

	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = 1024
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) })

	a := f.startAgent("")
	a.waitServing(t, f, "v1", 60*time.Second)

	holder := exec.Command(os.Args[0], "-test.run", "^TestHoldIdleConnections$")
	holder.Env = append(os.Environ(), "WARD_TEST_HOLD_ADDR="+strings.TrimPrefix(a.url, "http://"), "WARD_TEST_HOLD_N=1100")
	stdin, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); holder.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	t.Logf("the holder: %s", strings.TrimSpace(line))
	time.Sleep(500 * time.Millisecond) // the last ones accepted

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 5 {
		began := time.Now()
		if v, err := answer(client, a.url, f.request); err != nil || v != "v1" {
			t.Fatalf("prediction %d beside 1,100 idle connections: %q, %v (after %s)", i, v, err, time.Since(began))
		}
		t.Logf("prediction %d answered in %s", i, time.Since(began).Round(time.Millisecond))
	}
}

// On a listener beyond loopback, /agent/refresh needs the webhook secret.
func TestRefreshNeedsTheSecretOffHost(t *testing.T) {
	a := idle(t)
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, ln := a.frontServer(ln)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	resp, err := http.Post("http://127.0.0.1:"+port+"/agent/refresh", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || len(a.refresh) != 0 {
		t.Errorf("refresh without a secret on %s: %d, poll asked %v", ln.Addr(), resp.StatusCode, len(a.refresh) == 1)
	}
}
