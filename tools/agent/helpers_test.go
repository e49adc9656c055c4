package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardml/ward/internal/logging"
	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/models/modeltest"
	"github.com/wardml/ward/tools/image"
	"github.com/wardml/ward/tools/manifest"
	"github.com/wardml/ward/tools/registry"
	"github.com/wardml/ward/tools/signing"
)

// The real model server, built once for both platforms, as ward package
// puts it in every image.
var (
	serverOnce sync.Once
	serverBins *image.Server
	serverErr  error
)

func builtServer(t testing.TB) *image.Server {
	t.Helper()
	testenv.LookPath(t, "go", "golang-go")
	serverOnce.Do(func() {
		serverBins, serverErr = image.BuildServer(context.Background(), "../..", image.DefaultServerPackage, image.Platforms)
	})
	if serverErr != nil {
		t.Fatal(serverErr)
	}
	return serverBins
}

// fixture is a registry with st-olaf's images in it, the keys that sign
// them, and a manifest repo (a bare repo of the real git) that deploys
// them with the signature check of ward deploy.
type fixture struct {
	t       *testing.T
	host    string
	client  *registry.Client
	key     *ecdsa.PrivateKey
	other   *ecdsa.PrivateKey
	verify  manifest.Verifier
	remote  string
	repo    *manifest.Repo
	request []byte
	imgs    map[string]manifest.Image
	layers  map[string]string // version -> its model layer's digest
	// signWith signs the hand edits (a *testenv.GPGKey or *SSHKey; nil:
	// unsigned).
	signWith any
}

// inProcessRegistry starts ward's in-process registry and returns its host
// and blob folder.
func inProcessRegistry(t *testing.T) (host, dir string, stop func()) {
	t.Helper()
	dir = t.TempDir()
	srv, err := registry.Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { srv.Close() }) }
	t.Cleanup(stop)
	return srv.Host, dir, stop
}

func newFixture(t *testing.T, host string) *fixture {
	t.Helper()
	key, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	other, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	client := registry.NewClient()
	f := &fixture{t: t, host: host, client: client, key: key, other: other, verify: image.ManifestVerifier(client, &key.PublicKey),
		imgs: map[string]manifest.Image{}, layers: map[string]string{}}
	f.remote = testenv.BareRepo(t)
	f.repo, err = manifest.New(f.remote, manifest.WithVerifier(f.verify), manifest.WithAuthor("Ward CI <ci@ward.invalid>"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.repo.Init(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	fitted := modeltest.StOlaf(t, 400, 1, 1)
	f.request, err = json.Marshal(modeltest.Request(fitted.Artifact.Inputs, fitted.Valid[0].Row))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// model is a real st-olaf model of a version; level sets its bills, so
// that versions answer differently.
func model(t testing.TB, version string, level float64) []byte {
	t.Helper()
	return modelOf(t, "st-olaf", version, level)
}

// modelOf is the same model, saying it is hospital's.
func modelOf(t testing.TB, hospital, version string, level float64) []byte {
	t.Helper()
	fitted := modeltest.StOlaf(t, 400, 1, level)
	fitted.Artifact.Hospital, fitted.Artifact.Version = hospital, version
	data, err := fitted.Artifact.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// publish pushes st-olaf's image of a version with the artifact given,
// signed by signer (nil: unsigned).
func (f *fixture) publish(version string, artifact []byte, signer *ecdsa.PrivateKey) manifest.Image {
	f.t.Helper()
	return f.publishAs("st-olaf", version, artifact, signer)
}

// publishAs pushes an image that says it is hospital's.
func (f *fixture) publishAs(hospital, version string, artifact []byte, signer *ecdsa.PrivateKey) manifest.Image {
	t := f.t
	t.Helper()
	ctx := context.Background()
	repo, err := f.client.Repository(f.host, "ward/"+hospital)
	if err != nil {
		t.Fatal(err)
	}
	m := image.Model{Hospital: hospital, Version: version, Family: "ridge", Metrics: map[string]float64{"mae": 900}, Artifact: artifact}
	img, err := image.Build(m, builtServer(t), image.Created(time.Unix(1764504000, 0)))
	if err != nil {
		t.Fatal(err)
	}
	opts := []image.PublishOption{image.WithRemote(f.client.Remote(ctx)...)}
	if signer != nil {
		opts = append(opts, image.WithSigner(signer))
	}
	res, err := image.NewPublisher(opts...).Publish(ctx, repo, img, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.ModelLayer.Digest()
	if err != nil {
		t.Fatal(err)
	}
	f.layers[version] = d.String()
	i := manifest.Image{Ref: res.Ref.Context().Name() + "@" + res.Ref.DigestStr(), Digest: res.Ref.DigestStr(), Hospital: hospital, Version: version}
	f.imgs[version] = i
	return i
}

func (f *fixture) deploy(version string, force bool) (*manifest.Result, error) {
	f.t.Helper()
	return f.repo.Deploy(context.Background(), manifest.Deployment{Hospital: "st-olaf", Image: f.imgs[version].Ref, Force: force})
}

func (f *fixture) mustDeploy(version string) {
	f.t.Helper()
	res, err := f.deploy(version, false)
	if err != nil || res.Status != manifest.StatusCommitted {
		f.t.Fatalf("deploy %s: %+v, %v", version, res, err)
	}
}

// handEdit commits a change of st-olaf's folder made by hand with the
// real git (clone, edit, commit, push), as a person would.
func (f *fixture) handEdit(msg string, edit func(dir string)) string {
	t := f.t
	t.Helper()
	dir := filepath.Join(t.TempDir(), "clone")
	testenv.Git(t, "", "clone", "--quiet", f.remote, dir)
	edit(filepath.Join(dir, manifest.HospitalDir("st-olaf")))
	testenv.GitSigned(t, dir, f.signWith, "commit", "--quiet", "-am", msg)
	testenv.Git(t, dir, "push", "--quiet", "origin", "main")
	return testenv.Git(t, f.remote, "rev-parse", "main")
}

// pinByHand writes st-olaf's two files by hand so that they pin img.
func (f *fixture) pinByHand(img manifest.Image) string {
	f.t.Helper()
	return f.handEdit("st-olaf: "+img.Version+" by hand", func(dir string) {
		k := filepath.Join(dir, manifest.KustomizationFile)
		replaceIn(f.t, k, `digest: sha256:[0-9a-f]{64}`, "digest: "+img.Digest)
		replaceIn(f.t, k, `newName: \S+`, "newName: "+strings.Split(img.Ref, "@")[0])
		rel := filepath.Join(dir, manifest.ReleaseFile)
		replaceIn(f.t, rel, `image: \S+`, "image: "+img.Ref)
		replaceIn(f.t, rel, `(?m)^digest: \S+`, "digest: "+img.Digest)
		replaceIn(f.t, rel, `(?m)^version: \S+`, "version: "+img.Version)
	})
}

// agentRun is an agent running on a loopback port.
type agentRun struct {
	*Agent
	url   string
	data  string
	out   *lockedBuffer // the prediction log
	logs  *lockedBuffer // the agent's and the servers' logs
	stop  func() error
	ended chan error
}

// startAgent runs an agent of st-olaf that follows f's manifest with the
// data folder given ("" for a new one).
func (f *fixture) startAgent(data string, opts ...Option) *agentRun {
	t := f.t
	t.Helper()
	if data == "" {
		data = t.TempDir()
	}
	repo, err := manifest.New(f.remote)
	if err != nil {
		t.Fatal(err)
	}
	r := &agentRun{data: data, out: &lockedBuffer{}, logs: &lockedBuffer{}, ended: make(chan error, 1)}
	log := logging.New(r.logs, logging.Options{Format: "json", Level: "debug"})
	base := []Option{WithData(data), WithPoll(200 * time.Millisecond), WithPredictionLog(r.out), WithServerLog(r.logs),
		WithLogger(log), WithRegistry(f.client), WithEnviron(nil), WithReadyTimeout(20 * time.Second), WithDrainTimeout(10 * time.Second)}
	r.Agent, err = New("st-olaf", repo, f.verify, append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.url = "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { r.ended <- r.Run(ctx, ln) }()
	var once sync.Once
	var runErr error
	r.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-r.ended:
			case <-time.After(60 * time.Second):
				runErr = errors.New("the agent did not stop within 60s")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("agent and server logs:\n%s", r.logs.String())
		}
	})
	return r
}

// waitFor polls cond until it holds, or fails the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// answer POSTs the case to the front endpoint and returns the model
// version that answered.
func answer(client *http.Client, url string, body []byte) (string, error) {
	resp, err := client.Post(url+"/v1/predict", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(data)))
	}
	var a struct {
		ModelVersion string  `json:"model_version"`
		Prediction   float64 `json:"prediction"`
	}
	if err := json.Unmarshal(data, &a); err != nil {
		return "", err
	}
	return a.ModelVersion, nil
}

// waitServing waits until the front endpoint answers with version.
func (r *agentRun) waitServing(t testing.TB, f *fixture, version string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "the agent to serve "+version, func() bool {
		v, err := answer(http.DefaultClient, r.url, f.request)
		return err == nil && v == version
	})
}

// waitFailure waits until the status shows a failure at step after since.
func (r *agentRun) waitFailure(t testing.TB, step string, since time.Time) Failure {
	t.Helper()
	var got Failure
	waitFor(t, 30*time.Second, "a failure at step "+step, func() bool {
		st := r.Status()
		if st.LastError == nil || st.LastError.At.Before(since) {
			return false
		}
		got = *st.LastError
		return got.Step == step
	})
	return got
}

// load is a load generator: workers POST the case to the front endpoint
// over keep-alive connections, one request after the other, and record
// what answered.
type load struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	ok      int
	failed  []string
	seen    map[string]int
	backErr []string // a worker that saw an older version after a newer one
}

func startLoad(url string, body []byte, workers int, order []string) *load {
	l := &load{stop: make(chan struct{}), seen: map[string]int{}}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}, Timeout: 30 * time.Second}
	rank := map[string]int{}
	for i, v := range order {
		rank[v] = i
	}
	for w := range workers {
		l.wg.Go(func() {
			highest := -1
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				v, err := answer(client, url, body)
				l.mu.Lock()
				switch {
				case err != nil:
					l.failed = append(l.failed, err.Error())
				default:
					l.ok++
					l.seen[v]++
					if rank[v] < highest {
						l.backErr = append(l.backErr, fmt.Sprintf("worker %d: %s after %s", w, v, order[highest]))
					}
					highest = max(highest, rank[v])
				}
				l.mu.Unlock()
			}
		})
	}
	return l
}

// end stops the load and checks that every request was answered, by the
// versions in order.
func (l *load) end(t testing.TB, versions ...string) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	t.Logf("load: %d requests answered %v, %d failed", l.ok, l.seen, len(l.failed))
	if len(l.failed) > 0 {
		t.Errorf("%d requests failed, first: %s", len(l.failed), l.failed[0])
	}
	for _, v := range versions {
		if l.seen[v] == 0 {
			t.Errorf("no request answered by %s: %v", v, l.seen)
		}
	}
	if len(l.backErr) > 0 {
		t.Errorf("answers went back to an older version: %v", l.backErr[0])
	}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func replaceIn(t testing.TB, file, pattern, with string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(pattern)
	if !re.Match(data) {
		t.Fatalf("%s has no %s:\n%s", file, pattern, data)
	}
	if err := os.WriteFile(file, re.ReplaceAllLiteral(data, []byte(with)), 0o644); err != nil {
		t.Fatal(err)
	}
}
