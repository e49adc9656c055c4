package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// A model server that answers before the body has all come (as a 413 or a
// body deadline does): the front endpoint passes the answer on, and
// net/http never reads the rest of the body while the proxy's transport
// still does (it would panic: "invalid concurrent Body.Read call").
func TestEarlyAnswerWhileTheBodyComes(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		http.Error(w, `{"error":"body over the limit"}`, http.StatusRequestEntityTooLarge)
	}))
	defer backend.Close()
	target, _ := url.Parse(backend.URL)
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target) }, ModifyResponse: closeIfBodyLeft}

	var mu sync.Mutex
	var logged bytes.Buffer
	front := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		proxyCounted(w, r, proxy)
	}))
	front.Config.ErrorLog = log.New(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logged.Write(p)
	}), "", 0)
	front.Start()
	defer front.Close()

	for range 20 {
		conn, err := net.Dial("tcp", strings.TrimPrefix(front.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /v1/predict HTTP/1.1\r\nHost: agent\r\nContent-Length: 100000\r\n\r\n{\"age\": 4")
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("the answer: %v", err)
		}
		resp.Body.Close()
		if !resp.Close {
			t.Errorf("an answer before the body came keeps the connection open")
		}
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("status %d, want the model server's 413", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond) // the body goes on coming
		conn.Write([]byte(`, "more": 1`))
		conn.Close()
	}
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(logged.String(), "panic") {
		t.Errorf("the front endpoint panicked:\n%s", logged.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
