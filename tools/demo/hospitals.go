package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/ingest"
	"github.com/wardml/ward/pipelines/ingest/decrypt"
	"github.com/wardml/ward/pipelines/ingest/fetch"
	"github.com/wardml/ward/pipelines/ingest/staging"
	"github.com/wardml/ward/pipelines/store"
	"github.com/wardml/ward/serving"
)

// The hospitals' side of the demo: their own data (the plaintext group,
// loaded once into a database of theirs), the clients that ask their
// agent for predictions at pre-admission, and the prediction logs they
// upload beside their extracts.

// hospitalData loads the hospitals' own data, once.
func (d *Demo) hospitalData(ctx context.Context) (*store.Store, error) {
	if d.hospital != nil {
		return d.hospital, nil
	}
	s, err := store.Open(ctx, "sqlite:"+d.path("hospitals-own.db"))
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, func() { s.Close() })
	stage, err := staging.Open(d.path("hospitals-own-staging"))
	if err != nil {
		return nil, err
	}
	keys, err := decrypt.Load()
	if err != nil {
		return nil, err
	}
	sum := ingest.Run(ctx, d.plain, fetch.Dir(d.plainSFTP), s, stage, keys, ingest.WithSettle(time.Millisecond), ingest.WithLogger(d.o.Log))
	if errs := sum.Errors(); len(errs) > 0 {
		return nil, fmt.Errorf("the hospitals' own data: %v", errs)
	}
	d.hospital = s
	return s, nil
}

// predict has each hospital ask its agent for predictions of a sample of
// the cases admitted in month, as at pre-admission (no bill yet).
func (d *Demo) predict(ctx context.Context, month string) (string, error) {
	own, err := d.hospitalData(ctx)
	if err != nil {
		return "", err
	}
	total := 0
	for _, h := range d.plain {
		n, err := d.ask(ctx, own, h, month)
		if err != nil {
			return "", fmt.Errorf("%s: %w", h.ID, err)
		}
		total += n
	}
	return fmt.Sprintf("%d cases of %s sent to the agents' endpoints, each answered and logged", total, month), nil
}

// ask sends a hospital's sample of month's cases, as its client would:
// the fields the model's schema (GET /v1/model) names, and the case id.
func (d *Demo) ask(ctx context.Context, own *store.Store, h *contract.Hospital, month string) (int, error) {
	base := "http://" + d.agents[h.ID].addr
	var info serving.ModelInfo
	if err := getJSON(ctx, base+"/v1/model", &info); err != nil {
		return 0, err
	}
	data := own.Training(h)
	col := func(name string) int {
		return slices.IndexFunc(data.Columns, func(c models.Column) bool { return c.Name == name })
	}
	at, id := col(h.Training.TimeColumn), col(h.Training.ID)
	fields := make([]models.Column, len(info.Inputs))
	pick := make([]int, len(info.Inputs))
	for i, in := range info.Inputs {
		if pick[i] = col(in.Name); pick[i] < 0 {
			return 0, fmt.Errorf("the model wants %s, which the hospital's data lacks", in.Name)
		}
		fields[i] = data.Columns[pick[i]]
	}
	var cases []map[string]any
	for row, err := range data.Rows(ctx) {
		if err != nil {
			return 0, err
		}
		if row[at].Null || row[at].Time(data.Columns[at].Type).Format("2006-01") != month {
			continue
		}
		vals := make([]models.Value, len(pick))
		for i, j := range pick {
			vals[i] = row[j]
		}
		req := models.JSONFields(fields, vals)
		req[info.IDField] = row[id].Format(data.Columns[id].Type)
		cases = append(cases, req)
	}
	// An even sample of the month.
	if step := len(cases) / max(d.o.Sample, 1); d.o.Sample > 0 && step > 1 {
		var sample []map[string]any
		for i := 0; i < len(cases) && len(sample) < d.o.Sample; i += step {
			sample = append(sample, cases[i])
		}
		cases = sample
	}
	sent := len(cases)
	for len(cases) > 0 {
		n := min(len(cases), info.MaxBatch)
		body, err := json.Marshal(map[string]any{"instances": cases[:n]})
		if err != nil {
			return 0, err
		}
		var answer serving.PredictResponse
		if err := postJSON(ctx, base+"/v1/predict", body, &answer); err != nil {
			return 0, err
		}
		cases = cases[n:]
	}
	return sent, nil
}

// dropPredictions writes what a hospital's agent logged since the last drop
// into its drop box, encrypted as its extracts are, and returns the number
// of lines.
func (d *Demo) dropPredictions(h *contract.Hospital, month string) (int, error) {
	lines := d.agents[h.ID].log.take()
	if len(lines) == 0 {
		return 0, nil
	}
	name := "predictions_" + month + ".jsonl" + decrypt.Suffix(h.Inbound.Encryption)
	file := filepath.Join(d.dropbox, filepath.FromSlash(h.Inbound.Folder), name)
	f, err := os.Create(file)
	if err != nil {
		return 0, err
	}
	w, err := d.keys.Seal(f, h.Inbound.Encryption)
	if err == nil {
		_, err = w.Write(lines)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return bytes.Count(lines, []byte("\n")), err
}

// lineBuffer collects an agent's prediction log (whole lines).
type lineBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// take returns what was written since the last take.
func (b *lineBuffer) take() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := bytes.Clone(b.buf.Bytes())
	b.buf.Reset()
	return out
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	return doJSON(req, v)
}

func postJSON(ctx context.Context, url string, body []byte, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return doJSON(req, v)
}

func doJSON(req *http.Request, v any) error {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", req.Method, req.URL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL, resp.Status, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, v)
}
