package serving

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardml/ward/models"
)

// model is a loaded artifact with what the server says about it. A Model
// is never changed once loaded: a swap replaces the whole value, so a
// request that holds one finishes on it.
type model struct {
	*models.Artifact
	// Digest names the model in logs and answers: the image digest the
	// server was given for it, else "sha256:" and the SHA-256 of its file.
	Digest string
	// FileSHA256 is the SHA-256 of the artifact file, hex.
	FileSHA256 string
	Path       string
	LoadedAt   time.Time

	// info is the body of GET /v1/model, encoded once before the swap.
	info []byte
	// input is the position of each input by name.
	input map[string]int
	// names holds each input's name, for flatObject.
	names map[string]string
	// batchKey says whether "instances" marks a batch: not when the model
	// has an input of that name.
	batchKey bool
	// predictions counts the model's predictions (set when it serves).
	predictions prometheus.Counter
}

// loadModel reads and checks an artifact file; its digest is its file's
// SHA-256 until the server says otherwise.
func loadModel(path string) (*model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	a, err := models.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	sum := sha256.Sum256(data)
	m := &model{Artifact: a, FileSHA256: hex.EncodeToString(sum[:]), Path: path, LoadedAt: time.Now().UTC(), input: map[string]int{}, names: map[string]string{}}
	m.Digest = "sha256:" + m.FileSHA256
	for i, c := range a.Inputs {
		m.input[c.Name] = i
		m.names[c.Name] = c.Name
	}
	_, hasInstances := m.input["instances"]
	m.batchKey = !hasInstances
	return m, nil
}

// ModelInfo is the answer of GET /v1/model: what the model is, how well it
// did, and what to send it.
type ModelInfo struct {
	Hospital      string                       `json:"hospital"`
	Version       string                       `json:"version"`
	Digest        string                       `json:"digest"`
	FileSHA256    string                       `json:"file_sha256"`
	Family        string                       `json:"family"`
	FormatVersion int                          `json:"format_version"`
	LoadedAt      time.Time                    `json:"loaded_at"`
	Target        models.Target                `json:"target"`
	Calibration   *models.Calibration          `json:"calibration,omitempty"`
	Metrics       map[string]models.Evaluation `json:"metrics"`
	Training      models.Training              `json:"training"`
	Lineage       models.Lineage               `json:"lineage"`
	// Inputs is the input schema: each field's type, whether it is
	// required, its range and allowed values, and the categorical levels
	// the model knows (any other value is accepted and counts as other).
	// Dates and timestamps are sent in Format, whatever the extracts use.
	Inputs []models.InputField `json:"inputs"`
	// IDField is the field that may carry the case id; MaxBatch the most
	// instances one request may hold.
	IDField  string `json:"id_field"`
	MaxBatch int    `json:"max_batch"`
}

// describe encodes the model's ModelInfo, once per load.
func (m *model) describe(idField string, maxBatch int) error {
	inputs := m.Schema()
	for i := range inputs {
		switch inputs[i].Type {
		case models.Date:
			inputs[i].Format = "YYYY-MM-DD"
		case models.Timestamp:
			inputs[i].Format = "RFC 3339"
		}
	}
	info, err := json.Marshal(ModelInfo{
		Hospital: m.Hospital, Version: m.Version, Digest: m.Digest, FileSHA256: m.FileSHA256,
		Family: m.Family, FormatVersion: m.FormatVersion, LoadedAt: m.LoadedAt,
		Target: m.Target, Calibration: m.Calibration, Metrics: m.Metrics,
		Training: m.Training, Lineage: m.Lineage, Inputs: inputs,
		IDField: idField, MaxBatch: maxBatch,
	})
	if err != nil {
		return fmt.Errorf("model %s: %w", m.Path, err)
	}
	m.info = info
	return nil
}
