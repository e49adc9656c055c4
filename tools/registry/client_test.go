package registry

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func startServer(t *testing.T) *Server {
	t.Helper()
	s, err := Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// front puts handler h before the registry at host, on another loopback
// port, and returns that port's host.
func front(t *testing.T, host string, h func(w http.ResponseWriter, r *http.Request, next http.Handler)) string {
	u, _ := url.Parse("http://" + host)
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h(w, r, rp) }))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func push(t *testing.T, c *Client, host string) error {
	t.Helper()
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := c.Repository(host, "ward/test")
	if err != nil {
		t.Fatal(err)
	}
	return remote.Write(repo.Tag("v1"), img, c.Remote(context.Background())...)
}

// A registry that answers 503 to the first try of every request still gets
// the image: the client retries with backoff.
func TestClientRetries(t *testing.T) {
	s := startServer(t)
	var mu sync.Mutex
	seen, failed := map[string]bool{}, 0
	host := front(t, s.Host, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		mu.Lock()
		key := r.Method + " " + r.URL.Path
		if i := strings.Index(key, "/blobs/uploads/"); i >= 0 {
			key = key[:i] // each upload has its own path: fail only the first
		}
		first := !seen[key] && r.URL.Path != "/v2/"
		seen[key] = true
		if first {
			failed++
		}
		mu.Unlock()
		if first {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, r)
	})
	if err := push(t, NewClient(), host); err != nil {
		t.Fatalf("push through a registry that fails each first try: %v", err)
	}
	if failed < 3 {
		t.Fatalf("only %d requests failed: the test did not exercise retries", failed)
	}
}

// Credentials come from the Docker config file, or from WARD_REGISTRY_*
// for the configured host; without them the registry refuses the push.
func TestClientCredentials(t *testing.T) {
	s := startServer(t)
	host := front(t, s.Host, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if u, p, ok := r.BasicAuth(); !ok || u != "ci" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="ward-test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"login"}]}`, http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
	empty := t.TempDir()
	t.Setenv("DOCKER_CONFIG", empty)
	if err := push(t, NewClient(), host); err == nil || !strings.Contains(err.Error(), "401 Unauthorized") {
		t.Fatalf("push without credentials: %v, want 401 Unauthorized", err)
	}
	if err := push(t, NewClient(WithCredentials(host, "ci", "s3cret")), host); err != nil {
		t.Fatalf("push with WithCredentials: %v", err)
	}
	if err := push(t, NewClient(WithCredentials(host, "ci", "wrong")), host); err == nil {
		t.Fatal("push with a wrong password succeeded")
	}

	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("ci:s3cret"))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
	if err := push(t, NewClient(), host); err != nil {
		t.Fatalf("push with the Docker config file: %v", err)
	}
}

// Plain HTTP goes to loopback only, unless allowed.
func TestClientRefusesPlainHTTPOffLoopback(t *testing.T) {
	c := NewClient()
	req, _ := http.NewRequest(http.MethodGet, "http://registry.example.invalid:5000/v2/", nil)
	_, err := c.transport.RoundTrip(req)
	if err == nil || !strings.Contains(err.Error(), "plain HTTP to registry.example.invalid:5000 refused: it is not on loopback") {
		t.Fatalf("plain HTTP off loopback: %v", err)
	}
	s := startServer(t)
	req, _ = http.NewRequest(http.MethodGet, "http://"+s.Host+"/v2/", nil)
	resp, err := c.transport.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("plain HTTP to loopback: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestRepositoryAndDigest(t *testing.T) {
	c := NewClient()
	r, err := c.Repository("registry.example.org:5000/group", "ward/st-olaf")
	if err != nil || r.Name() != "registry.example.org:5000/group/ward/st-olaf" {
		t.Errorf("Repository: %v %v", r, err)
	}
	if _, err := c.Repository("", "ward/x"); err == nil || !strings.Contains(err.Error(), "no registry: set WARD_REGISTRY") {
		t.Errorf("Repository without a registry: %v", err)
	}
	d := "127.0.0.1:5000/ward/st-olaf@sha256:" + strings.Repeat("ab", 32)
	if got, err := c.ParseDigest(d); err != nil || got.String() != d {
		t.Errorf("ParseDigest(%s): %v %v", d, got, err)
	}
	for s, want := range map[string]string{
		"127.0.0.1:5000/ward/st-olaf:v1":         "is not pinned by digest",
		"127.0.0.1:5000/ward/st-olaf@sha256:abc": "image \"127.0.0.1:5000/ward/st-olaf@sha256:abc\"",
	} {
		if _, err := c.ParseDigest(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseDigest(%s): %v, want %q", s, err, want)
		}
	}
}

// The in-process registry answers the referrers API with each referrer's
// artifactType and applies the filter, and says OCI-Subject on push.
func TestServerReferrers(t *testing.T) {
	s := startServer(t)
	c := NewClient()
	opts := c.Remote(context.Background())
	subject, err := random.Image(100, 1)
	if err != nil {
		t.Fatal(err)
	}
	repo, _ := c.Repository(s.Host, "ward/r")
	if err := remote.Write(repo.Tag("s"), subject, opts...); err != nil {
		t.Fatal(err)
	}
	d, _ := subject.Digest()
	raw, _ := subject.RawManifest()
	mt, _ := subject.MediaType()
	idx, err := remote.Referrers(repo.Digest(d.String()), opts...)
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	if len(im.Manifests) != 0 {
		t.Fatalf("referrers of a fresh image: %v", im.Manifests)
	}
	// A referrer pushed through the API must show up with its artifactType.
	art := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/x.test",` +
		`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},` +
		`"layers":[],"subject":{"mediaType":"` + string(mt) + `","digest":"` + d.String() + `","size":` + strconv.Itoa(len(raw)) + `}}`
	req, _ := http.NewRequest(http.MethodPut, "http://"+s.Host+"/v2/ward/r/manifests/sha256:"+fmt.Sprintf("%x", sha256.Sum256([]byte(art))), strings.NewReader(art))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("OCI-Subject") != d.String() {
		t.Fatalf("PUT referrer: %s, OCI-Subject %q", resp.Status, resp.Header.Get("OCI-Subject"))
	}
	for filter, n := range map[string]int{"": 1, "application/x.test": 1, "application/x.other": 0} {
		o := opts
		if filter != "" {
			o = append(o, remote.WithFilter("artifactType", filter))
		}
		idx, err := remote.Referrers(repo.Digest(d.String()), o...)
		if err != nil {
			t.Fatal(err)
		}
		im, _ := idx.IndexManifest()
		if len(im.Manifests) != n || (n == 1 && im.Manifests[0].ArtifactType != "application/x.test") {
			t.Errorf("referrers (filter %q): %+v", filter, im.Manifests)
		}
	}
}

// A server started again on the same folder has the same images.
func TestServerKeepsImagesAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	s, err := Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient()
	opts := c.Remote(context.Background())
	idx, err := random.Index(256, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	repo, _ := c.Repository(s.Host, "ward/keep")
	if err := remote.WriteIndex(repo.Tag("v1"), idx, opts...); err != nil {
		t.Fatal(err)
	}
	if err := remote.Delete(repo.Tag("v1"), opts...); err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(repo.Tag("v2"), idx, opts...); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	repo, _ = c.Repository(s.Host, "ward/keep")
	d, _ := idx.Digest()
	got, err := remote.Index(repo.Digest(d.String()), opts...)
	if err != nil {
		t.Fatalf("after a restart: %v", err)
	}
	if err := validate.Index(got); err != nil {
		t.Fatalf("after a restart the index's blobs are not all there: %v", err)
	}
	if _, err := remote.Head(repo.Tag("v2"), opts...); err != nil {
		t.Errorf("tag v2 after a restart: %v", err)
	}
	if _, err := remote.Head(repo.Tag("v1"), opts...); err == nil {
		t.Error("tag v1 was deleted, yet it is back after a restart")
	}

	os.WriteFile(filepath.Join(dir, "manifests.jsonl"), []byte("{not json\n"), 0o644)
	if _, err := Start(dir); err == nil || !strings.Contains(err.Error(), "manifests.jsonl line 1") {
		t.Errorf("a damaged journal: %v", err)
	}
}
