package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/wardml/ward/models"
	"github.com/wardml/ward/models/trained"
)

// ErrGateFailed: training's gate judged the model worse than the one in
// production; such a model ships only when someone forces it.
var ErrGateFailed = errors.New("the model failed its gate")

// Trained is a model as ward train leaves it in a folder: model.json, an
// optional MODEL_CARD.md, and the report/ folder that goes beside the image.
type Trained struct {
	Model  Model
	Report Report
	// Gate is the gate ward train recorded in report/metrics.json (nil
	// without a record).
	Gate *trained.Gate
}

// ReadTrained reads the model file and what lies beside it: the card
// (cardFile, else MODEL_CARD.md beside the model; a missing default is no
// card) and the report (reportDir, else report/ beside the model; a missing
// default is no report). The artifact is checked as the server will check
// it when it starts, so that an image never carries a model it cannot
// serve.
func ReadTrained(modelFile, cardFile, reportDir string) (*Trained, error) {
	b, err := os.ReadFile(modelFile)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	a, err := models.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", modelFile, err)
	}
	val := a.Metrics["validation"]
	t := &Trained{Model: Model{Hospital: a.Hospital, Version: a.Version, Family: a.Family, Artifact: b, Metrics: map[string]float64{
		"mae": val.MAE, "rmse": val.RMSE, "under_rate": val.UnderRate, "count": float64(val.Count),
	}}}
	if val.MAPE != nil {
		t.Model.Metrics["mape"] = *val.MAPE
	}
	dir := filepath.Dir(modelFile)
	card := cardFile
	if card == "" {
		card = filepath.Join(dir, trained.CardFile)
	}
	if b, err := os.ReadFile(card); err == nil {
		t.Model.Card = b
	} else if cardFile != "" {
		return nil, fmt.Errorf("model card: %w", err)
	}
	rep := reportDir
	if rep == "" {
		rep = filepath.Join(dir, trained.ReportDir)
	}
	if t.Report, err = readReport(rep, reportDir != ""); err != nil {
		return nil, err
	}
	if b, ok := t.Report[trained.MetricsFile]; ok {
		var m struct {
			Gate *trained.Gate `json:"gate"`
		}
		if json.Unmarshal(b, &m) == nil {
			t.Gate = m.Gate
		}
	}
	return t, nil
}

// GateError is ErrGateFailed with the gate's reason, when the recorded gate
// failed; nil otherwise.
func (t *Trained) GateError() error {
	if t.Gate == nil || t.Gate.Passed {
		return nil
	}
	return fmt.Errorf("%w: %s (see %s/%s)", ErrGateFailed, t.Gate.Reason, trained.ReportDir, trained.MetricsFile)
}

// readReport reads the report files of dir (not its subfolders); a missing
// folder is no report, unless it was asked for.
func readReport(dir string, required bool) (Report, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) && !required {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	rep := Report{}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
		rep[e.Name()] = b
	}
	return rep, nil
}
