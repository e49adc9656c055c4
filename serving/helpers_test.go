package serving_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/logging"
	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/serving"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fitted is a model trained as the training pipeline trains one, with the
// validation cases and the predictions training made for them.
type fitted struct {
	artifact *models.Artifact
	data     []byte
	valid    []models.Case
	// predicted holds training's predictions of the validation cases.
	predicted []models.Prediction
}

// fitStOlaf fits a model in the st-olaf contract's shape (numeric,
// categorical with rare levels, a date; log target, calibrated) on n
// synthetic cases; seeds give different models.
func fitStOlaf(t testing.TB, n int, seed uint64) fitted {
	t.Helper()
	h, err := contract.Load("../internal/contract/testdata/st-olaf/hospital.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec := specFor(t, h)
	col := map[string]int{}
	for i, c := range spec.Inputs {
		col[c.Name] = i
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	specialties := []string{"cardiology", "orthopaedics", "general surgery", "oncology", "obstetrics", "neurology"}
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	cutoff := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	var train, valid []models.Case
	for i := range n {
		row := make([]models.Value, len(spec.Inputs))
		age, los := float64(rng.IntN(90)+1), float64(rng.IntN(14))
		ward := rng.IntN(4)
		sp := rng.IntN(len(specialties))
		doctor := rng.IntN(40) * rng.IntN(3) // some doctors are rare: other
		emergency := rng.IntN(3) == 0
		day := start.AddDate(0, 0, i*540/n)
		row[col["age"]] = models.Number(age)
		if rng.IntN(50) == 0 {
			row[col["age"]] = models.Missing
		}
		row[col["planned_los"]] = models.Number(los)
		row[col["comorbidities"]] = models.Number(float64(rng.IntN(6)))
		row[col["admission_type"]] = models.Text(map[bool]string{true: "emergency", false: "elective"}[emergency])
		row[col["ward_class"]] = models.Text([]string{"A", "B1", "B2", "C"}[ward])
		row[col["specialty"]] = models.Text(specialties[sp])
		row[col["doctor_id"]] = models.Text(fmt.Sprintf("D%03d", doctor))
		row[col["sex"]] = models.Text([]string{"F", "M"}[rng.IntN(2)])
		row[col["insurance"]] = models.Text([]string{"public", "private", "self"}[rng.IntN(3)])
		row[col["admitted_at"]] = models.DateValue(day)
		logBill := 7 + 0.008*age + 0.35*math.Log1p(los) + 0.2*float64(3-ward) + 0.1*float64(sp) + 0.2*rng.NormFloat64()
		if emergency {
			logBill += 0.3
		}
		c := models.Case{Row: row, Target: models.Number(math.Round(math.Exp(logBill)*100) / 100),
			Segments: []string{[]string{"A", "B1", "B2", "C"}[ward], map[bool]string{true: "emergency", false: "elective"}[emergency]}}
		if day.Before(cutoff) {
			train = append(train, c)
		} else {
			valid = append(valid, c)
		}
	}
	return fit(t, spec, train, valid)
}

// fit fits a spec as training does, and keeps training's predictions of
// the validation cases.
func fit(t testing.TB, spec models.Spec, train, valid []models.Case) fitted {
	t.Helper()
	a, err := models.Fit(spec, casesOf(train), casesOf(valid))
	if err != nil {
		t.Fatal(err)
	}
	data, err := a.Encode()
	if err != nil {
		t.Fatal(err)
	}
	f := fitted{artifact: a, data: data, valid: valid}
	for _, c := range valid {
		p, err := a.Predict(nil, c.Row)
		if err != nil {
			t.Fatal(err)
		}
		f.predicted = append(f.predicted, p)
	}
	return f
}

func casesOf(cs []models.Case) models.Cases {
	return func(yield func(models.Case, error) bool) {
		for _, c := range cs {
			if !yield(c, nil) {
				return
			}
		}
	}
}

// specFor resolves a contract's training section, as the training
// pipeline does.
func specFor(t testing.TB, h *contract.Hospital) models.Spec {
	t.Helper()
	tr := h.Training
	inputs, err := models.InputsFor(h.InputColumns(), tr.Features)
	if err != nil {
		t.Fatal(err)
	}
	return models.Spec{
		Hospital: h.ID, Inputs: inputs, Features: tr.Features,
		Target: tr.Target, TargetTransform: tr.TargetTransform, Lambdas: tr.Model.Lambdas,
		UnderRate: tr.Calibration.UnderRate, MinRows: tr.MinRows, Segments: tr.Segments,
		Lineage: models.Lineage{
			Files:    []models.File{{Name: h.ID + "/cases_2026-06.csv.gpg", SHA256: strings.Repeat("ab", 32)}},
			Contract: h.Hash, Ward: "test",
		},
	}
}

// caseJSON renders a row as a request's JSON object: numbers as JSON
// numbers (their shortest text, which reads back to the same bits),
// booleans, strings, dates in their canonical text; missing values left
// out.
func caseJSON(inputs []models.Column, row []models.Value) map[string]any {
	out := map[string]any{}
	for i, c := range inputs {
		v := row[i]
		switch {
		case v.Null:
		case c.Type == models.Bool:
			out[c.Name] = v.Num != 0
		case c.Type == models.Int || c.Type == models.Float:
			out[c.Name] = v.Num
		default:
			out[c.Name] = v.Format(c.Type)
		}
	}
	return out
}

// writeModel writes an artifact where the server reads it, atomically, as
// the agent does (a rename into place).
func writeModel(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// config returns the default settings, as the flags give them, for the
// model at path.
func config(t testing.TB, path string) serving.Config {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	flags := serving.BindFlags(fs)
	if err := fs.Parse([]string{"--model", path}); err != nil {
		t.Fatal(err)
	}
	cfg, err := flags.Config(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = "127.0.0.1:0"
	cfg.Watch = 0
	return cfg
}

// lockedBuffer collects the prediction log.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the log lines written so far, decoded.
func (b *lockedBuffer) lines(t testing.TB) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	return decodeLines(t, b.buf.Bytes())
}

func decodeLines(t testing.TB, data []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		d := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			t.Fatalf("prediction log line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// server is a running in-process server.
type server struct {
	*serving.Server
	url  string
	log  *lockedBuffer
	ops  *lockedBuffer // the server's own logs
	stop context.CancelFunc
	done chan error
}

// start serves cfg's model on a loopback port until the test ends; the
// prediction log goes to s.log, unless stdout says otherwise.
func start(t testing.TB, cfg serving.Config, stdout ...io.Writer) *server {
	t.Helper()
	s := &server{log: &lockedBuffer{}, ops: &lockedBuffer{}, done: make(chan error, 1)}
	out := io.Writer(s.log)
	if len(stdout) > 0 {
		out = stdout[0]
	}
	srv, err := serving.New(cfg, serving.WithStdout(out), serving.WithLogger(testLogger(s.ops)))
	if err != nil {
		t.Fatal(err)
	}
	s.Server = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.url = "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	go func() { s.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-s.done; err != nil {
			t.Errorf("serve: %v", err)
		}
		s.done <- nil // later calls of shutdown see it stopped
	})
	return s
}

// logged waits until the prediction log holds n lines (its writer runs
// behind the answers), and returns them; more than n fails.
func (s *server) logged(t *testing.T, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		lines := s.log.lines(t)
		switch {
		case len(lines) > n:
			t.Fatalf("%d prediction log lines, want %d", len(lines), n)
		case len(lines) == n:
			return lines
		case time.Now().After(deadline):
			t.Fatalf("%d prediction log lines after 10 s, want %d", len(lines), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// shutdown stops the server and returns what Serve returned.
func (s *server) shutdown() error {
	s.stop()
	err := <-s.done
	s.done <- err
	return err
}

// post sends a JSON body to /v1/predict and decodes the answer.
func (s *server) post(t testing.TB, body any, header ...string) (int, map[string]any) {
	t.Helper()
	var data []byte
	switch b := body.(type) {
	case string:
		data = []byte(b)
	case []byte:
		data = b
	default:
		var err error
		if data, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequest("POST", s.url+"/v1/predict", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, decodeBody(t, resp.Body)
}

func (s *server) get(t testing.TB, path string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(s.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, decodeBody(t, resp.Body)
}

func (s *server) metrics(t testing.TB) string {
	t.Helper()
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func decodeBody(t testing.TB, r io.Reader) map[string]any {
	t.Helper()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("answer %q is not a JSON object: %v", data, err)
	}
	return m
}

// num reads a JSON number to its float64 bits.
func num(t testing.TB, v any) float64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%v (%T) is not a number", v, v)
	}
	f, err := n.Float64()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// modelFile writes an artifact into a fresh folder and returns its path.
func modelFile(t testing.TB, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "model.json")
	writeModel(t, path, data)
	return path
}

var (
	stOlafOnce sync.Once
	stOlafA    fitted
	stOlafB    fitted
)

// stOlaf returns two st-olaf models, fitted once per test binary.
func stOlaf(t testing.TB) (a, b fitted) {
	t.Helper()
	stOlafOnce.Do(func() {
		stOlafA = fitStOlaf(t, 4000, 1)
		stOlafB = fitStOlaf(t, 4000, 2)
	})
	if stOlafA.artifact == nil || stOlafA.artifact.Version == stOlafB.artifact.Version {
		t.Fatal("the two test models did not fit, or are the same")
	}
	return stOlafA, stOlafB
}

func testLogger(w io.Writer) *slog.Logger {
	return logging.New(w, logging.Options{Format: "json", Level: "debug", Service: serving.ServiceName})
}

func (b *lockedBuffer) text() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newServer(cfg serving.Config) (*serving.Server, error) {
	return serving.New(cfg, serving.WithStdout(io.Discard))
}
