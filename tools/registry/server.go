// Package registry is how ward reaches OCI registries: a Client with ward's
// rules (credentials from the environment or the Docker config file, plain
// HTTP only on loopback or when allowed, retries with backoff, timeouts),
// and Server, a real registry in this process (go-containerregistry's, with
// its data on disk) that `ward demo` and the tests without services use in
// the place of the group's own. Package, deploy and the agent talk through it.
package registry

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Server is an OCI registry (distribution API with the OCI 1.1 referrers
// API) on 127.0.0.1, with its data in a folder: blobs as files, and a
// journal of manifest pushes and deletes that a restart replays, so that a
// server started again on the same folder has the same images.
type Server struct {
	// Host is 127.0.0.1:PORT; images go to Host/REPO.
	Host    string
	srv     *http.Server
	done    chan error
	journal *os.File
}

// Start serves a registry on a free loopback port, keeping its data in dir
// (dir/blobs, dir/manifests.jsonl).
func Start(dir string) (*Server, error) {
	blobs := filepath.Join(dir, "blobs")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	inner := ggcr.New(
		ggcr.WithBlobHandler(ggcr.NewDiskBlobHandler(blobs)),
		ggcr.WithReferrersSupport(true),
		ggcr.Logger(log.New(io.Discard, "", 0)),
	)
	journalFile := filepath.Join(dir, "manifests.jsonl")
	if err := replay(inner, journalFile); err != nil {
		ln.Close()
		return nil, err
	}
	journal, err := os.OpenFile(journalFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("registry: %w", err)
	}
	s := &Server{
		Host:    ln.Addr().String(),
		srv:     &http.Server{Handler: &journaled{next: referrers{inner}, file: journal}, ReadHeaderTimeout: 30 * time.Second},
		done:    make(chan error, 1),
		journal: journal,
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() error {
	err := s.srv.Close()
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if jerr := s.journal.Close(); err == nil {
		err = jerr
	}
	return err
}

// entry is one line of the manifest journal.
type entry struct {
	Method      string `json:"method"`
	Path        string `json:"path"`
	ContentType string `json:"content_type,omitempty"`
	Body        []byte `json:"body,omitempty"`
}

// journaled records the manifest pushes and deletes that succeeded.
type journaled struct {
	next http.Handler
	mu   sync.Mutex
	file *os.File
}

func (h *journaled) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if (r.Method != http.MethodPut && r.Method != http.MethodDelete) || len(parts) < 4 || parts[len(parts)-2] != "manifests" {
		h.next.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := &statusRecorder{ResponseWriter: w}
	h.next.ServeHTTP(rec, r)
	if rec.status != http.StatusCreated && rec.status != http.StatusAccepted {
		return
	}
	line, _ := json.Marshal(entry{Method: r.Method, Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"), Body: body})
	h.mu.Lock()
	defer h.mu.Unlock()
	// The push has been answered already; a journal that cannot be written
	// (a full disk) loses it at the next restart only, as a crash would.
	h.file.Write(append(line, '\n'))
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// replay applies a journal to a fresh registry, in order.
func replay(h http.Handler, file string) error {
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 8<<20)
	for n := 1; sc.Scan(); n++ {
		var e entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("registry: %s line %d: %v (the journal is damaged: move it away to start empty)", file, n, err)
		}
		req := httptest.NewRequest(e.Method, e.Path, bytes.NewReader(e.Body))
		req.Header.Set("Content-Type", e.ContentType)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated && rec.Code != http.StatusAccepted {
			return fmt.Errorf("registry: %s line %d: %s %s: %d %s", file, n, e.Method, e.Path, rec.Code, strings.TrimSpace(rec.Body.String()))
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("registry: %s: %w", file, err)
	}
	return nil
}

// referrers completes go-containerregistry's referrers API where the OCI
// distribution spec asks more of it: a manifest pushed with a subject is
// answered with OCI-Subject (so clients know the registry indexes it and
// skip the tag-schema fallback), a listing gives each referrer's
// artifactType (not its config's media type), and the artifactType filter
// is applied.
type referrers struct{ next http.Handler }

func (h referrers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	n := len(parts)
	switch {
	case r.Method == http.MethodPut && n >= 4 && parts[n-2] == "manifests":
		body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var m struct {
			Subject *v1.Descriptor `json:"subject"`
		}
		if json.Unmarshal(body, &m) == nil && m.Subject != nil {
			w.Header().Set("OCI-Subject", m.Subject.Digest.String())
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.next.ServeHTTP(w, r)
	case r.Method == http.MethodGet && n >= 4 && parts[n-2] == "referrers":
		h.list(w, r, strings.Join(parts[1:n-2], "/"))
	default:
		h.next.ServeHTTP(w, r)
	}
}

func (h referrers) list(w http.ResponseWriter, r *http.Request, repo string) {
	rec := httptest.NewRecorder()
	h.next.ServeHTTP(rec, r)
	var idx v1.IndexManifest
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &idx) != nil {
		copyResponse(w, rec)
		return
	}
	want := r.URL.Query().Get("artifactType")
	kept := []v1.Descriptor{}
	for _, d := range idx.Manifests {
		get := httptest.NewRequest(http.MethodGet, "/v2/"+repo+"/manifests/"+d.Digest.String(), nil)
		mrec := httptest.NewRecorder()
		h.next.ServeHTTP(mrec, get)
		var m v1.Manifest
		if mrec.Code == http.StatusOK && json.Unmarshal(mrec.Body.Bytes(), &m) == nil && m.ArtifactType != "" {
			d.ArtifactType = m.ArtifactType
		}
		if want == "" || d.ArtifactType == want {
			kept = append(kept, d)
		}
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i].Digest.String() < kept[j].Digest.String() })
	idx.Manifests = kept
	b, err := json.Marshal(idx)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if want != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	w.Header().Set("Content-Type", rec.Header().Get("Content-Type"))
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}
