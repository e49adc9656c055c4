// Package sitetest opens a static site of ward site in a real headless
// Chromium, for tests: every page is loaded from file://, and what a
// person would see break is reported: a console error or an uncaught
// exception, a resource that failed to load, an image that did not
// decode, a link to a file that is not there, anything fetched from
// outside the site. It drives the browser by the DevTools protocol over
// --remote-debugging-pipe (no port, no dependency).
package sitetest

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Browser is a headless Chromium.
type Browser struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	mu   sync.Mutex
	next int
	wait map[int]chan message
	subs []func(message)
	done chan struct{}
	err  error
}

type message struct {
	ID        int                       `json:"id,omitempty"`
	Method    string                    `json:"method,omitempty"`
	Params    json.RawMessage           `json:"params,omitempty"`
	Result    json.RawMessage           `json:"result,omitempty"`
	Error     *struct{ Message string } `json:"error,omitempty"`
	SessionID string                    `json:"sessionId,omitempty"`
}

// Start starts the Chromium that WARD_TEST_CHROMIUM names (Debian's
// chromium, else the one on PATH outside CI), with a fresh profile, and
// stops it when the test ends. Without one the test is skipped, and under
// CI=true it fails.
func Start(t testing.TB) *Browser {
	t.Helper()
	bin := os.Getenv("WARD_TEST_CHROMIUM")
	if bin == "" {
		if p, err := exec.LookPath("chromium"); err == nil && os.Getenv("CI") != "true" {
			bin = p
		}
	}
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("WARD_TEST_CHROMIUM is not set: tools/dev/test installs Debian's chromium and sets it")
		}
		t.Skip("no chromium: set WARD_TEST_CHROMIUM (Debian's chromium) to open the site in a browser")
	}
	toR, toW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	fromR, fromW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
		"--user-data-dir="+t.TempDir(), "--remote-debugging-pipe", "--window-size=1400,1000", "about:blank")
	cmd.ExtraFiles = []*os.File{toR, fromW} // fd 3: what it reads, fd 4: what it writes
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("chromium %s: %v", bin, err)
	}
	toR.Close()
	fromW.Close()
	b := &Browser{cmd: cmd, in: toW, wait: map[int]chan message{}, done: make(chan struct{})}
	go b.read(fromR)
	t.Cleanup(func() {
		b.call("", "Browser.close", nil)
		toW.Close()
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("chromium's stderr:\n%s", stderr.String())
		}
	})
	return b
}

func (b *Browser) read(r io.Reader) {
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		raw, err := br.ReadBytes(0)
		if err != nil {
			b.mu.Lock()
			b.err = fmt.Errorf("chromium closed its pipe: %w", err)
			b.mu.Unlock()
			close(b.done)
			return
		}
		var m message
		if json.Unmarshal(raw[:len(raw)-1], &m) != nil {
			continue
		}
		b.mu.Lock()
		if m.ID != 0 {
			if ch := b.wait[m.ID]; ch != nil {
				ch <- m
				delete(b.wait, m.ID)
			}
		}
		subs := slices.Clone(b.subs)
		b.mu.Unlock()
		if m.Method != "" {
			for _, s := range subs {
				s(m)
			}
		}
	}
}

// call sends a command (to a session, or the browser) and waits for its
// answer.
func (b *Browser) call(session, method string, params any) (json.RawMessage, error) {
	if params == nil {
		params = struct{}{}
	}
	p, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.err != nil {
		defer b.mu.Unlock()
		return nil, b.err
	}
	b.next++
	id := b.next
	ch := make(chan message, 1)
	b.wait[id] = ch
	data, _ := json.Marshal(message{ID: id, Method: method, Params: p, SessionID: session})
	_, err = b.in.Write(append(data, 0))
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			return nil, fmt.Errorf("%s: %s", method, m.Error.Message)
		}
		return m.Result, nil
	case <-b.done:
		return nil, b.err
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("%s: no answer from chromium in 60s", method)
	}
}

func (b *Browser) subscribe(f func(message)) func() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subs = append(b.subs, f)
	i := len(b.subs) - 1
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.subs[i] = func(message) {}
	}
}

// Page is what a loaded page showed.
type Page struct {
	URL   string
	Title string
	// Text is the page's rendered text (document.body.innerText).
	Text   string
	Links  []string
	Images []Image
	// Problems are what broke: console errors, exceptions, failed loads,
	// fetches from outside file://.
	Problems []string
	// Screenshot is the PNG of the page, when asked for.
	Screenshot []byte
}

// Image is an <img> of a page: whether it loaded and decoded.
type Image struct {
	Src    string `json:"src"`
	Loaded bool   `json:"ok"`
}

// Visit loads a URL in a new tab, waits for its load event, and reads
// what it shows.
func (b *Browser) Visit(u string, screenshot bool) (*Page, error) {
	res, err := b.call("", "Target.createTarget", map[string]any{"url": "about:blank"})
	if err != nil {
		return nil, err
	}
	var target struct{ TargetID string }
	json.Unmarshal(res, &target)
	defer b.call("", "Target.closeTarget", map[string]any{"targetId": target.TargetID})
	if res, err = b.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}); err != nil {
		return nil, err
	}
	var att struct{ SessionID string }
	json.Unmarshal(res, &att)
	s := att.SessionID

	p := &Page{URL: u}
	var mu sync.Mutex
	loaded := make(chan struct{}, 1)
	unsub := b.subscribe(func(m message) {
		if m.SessionID != s {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		var ev struct {
			Type             string
			ExceptionDetails struct {
				Text      string
				Exception struct{ Description string }
			}
			Entry     struct{ Level, Text, URL string }
			ErrorText string
			Request   struct{ URL string }
		}
		json.Unmarshal(m.Params, &ev)
		switch m.Method {
		case "Page.loadEventFired":
			select {
			case loaded <- struct{}{}:
			default:
			}
		case "Runtime.consoleAPICalled":
			if ev.Type == "error" || ev.Type == "assert" {
				p.Problems = append(p.Problems, fmt.Sprintf("console %s: %s", ev.Type, string(m.Params)))
			}
		case "Runtime.exceptionThrown":
			p.Problems = append(p.Problems, "exception: "+ev.ExceptionDetails.Text+" "+ev.ExceptionDetails.Exception.Description)
		case "Log.entryAdded":
			if ev.Entry.Level == "error" {
				p.Problems = append(p.Problems, "console error: "+ev.Entry.Text+" "+ev.Entry.URL)
			}
		case "Network.loadingFailed":
			p.Problems = append(p.Problems, "failed to load: "+ev.ErrorText)
		case "Network.requestWillBeSent":
			if !strings.HasPrefix(ev.Request.URL, "file://") && !strings.HasPrefix(ev.Request.URL, "data:") && ev.Request.URL != "about:blank" {
				p.Problems = append(p.Problems, "fetched from outside the site: "+ev.Request.URL)
			}
		}
	})
	defer unsub()
	for _, domain := range []string{"Page", "Runtime", "Log", "Network"} {
		if _, err := b.call(s, domain+".enable", nil); err != nil {
			return nil, err
		}
	}
	if res, err = b.call(s, "Page.navigate", map[string]any{"url": u}); err != nil {
		return nil, err
	}
	var nav struct{ ErrorText string }
	json.Unmarshal(res, &nav)
	if nav.ErrorText != "" {
		return nil, fmt.Errorf("navigate %s: %s", u, nav.ErrorText)
	}
	select {
	case <-loaded:
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("%s: no load event in 60s", u)
	}
	res, err = b.call(s, "Runtime.evaluate", map[string]any{"returnByValue": true, "expression": `JSON.stringify({
		title: document.title, text: document.body ? document.body.innerText : "",
		links: Array.from(document.querySelectorAll("a[href]"), a => a.href),
		images: Array.from(document.images, i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0}))})`})
	if err != nil {
		return nil, err
	}
	var ev struct{ Result struct{ Value string } }
	json.Unmarshal(res, &ev)
	var seen struct {
		Title  string
		Text   string
		Links  []string
		Images []Image
	}
	if err := json.Unmarshal([]byte(ev.Result.Value), &seen); err != nil {
		return nil, fmt.Errorf("%s: reading the page: %w", u, err)
	}
	mu.Lock()
	p.Title, p.Text, p.Links, p.Images = seen.Title, seen.Text, seen.Links, seen.Images
	mu.Unlock()
	if screenshot {
		res, err := b.call(s, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true})
		if err != nil {
			return nil, err
		}
		var shot struct{ Data string }
		json.Unmarshal(res, &shot)
		if p.Screenshot, err = base64.StdEncoding.DecodeString(shot.Data); err != nil {
			return nil, err
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return p, nil
}

// Site is what the browser made of a site.
type Site struct {
	// Pages by their path in the site (index.html, hospitals/x.html).
	Pages map[string]*Page
	// Problems of every page, and broken links and images, each naming
	// its page.
	Problems []string
}

// Open loads every HTML page of the site in dir, and checks each link
// and image it shows: a link must lead to a file of the site (an outside
// link is a problem too: the site must work offline), an image must load.
// The index is screenshot.
func (b *Browser) Open(dir string) (*Site, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	s := &Site{Pages: map[string]*Page{}}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(d.Name(), ".html") {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		page, err := b.Visit((&url.URL{Scheme: "file", Path: p}).String(), rel == "index.html")
		if err != nil {
			return err
		}
		s.Pages[rel] = page
		for _, pr := range page.Problems {
			s.Problems = append(s.Problems, rel+": "+pr)
		}
		for _, img := range page.Images {
			if !img.Loaded {
				s.Problems = append(s.Problems, rel+": broken image "+img.Src)
			}
		}
		for _, l := range page.Links {
			if err := fileOf(dir, l); err != nil {
				s.Problems = append(s.Problems, rel+": broken link "+l+": "+err.Error())
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if s.Pages["index.html"] == nil {
		return nil, fmt.Errorf("%s: no index.html", dir)
	}
	return s, nil
}

// fileOf checks that a link leads to a file inside the site.
func fileOf(dir, link string) error {
	u, err := url.Parse(link)
	if err != nil {
		return err
	}
	if u.Scheme != "file" {
		return errors.New("outside the site")
	}
	p := filepath.FromSlash(u.Path)
	if rel, err := filepath.Rel(dir, p); err != nil || strings.HasPrefix(rel, "..") {
		return errors.New("outside the site's folder")
	}
	if st, err := os.Stat(p); err != nil || st.IsDir() {
		return errors.New("no such file")
	}
	return nil
}

// Artifacts is the folder where a test keeps what CI uploads (the
// screenshots): WARD_TEST_ARTIFACTS, else a temporary folder.
func Artifacts(t testing.TB) string {
	if d := os.Getenv("WARD_TEST_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// Check opens the site and fails the test on any problem; it keeps the
// index's screenshot in Artifacts as name.png, and returns the site.
func Check(t testing.TB, b *Browser, dir, name string) *Site {
	t.Helper()
	s, err := b.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range s.Problems {
		t.Error(p)
	}
	shot := filepath.Join(Artifacts(t), name+".png")
	if err := os.WriteFile(shot, s.Pages["index.html"].Screenshot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d pages opened in chromium; the index's screenshot: %s", len(s.Pages), shot)
	return s
}
