package synth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/ingest/decrypt"
	"github.com/wardml/ward/pipelines/store"
	"github.com/wardml/ward/serving"
)

// The hospitals' side of the loop after a deploy, for the demo and the
// tests: the client that asks a hospital's model endpoint for predictions
// at pre-admission, from the hospital's own data, and the prediction log
// it drops beside its next extracts.

// Case is one case of a hospital's own data as its client sends it at
// pre-admission.
type Case struct {
	// Inputs are the model's input fields (models.JSONFields), without the
	// case id.
	Inputs map[string]any
	// ID is the case id; At the time the contract's time_column holds.
	ID string
	At time.Time
	// Billed says whether its bill (the outcome) is known.
	Billed bool
}

// Cases reads hospital h's cases from st (its own data: the extracts in
// plaintext, loaded apart), with the inputs named, in the store's order;
// keep selects them by their time (a case without one is never sent).
func Cases(ctx context.Context, st *store.Store, h *contract.Hospital, inputs []string, keep func(time.Time) bool) iter.Seq2[Case, error] {
	return func(yield func(Case, error) bool) {
		data := st.Training(h)
		col := func(name string) int {
			return slices.IndexFunc(data.Columns, func(c models.Column) bool { return c.Name == name })
		}
		at, id, target := col(h.Training.TimeColumn), col(h.Training.ID), col(h.Training.Target)
		fields := make([]models.Column, len(inputs))
		pick := make([]int, len(inputs))
		for i, in := range inputs {
			if pick[i] = col(in); pick[i] < 0 {
				yield(Case{}, fmt.Errorf("the model wants %s, which the hospital's data lacks", in))
				return
			}
			fields[i] = data.Columns[pick[i]]
		}
		for row, err := range data.Rows(ctx) {
			if err != nil {
				yield(Case{}, err)
				return
			}
			if row[at].Null {
				continue
			}
			t := row[at].Time(data.Columns[at].Type)
			if !keep(t) {
				continue
			}
			vals := make([]models.Value, len(pick))
			for i, j := range pick {
				vals[i] = row[j]
			}
			c := Case{Inputs: models.JSONFields(fields, vals), ID: row[id].Format(data.Columns[id].Type), At: t,
				Billed: target >= 0 && !row[target].Null}
			if !yield(c, nil) {
				return
			}
		}
	}
}

// Client asks a hospital's model endpoint (ward serve, or the agent in
// front of it) for predictions, as the hospital's own software does.
type Client struct {
	// URL is the endpoint, http://host:port.
	URL string
	// Header is sent with every request.
	Header http.Header
}

// Model reads what the endpoint serves (GET /v1/model): the inputs its
// model takes, the case id's field and the largest batch.
func (c *Client) Model(ctx context.Context) (*serving.ModelInfo, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/v1/model", nil)
	if err != nil {
		return nil, err
	}
	var info serving.ModelInfo
	if err := c.do(req, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// Predict sends instances to POST /v1/predict, at most batch in a request.
func (c *Client) Predict(ctx context.Context, instances []map[string]any, batch int) error {
	for len(instances) > 0 {
		n := min(len(instances), max(batch, 1))
		body, err := json.Marshal(map[string]any{"instances": instances[:n]})
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL+"/v1/predict", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		var answer serving.PredictResponse
		if err := c.do(req, &answer); err != nil {
			return err
		}
		instances = instances[n:]
	}
	return nil
}

func (c *Client) do(req *http.Request, v any) error {
	for k, vs := range c.Header {
		req.Header[k] = vs
	}
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

// DropLog writes a prediction log (the model server's JSON lines) into
// hospital h's inbound folder of the drop box at box, as the hospital
// uploads it: named name plus its encryption's suffix, encrypted as its
// extracts are, for keys (nil when the hospital sends plaintext).
func DropLog(box string, h *contract.Hospital, name string, log []byte, keys *decrypt.Keys) error {
	file := filepath.Join(box, filepath.FromSlash(h.Inbound.Folder), name+decrypt.Suffix(h.Inbound.Encryption))
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	w, err := keys.Seal(f, h.Inbound.Encryption)
	if err == nil {
		_, err = w.Write(log)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
