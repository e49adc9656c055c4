// Package registry is how ward reaches OCI registries: a Client with ward's
// rules (credentials from the environment or the Docker config file, plain
// HTTP only on loopback or when allowed, retries with backoff, timeouts),
// and Server, a real registry in this process (go-containerregistry's, with
// blobs on disk) that `ward demo` and the tests without services use in the
// place of the group's own. Package, deploy and the agent talk through it.
package registry

import (
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
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Server is an OCI registry (distribution API with the OCI 1.1 referrers
// API) on 127.0.0.1, with its blobs in a folder. Its manifests live in
// memory: they go when the server stops.
type Server struct {
	// Host is 127.0.0.1:PORT; images go to Host/REPO.
	Host string
	srv  *http.Server
	done chan error
}

// Start serves a registry on a free loopback port, keeping blobs in
// dir/blobs.
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
	s := &Server{
		Host: ln.Addr().String(),
		srv:  &http.Server{Handler: referrers{inner}, ReadHeaderTimeout: 30 * time.Second},
		done: make(chan error, 1),
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
	return err
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
