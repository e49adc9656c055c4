package image

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/tools/registry"
	"github.com/wardml/ward/tools/signing"
)

// The real model server, built once for both platforms.
var (
	serverOnce sync.Once
	serverBins *Server
	serverErr  error
)

func testServer(t testing.TB) *Server {
	t.Helper()
	testenv.LookPath(t, "go", "golang-go")
	serverOnce.Do(func() {
		serverBins, serverErr = BuildServer(context.Background(), "../..", DefaultServerPackage, Platforms)
	})
	if serverErr != nil {
		t.Fatal(serverErr)
	}
	return serverBins
}

var testTime = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// testModel is a model file in the artifact's JSON shape, with validation
// metrics: the image treats the model as bytes with metadata, so most tests
// need no fitted model (the runc test serves a real one).
func testModel(hospital, version string, intercept float64) Model {
	art, _ := json.Marshal(map[string]any{
		"format_version": 1, "hospital": hospital, "version": version, "family": "ridge",
		"intercept": intercept,
		"metrics":   map[string]any{"validation": map[string]any{"mae": 812.5, "rmse": 1400.25, "under_rate": 0.2}},
	})
	return Model{
		Hospital: hospital, Version: version, Family: "ridge",
		Metrics:  map[string]float64{"mae": 812.5, "rmse": 1400.25, "under_rate": 0.2},
		Artifact: art,
	}
}

func build(t testing.TB, m Model) *Image {
	t.Helper()
	img, err := Build(m, testServer(t), Created(testTime), Source("https://github.com/wardml/ward"), Revision("0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// target is a registry the tests push to, with a client that counts what
// it sends.
type target struct {
	name   string
	host   string
	meter  *registry.Meter
	client *registry.Client
}

func (tg target) remote() []remote.Option { return tg.client.Remote(context.Background()) }

func (tg target) repo(t testing.TB, path string) name.Repository {
	t.Helper()
	r, err := tg.client.Repository(tg.host, path)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newTarget(nameStr, host string) target {
	m := registry.NewMeter(nil)
	return target{name: nameStr, host: host, meter: m, client: registry.NewClient(registry.WithTransport(m))}
}

// eachRegistry runs f against the in-process registry (referrers API) and
// Debian's docker-registry (distribution 2.8: the tag-schema fallback).
func eachRegistry(t *testing.T, f func(t *testing.T, tg target)) {
	t.Run("in-process", func(t *testing.T) {
		srv, err := registry.Start(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		f(t, newTarget("in-process", srv.Host))
	})
	t.Run("docker-registry", func(t *testing.T) {
		r := testenv.StartRegistry(t)
		f(t, newTarget("docker-registry", r.Host))
	})
}

func testKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustDigest(t testing.TB, x interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	d, err := x.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(d)
}
