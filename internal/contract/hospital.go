// Package contract loads a hospital's contract, hospitals/<id>/hospital.yaml:
// what the hospital sends (folders, encryption, tables and their columns),
// what ward rejects, and how its model is trained, gated and shipped. Every
// stage of the loop reads it; schemas and features are configuration, so a
// new hospital is a new YAML file, never a code change. The schema is
// documented in hospitals/README.md.
package contract

import (
	"fmt"
	"regexp"
)

// FileName is the name of a contract inside its hospital's folder.
const FileName = "hospital.yaml"

// Hospital is one hospital's contract.
type Hospital struct {
	ID         string     `yaml:"id"`
	Name       string     `yaml:"name"`
	Inbound    Inbound    `yaml:"inbound"`
	Tables     []Table    `yaml:"tables"`
	Thresholds Thresholds `yaml:"thresholds"`
	Training   Training   `yaml:"training"`
	Serving    Serving    `yaml:"serving"`
	Feedback   Feedback   `yaml:"feedback"`
	Image      Image      `yaml:"image"`
	Reports    Reports    `yaml:"reports"`

	// Path is the file the contract was read from; Hash is the SHA-256 of
	// its bytes (lineage of every model trained under it).
	Path string `yaml:"-"`
	Hash string `yaml:"-"`
	// Dir is the folder of the contract; relative paths inside it (keys)
	// are resolved against it.
	Dir string `yaml:"-"`
}

// normalize fills in the defaults and checks the contract, section by
// section in the order of the file; each section's own checks live in the
// file named for it.
func (h *Hospital) normalize() error {
	if !idPattern.MatchString(h.ID) {
		return fmt.Errorf("id %q: want lower-case letters, digits and dashes, starting with a letter or digit", h.ID)
	}
	if h.Name == "" {
		h.Name = h.ID
	}
	if err := h.Inbound.normalize(h.ID); err != nil {
		return err
	}
	if err := h.normalizeTables(); err != nil {
		return err
	}
	if err := h.Thresholds.normalize(); err != nil {
		return fmt.Errorf("thresholds: %w", err)
	}
	if err := h.normalizeTraining(); err != nil {
		return fmt.Errorf("training: %w", err)
	}
	if err := h.Serving.normalize(); err != nil {
		return err
	}
	if err := h.Feedback.normalize(); err != nil {
		return err
	}
	return h.Image.normalize(h.ID)
}

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Serving holds the settings of the hospital's model server.
type Serving struct {
	// HashInputs replaces the inputs in prediction logs with a keyed hash.
	HashInputs bool `yaml:"hash_inputs"`
	// MaxBatch is the most instances one request may hold (default 100).
	MaxBatch int `yaml:"max_batch"`
}

func (s *Serving) normalize() error {
	if s.MaxBatch == 0 {
		s.MaxBatch = 100
	}
	if s.MaxBatch < 0 {
		return fmt.Errorf("serving: max_batch %d is negative", s.MaxBatch)
	}
	return nil
}

// Feedback says when a live model is degraded.
type Feedback struct {
	// Degradation flags a model whose live MAE exceeds its validation MAE
	// by this fraction (default 0.25).
	Degradation *float64 `yaml:"degradation"`
	// MinCases is the fewest joined cases before a verdict (default 50).
	MinCases int `yaml:"min_cases"`
	// OnDegraded is what ward feedback --apply does about a degraded
	// current model: rollback (a revert commit), alert (exit code 4) or
	// none (reported only). Default alert.
	OnDegraded string `yaml:"on_degraded"`
	// OnDrift is what it does about a drifted one: retrain (the next
	// ward train takes the hospital first), alert or none. Default alert.
	OnDrift string `yaml:"on_drift"`
}

// The feedback policies.
const (
	PolicyRollback = "rollback"
	PolicyRetrain  = "retrain"
	PolicyAlert    = "alert"
	PolicyNone     = "none"
)

func (f *Feedback) normalize() error {
	if f.Degradation == nil {
		f.Degradation = ptr(0.25)
	}
	if *f.Degradation <= 0 {
		return fmt.Errorf("feedback: degradation %v must be above 0", *f.Degradation)
	}
	if f.MinCases == 0 {
		f.MinCases = 50
	}
	if err := policy(&f.OnDegraded, "on_degraded", PolicyRollback); err != nil {
		return err
	}
	return policy(&f.OnDrift, "on_drift", PolicyRetrain)
}

// policy defaults a feedback policy to alert and checks it is act, alert
// or none.
func policy(p *string, key, act string) error {
	switch *p {
	case "":
		*p = PolicyAlert
	case act, PolicyAlert, PolicyNone:
	default:
		return fmt.Errorf("feedback: %s %q: want %s, %s or %s", key, *p, act, PolicyAlert, PolicyNone)
	}
	return nil
}

// Image says where the hospital's images go.
type Image struct {
	// Repository under WARD_REGISTRY; default "ward/<id>".
	Repository string `yaml:"repository"`
}

func (im *Image) normalize(id string) error {
	if im.Repository == "" {
		im.Repository = "ward/" + id
	}
	if !repoPattern.MatchString(im.Repository) {
		return fmt.Errorf("image: repository %q: want lower-case path components like ward/%s", im.Repository, id)
	}
	return nil
}

var repoPattern = regexp.MustCompile(`^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$`)

// Reports says what validation reports and log lines may show.
type Reports struct {
	// ShowValues quotes the failing cells (capped at MaxShownValue bytes);
	// by default reports and logs name the row, column and rule only, and
	// the values stay in the encrypted rejected-rows file.
	ShowValues bool `yaml:"show_values"`
}

// MaxShownValue is the most bytes of a cell a report shows.
const MaxShownValue = 64

func ptr[T any](v T) *T { return &v }
