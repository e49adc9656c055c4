package demo

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/pipelines/ingest"
	"github.com/wardml/ward/pipelines/ingest/decrypt"
	"github.com/wardml/ward/pipelines/ingest/fetch"
	"github.com/wardml/ward/pipelines/ingest/staging"
	"github.com/wardml/ward/pipelines/store"
	"github.com/wardml/ward/pipelines/synth"
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

// ask sends a hospital's sample of month's cases, as its client would
// (synth.Client): the fields the model's schema (GET /v1/model) names, and
// the case id.
func (d *Demo) ask(ctx context.Context, own *store.Store, h *contract.Hospital, month string) (int, error) {
	client := &synth.Client{URL: "http://" + d.agents[h.ID].addr}
	info, err := client.Model(ctx)
	if err != nil {
		return 0, err
	}
	inputs := make([]string, len(info.Inputs))
	for i, in := range info.Inputs {
		inputs[i] = in.Name
	}
	var cases []map[string]any
	for c, err := range synth.Cases(ctx, own, h, inputs, func(t time.Time) bool { return t.Format("2006-01") == month }) {
		if err != nil {
			return 0, err
		}
		c.Inputs[info.IDField] = c.ID
		cases = append(cases, c.Inputs)
	}
	// An even sample of the month.
	if step := len(cases) / max(d.o.Sample, 1); d.o.Sample > 0 && step > 1 {
		var sample []map[string]any
		for i := 0; i < len(cases) && len(sample) < d.o.Sample; i += step {
			sample = append(sample, cases[i])
		}
		cases = sample
	}
	if err := client.Predict(ctx, cases, info.MaxBatch); err != nil {
		return 0, err
	}
	return len(cases), nil
}

// dropPredictions writes what a hospital's agent logged since the last drop
// into its drop box, encrypted as its extracts are, and returns the number
// of lines.
func (d *Demo) dropPredictions(h *contract.Hospital, month string) (int, error) {
	lines := d.agents[h.ID].log.take()
	if len(lines) == 0 {
		return 0, nil
	}
	if err := synth.DropLog(d.dropbox, h, "predictions_"+month+".jsonl", lines, d.keys); err != nil {
		return 0, err
	}
	return bytes.Count(lines, []byte("\n")), nil
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
