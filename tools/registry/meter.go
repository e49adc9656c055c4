package registry

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
)

// Meter is a transport that counts what a client sends to registries:
// blobs uploaded and their bytes, and blobs mounted from another
// repository instead. The package benchmark and tests read it to prove
// that unchanged inputs upload nothing.
type Meter struct {
	next                  http.RoundTripper
	blobs, bytes, mounted atomic.Int64
}

// Sent is what a Meter counted.
type Sent struct {
	Blobs   int64 // blob uploads completed
	Bytes   int64 // bytes of blob content sent
	Mounted int64 // blobs mounted across repositories
}

// NewMeter counts what goes through next (nil: a default transport).
func NewMeter(next http.RoundTripper) *Meter {
	if next == nil {
		next = http.DefaultTransport
	}
	return &Meter{next: next}
}

// Sent returns the counts so far.
func (m *Meter) Sent() Sent {
	return Sent{Blobs: m.blobs.Load(), Bytes: m.bytes.Load(), Mounted: m.mounted.Load()}
}

// Reset sets the counts to zero.
func (m *Meter) Reset() { m.blobs.Store(0); m.bytes.Store(0); m.mounted.Store(0) }

func (m *Meter) RoundTrip(r *http.Request) (*http.Response, error) {
	upload := strings.Contains(r.URL.Path, "/blobs/uploads/")
	if upload && r.Body != nil && (r.Method == http.MethodPatch || r.Method == http.MethodPut || r.Method == http.MethodPost) {
		r.Body = &countingBody{ReadCloser: r.Body, n: &m.bytes}
	}
	resp, err := m.next.RoundTrip(r)
	if err != nil || !upload {
		return resp, err
	}
	switch {
	case r.Method == http.MethodPut && resp.StatusCode == http.StatusCreated:
		m.blobs.Add(1)
	case r.Method == http.MethodPost && r.URL.Query().Get("mount") != "" && resp.StatusCode == http.StatusCreated:
		m.mounted.Add(1)
	}
	return resp, nil
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}
