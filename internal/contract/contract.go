// Package contract loads a hospital's contract, hospitals/<id>/hospital.yaml:
// what the hospital sends (folders, encryption, tables and their columns),
// what ward rejects, and how its model is trained, gated and shipped. Every
// stage of the loop reads it; schemas and features are configuration, so a
// new hospital is a new YAML file, never a code change. The schema is
// documented in hospitals/README.md.
package contract

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/wardml/ward/models"
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

// Inbound says where and how the hospital drops its extracts.
type Inbound struct {
	// Folder on the SFTP server, relative to WARD_SFTP's base path (and to
	// --from for local backfills). Default "<id>/inbound".
	Folder string `yaml:"folder"`
	// Encryption of the extracts: none, openpgp or age. Binary and
	// ASCII-armored files are both accepted.
	Encryption string `yaml:"encryption"`
	// SignedBy, when set, is the hospital's OpenPGP public key (a path
	// relative to the contract); every extract must carry a valid
	// signature by it.
	SignedBy string `yaml:"signed_by"`
	// Ready says when a file on the server is complete: "marker" (a
	// NAME.done file beside it), "stable" (same size and mtime in two
	// listings) or "either" (default).
	Ready string `yaml:"ready"`
	// Predictions is the file pattern of the prediction logs the hospital
	// drops beside its extracts (the server's JSON lines). Optional.
	Predictions string `yaml:"predictions"`
	// Limits bound the bytes one extract may decompress into.
	Limits Limits `yaml:"limits"`
}

// Table is one table of the hospital's extracts.
type Table struct {
	Name string `yaml:"name"`
	// Pattern matches the file names of this table's extracts (path.Match
	// syntax, e.g. "cases_*.csv.gpg").
	Pattern string `yaml:"pattern"`
	// Format is csv or parquet; default from the file name.
	Format string `yaml:"format"`
	// Delimiter of a CSV file; default ",".
	Delimiter string `yaml:"delimiter"`
	// Key columns: unique within a file, and the upsert key in the
	// database (a correction file that re-sends a key replaces the row).
	Key     []string        `yaml:"key"`
	Columns []models.Column `yaml:"columns"`
	// Joins from this table to others (training joins them into one row).
	Joins []Join `yaml:"joins"`
	// TimeColumn orders the table's rows in time (freshness checks).
	TimeColumn string `yaml:"time_column"`
	// Strict refuses a file with columns the contract does not name
	// (default true); false ignores them.
	Strict *bool `yaml:"strict"`
	// Period is a regular expression whose one group finds the period
	// an extract covers in its name (default DefaultPeriod): a late
	// extract of an older period never replaces newer rows.
	Period   string         `yaml:"period"`
	periodRE *regexp.Regexp `yaml:"-"`
}

// Join links a table to another by columns of the same values.
type Join struct {
	Table string `yaml:"table"`
	// On maps this table's columns to the other's ({patient_id: patient_id}).
	On map[string]string `yaml:"on"`
}

// Thresholds say when ward rejects rows and files.
type Thresholds struct {
	// MaxRejectedRows is the fraction of a file's rows that may be
	// rejected before the whole file is quarantined (default 0.05).
	MaxRejectedRows *float64 `yaml:"max_rejected_rows"`
	// MaxErrors caps the failures collected per file (default 1000).
	MaxErrors int `yaml:"max_errors"`
	// RowCountRatio quarantines a file whose row count is more than this
	// many times larger, or smaller, than the previous extract of the same
	// table (default 0: no check).
	RowCountRatio float64 `yaml:"row_count_ratio"`
	// MaxStaleness quarantines a file whose newest time-column value is
	// older than the newest already loaded for that table by more than
	// this period (default: no check). A correction file is exempt.
	MaxStaleness Period `yaml:"max_staleness"`
	// Corrections is the pattern of file names that re-send rows (exempt
	// from the row-count and staleness checks). Default "*correction*".
	Corrections string `yaml:"corrections"`
}

// Training says how the hospital's model is trained.
type Training struct {
	// Table is the main table (one row per case); default "cases".
	Table  string `yaml:"table"`
	Target string `yaml:"target"`
	// ID is the case id column (feedback joins predictions with outcomes
	// by it); default the main table's first key column.
	ID string `yaml:"id"`
	// TimeColumn orders the cases for the time-based split.
	TimeColumn string `yaml:"time_column"`
	// GroupColumn is the patient: a grouped split never puts one patient's
	// cases on both sides.
	GroupColumn string `yaml:"group_column"`
	// TargetTransform: log (default), log1p or none.
	TargetTransform string           `yaml:"target_transform"`
	Cleaning        []CleaningRule   `yaml:"cleaning"`
	Features        []models.Feature `yaml:"features"`
	// Segments are columns that the report breaks metrics down by.
	Segments    []string    `yaml:"segments"`
	Model       Model       `yaml:"model"`
	Split       Split       `yaml:"split"`
	Calibration Calibration `yaml:"calibration"`
	Gate        Gate        `yaml:"gate"`
	// MinRows is the fewest training rows a model may be fitted on
	// (default 200).
	MinRows int `yaml:"min_rows"`
}

// CleaningRule is one rule of Training.Cleaning; exactly one field is set.
type CleaningRule struct {
	// DropIf drops rows whose column equals one of the values.
	DropIf *Condition `yaml:"drop_if"`
	// DropMissing drops rows where the column has no value.
	DropMissing string `yaml:"drop_missing"`
	// CapPercentile caps the column at its p-th percentile (training rows).
	CapPercentile *Cap `yaml:"cap_percentile"`
	// DropOutside drops rows whose column is outside [min, max].
	DropOutside *Range `yaml:"drop_outside"`
}

// Condition matches rows whose column has one of the values.
type Condition struct {
	Column string   `yaml:"column"`
	In     []string `yaml:"in"`
}

// Cap is a percentile cap.
type Cap struct {
	Column string  `yaml:"column"`
	P      float64 `yaml:"p"`
}

// Range is a closed interval on a column.
type Range struct {
	Column string   `yaml:"column"`
	Min    *float64 `yaml:"min"`
	Max    *float64 `yaml:"max"`
}

// Model is the model family and its parameters.
type Model struct {
	// Family: ridge (default), ridge-pooled, gbdt or gbdt-pooled.
	Family string `yaml:"family"`
	// Families are the candidates: each is fitted, and the one with the
	// best inner-validation score on the gate's metric ships. Default
	// [Family].
	Families []string `yaml:"families"`
	// Lambdas is the grid of ridge penalties; the best on the inner
	// validation wins. Default [0.01, 0.1, 1, 10, 100, 1000].
	Lambdas []float64 `yaml:"lambdas"`
	// GBDT holds the gradient boosting settings (gbdt, gbdt-pooled).
	GBDT GBDT `yaml:"gbdt"`
}

// GBDT is the boosting settings of a contract; a zero field takes
// models.DefaultGBDT's value.
type GBDT struct {
	// LearningRates is the grid of shrinkages, chosen on the inner
	// validation with the number of trees (early stopping).
	LearningRates []float64 `yaml:"learning_rates"`
	MaxTrees      int       `yaml:"max_trees"`
	EarlyStop     int       `yaml:"early_stop"`
	MaxLeaves     int       `yaml:"max_leaves"`
	MaxDepth      int       `yaml:"max_depth"`
	MinLeaf       int       `yaml:"min_leaf"`
	L2            float64   `yaml:"l2"`
	Subsample     float64   `yaml:"subsample"`
	Seed          uint64    `yaml:"seed"`
	MaxBins       int       `yaml:"max_bins"`
}

// Settings is the contract's boosting settings as models takes them.
func (g GBDT) Settings() models.GBDT {
	return models.GBDT{LearningRates: g.LearningRates, MaxTrees: g.MaxTrees, EarlyStop: g.EarlyStop, MaxLeaves: g.MaxLeaves, MaxDepth: g.MaxDepth,
		MinLeaf: g.MinLeaf, L2: g.L2, Subsample: g.Subsample, Seed: g.Seed, MaxBins: g.MaxBins}.WithDefaults()
}

// Split says how the cases are split into training and validation.
type Split struct {
	// Kind: time (default when there is a time column) or random.
	Kind string `yaml:"kind"`
	// Validation is the last window, validated on (default 3mo).
	Validation Period `yaml:"validation"`
	// Gap between the end of training and the start of validation.
	Gap Period `yaml:"gap"`
	// Folds of a rolling-origin backtest (0: none).
	Folds int `yaml:"folds"`
	// Grouped keeps each patient's cases on one side.
	Grouped bool `yaml:"grouped"`
	// Fraction of cases validated on in a random split (default 0.2).
	Fraction float64 `yaml:"fraction"`
	// Seed of the random split (default 1).
	Seed int64 `yaml:"seed"`
}

// Calibration shifts predictions so that the under-estimate rate on the
// validation window meets a target.
type Calibration struct {
	// UnderRate is the target under-estimate rate, e.g. 0.2 (unset: none).
	UnderRate *float64 `yaml:"under_rate"`
}

// Gate compares a new model with the one in production.
type Gate struct {
	// Metric: mae (default), rmse or under_rate.
	Metric string `yaml:"metric"`
	// MaxRegression is the relative worsening allowed (default 0.02: 2%).
	MaxRegression *float64 `yaml:"max_regression"`
}

// Serving holds the settings of the hospital's model server.
type Serving struct {
	// HashInputs replaces the inputs in prediction logs with a keyed hash.
	HashInputs bool `yaml:"hash_inputs"`
	// MaxBatch is the most instances one request may hold (default 100).
	MaxBatch int `yaml:"max_batch"`
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

// Image says where the hospital's images go.
type Image struct {
	// Repository under WARD_REGISTRY; default "ward/<id>".
	Repository string `yaml:"repository"`
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

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Load reads and checks one contract file strictly: an unknown key, a
// wrong type or a reference to a column that does not exist is an error
// naming the file and, where the YAML parser knows it, the line.
func Load(file string) (*Hospital, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("contract %s: %w", file, err)
	}
	h, err := Parse(data, file)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		return nil, fmt.Errorf("contract %s: %w", file, err)
	}
	h.Dir = abs
	return h, nil
}

// Parse reads a contract from bytes; name is used in error messages.
func Parse(data []byte, name string) (*Hospital, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var h Hospital
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("contract %s: %s", name, yamlMessage(err))
	}
	sum := sha256.Sum256(data)
	h.Path = name
	h.Hash = hex.EncodeToString(sum[:])
	if err := h.normalize(); err != nil {
		return nil, fmt.Errorf("contract %s: %w", name, err)
	}
	return &h, nil
}

// yamlMessage rewrites the YAML parser's messages to say "unknown key".
func yamlMessage(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			if j := strings.Index(m, " not found in type "); j >= 0 && strings.Contains(m, "field ") {
				m = strings.Replace(m[:j], "field ", "unknown key ", 1)
			}
			msgs[i] = m
		}
		return strings.Join(msgs, "; ")
	}
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

// LoadAll loads every hospitals/<id>/hospital.yaml under dir, sorted by id.
func LoadAll(dir string) ([]*Hospital, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("hospitals folder %s: %w", dir, err)
	}
	var out []*Hospital
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		file := filepath.Join(dir, e.Name(), FileName)
		if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		h, err := Load(file)
		if err != nil {
			return nil, err
		}
		if h.ID != e.Name() {
			return nil, fmt.Errorf("contract %s: id %q differs from its folder name %q", file, h.ID, e.Name())
		}
		out = append(out, h)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("hospitals folder %s: no <id>/%s found", dir, FileName)
	}
	return out, nil
}

// Select loads the hospitals named in ids, or all of them when all is set.
// Naming none and not all is an error that says what to pass.
func Select(dir string, ids []string, all bool) ([]*Hospital, error) {
	if len(ids) == 0 && !all {
		return nil, errors.New("name a hospital with --hospital ID, or pass --all")
	}
	hs, err := LoadAll(dir)
	if err != nil {
		return nil, err
	}
	if all {
		return hs, nil
	}
	byID := make(map[string]*Hospital, len(hs))
	known := make([]string, len(hs))
	for i, h := range hs {
		byID[h.ID] = h
		known[i] = h.ID
	}
	var out []*Hospital
	for _, id := range ids {
		h, ok := byID[id]
		if !ok {
			return nil, fmt.Errorf("hospital %q: no %s in %s (known: %s)", id, filepath.Join(id, FileName), dir, strings.Join(known, ", "))
		}
		out = append(out, h)
	}
	return out, nil
}

// Table returns the table with the given name, or nil.
func (h *Hospital) Table(name string) *Table {
	for i := range h.Tables {
		if h.Tables[i].Name == name {
			return &h.Tables[i]
		}
	}
	return nil
}

// Column returns the column with the given name, or nil.
func (t *Table) Column(name string) *models.Column {
	for i := range t.Columns {
		if t.Columns[i].Name == name {
			return &t.Columns[i]
		}
	}
	return nil
}

// IsStrict reports whether unexpected columns are refused.
func (t *Table) IsStrict() bool { return t.Strict == nil || *t.Strict }

// TableFor returns the table whose pattern matches a file name, or nil.
func (h *Hospital) TableFor(fileName string) *Table {
	for i := range h.Tables {
		if ok, _ := path.Match(h.Tables[i].Pattern, fileName); ok {
			return &h.Tables[i]
		}
	}
	return nil
}

// IsCorrection reports whether a file name marks a correction file.
func (h *Hospital) IsCorrection(fileName string) bool {
	ok, _ := path.Match(h.Thresholds.Corrections, fileName)
	return ok
}

// InputColumns returns the columns of the joined row that training and
// serving see: the main table's columns, then those of each joined table
// (without the join columns, which the main table already has), in
// contract order. A name that two tables share is an error at load time.
func (h *Hospital) InputColumns() []models.Column {
	main := h.Table(h.Training.Table)
	if main == nil {
		return nil
	}
	cols := slices.Clone(main.Columns)
	for _, j := range main.Joins {
		other := h.Table(j.Table)
		joined := make(map[string]bool)
		for _, theirs := range j.On {
			joined[theirs] = true
		}
		for _, c := range other.Columns {
			if !joined[c.Name] {
				cols = append(cols, c)
			}
		}
	}
	return cols
}

// ModelSpec is the training section as models.Fit takes it: the model's
// inputs chosen from cols (the joined row's columns, InputColumns), its
// features, target, penalties, calibration and segments, with the lineage
// of the rows it will be fitted on.
func (h *Hospital) ModelSpec(cols []models.Column, lineage models.Lineage) (models.Spec, error) {
	tr := h.Training
	inputs, err := models.InputsFor(cols, tr.Features)
	if err != nil {
		return models.Spec{}, err
	}
	return models.Spec{
		Hospital:        h.ID,
		Inputs:          inputs,
		Features:        tr.Features,
		Target:          tr.Target,
		TargetTransform: tr.TargetTransform,
		Family:          tr.Model.Families[0],
		Lambdas:         tr.Model.Lambdas,
		GBDT:            tr.Model.GBDT.Settings(),
		UnderRate:       tr.Calibration.UnderRate,
		MinRows:         tr.MinRows,
		Segments:        tr.Segments,
		Lineage:         lineage,
	}, nil
}

// MaxRejected returns the fraction of rows that may be rejected.
func (t Thresholds) MaxRejected() float64 { return *t.MaxRejectedRows }

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
	if len(h.Tables) == 0 {
		return errors.New("tables: none declared")
	}
	seen := map[string]bool{}
	for i := range h.Tables {
		t := &h.Tables[i]
		if err := t.normalize(); err != nil {
			return fmt.Errorf("tables[%d] (%s): %w", i, t.Name, err)
		}
		if seen[t.Name] {
			return fmt.Errorf("tables[%d]: table %q declared twice", i, t.Name)
		}
		seen[t.Name] = true
	}
	for i := range h.Tables {
		for _, j := range h.Tables[i].Joins {
			if err := h.checkJoin(&h.Tables[i], j); err != nil {
				return fmt.Errorf("tables[%d] (%s): %w", i, h.Tables[i].Name, err)
			}
		}
	}
	if err := h.Thresholds.normalize(); err != nil {
		return fmt.Errorf("thresholds: %w", err)
	}
	if err := h.normalizeTraining(); err != nil {
		return fmt.Errorf("training: %w", err)
	}
	if h.Serving.MaxBatch == 0 {
		h.Serving.MaxBatch = 100
	}
	if h.Serving.MaxBatch < 0 {
		return fmt.Errorf("serving: max_batch %d is negative", h.Serving.MaxBatch)
	}
	if h.Feedback.Degradation == nil {
		h.Feedback.Degradation = ptr(0.25)
	}
	if *h.Feedback.Degradation <= 0 {
		return fmt.Errorf("feedback: degradation %v must be above 0", *h.Feedback.Degradation)
	}
	if h.Feedback.MinCases == 0 {
		h.Feedback.MinCases = 50
	}
	if err := policy(&h.Feedback.OnDegraded, "on_degraded", PolicyRollback); err != nil {
		return err
	}
	if err := policy(&h.Feedback.OnDrift, "on_drift", PolicyRetrain); err != nil {
		return err
	}
	if h.Image.Repository == "" {
		h.Image.Repository = "ward/" + h.ID
	}
	if !repoPattern.MatchString(h.Image.Repository) {
		return fmt.Errorf("image: repository %q: want lower-case path components like ward/%s", h.Image.Repository, h.ID)
	}
	return nil
}

var repoPattern = regexp.MustCompile(`^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$`)

func (in *Inbound) normalize(id string) error {
	if in.Folder == "" {
		in.Folder = id + "/inbound"
	}
	if path.IsAbs(in.Folder) || slices.Contains(strings.Split(in.Folder, "/"), "..") {
		return fmt.Errorf("inbound: folder %q must be relative, without ..", in.Folder)
	}
	switch in.Encryption {
	case "":
		in.Encryption = "none"
	case "none", "openpgp", "age":
	default:
		return fmt.Errorf("inbound: encryption %q: want none, openpgp or age", in.Encryption)
	}
	if in.SignedBy != "" && in.Encryption != "openpgp" {
		return fmt.Errorf("inbound: signed_by needs encryption openpgp, not %s", in.Encryption)
	}
	switch in.Ready {
	case "":
		in.Ready = "either"
	case "marker", "stable", "either":
	default:
		return fmt.Errorf("inbound: ready %q: want marker, stable or either", in.Ready)
	}
	if in.Predictions != "" {
		if _, err := path.Match(in.Predictions, ""); err != nil {
			return fmt.Errorf("inbound: predictions pattern %q: %v", in.Predictions, err)
		}
	}
	return in.Limits.normalize()
}

func (t *Table) normalize() error {
	if t.Name == "" || !identPattern.MatchString(t.Name) {
		return fmt.Errorf("name %q: want lower-case letters, digits and underscores", t.Name)
	}
	if t.Pattern == "" {
		return errors.New("pattern: missing (e.g. " + t.Name + "_*.csv)")
	}
	if _, err := path.Match(t.Pattern, ""); err != nil {
		return fmt.Errorf("pattern %q: %v", t.Pattern, err)
	}
	switch t.Format {
	case "", "csv", "parquet":
	default:
		return fmt.Errorf("format %q: want csv or parquet", t.Format)
	}
	if t.Delimiter == "" {
		t.Delimiter = ","
	}
	if len([]rune(t.Delimiter)) != 1 || t.Delimiter == "\"" || t.Delimiter == "\n" || t.Delimiter == "\r" {
		return fmt.Errorf("delimiter %q: want one character other than a quote or line break", t.Delimiter)
	}
	if len(t.Columns) == 0 {
		return errors.New("columns: none declared")
	}
	names := map[string]bool{}
	headers := map[string]bool{}
	for i := range t.Columns {
		c := &t.Columns[i]
		if err := c.Prepare(); err != nil {
			return fmt.Errorf("columns[%d]: %w", i, err)
		}
		if !identPattern.MatchString(c.Name) {
			return fmt.Errorf("columns[%d]: name %q: want lower-case letters, digits and underscores (use header: for the file's own name)", i, c.Name)
		}
		if names[c.Name] {
			return fmt.Errorf("columns[%d]: column %q declared twice", i, c.Name)
		}
		names[c.Name] = true
		h := c.FileHeader()
		if headers[h] {
			return fmt.Errorf("columns[%d]: header %q used twice", i, h)
		}
		headers[h] = true
	}
	if len(t.Key) == 0 {
		return errors.New("key: no key columns (name the columns that identify a row)")
	}
	for _, k := range t.Key {
		c := t.Column(k)
		if c == nil {
			return fmt.Errorf("key: column %q is not declared", k)
		}
		if !c.Required {
			return fmt.Errorf("key: column %q must be required", k)
		}
	}
	if t.TimeColumn != "" {
		c := t.Column(t.TimeColumn)
		if c == nil {
			return fmt.Errorf("time_column: column %q is not declared", t.TimeColumn)
		}
		if c.Type != models.Date && c.Type != models.Timestamp {
			return fmt.Errorf("time_column: column %q is %s, want date or timestamp", t.TimeColumn, c.Type)
		}
	}
	return t.normalizePeriod()
}

var identPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func (h *Hospital) checkJoin(t *Table, j Join) error {
	other := h.Table(j.Table)
	if other == nil {
		return fmt.Errorf("joins: table %q is not declared", j.Table)
	}
	if other == t {
		return fmt.Errorf("joins: table %q joins itself", j.Table)
	}
	if len(j.On) == 0 {
		return fmt.Errorf("joins: %s: no on: columns", j.Table)
	}
	keys := make([]string, 0, len(j.On))
	for mine, theirs := range j.On {
		a, b := t.Column(mine), other.Column(theirs)
		if a == nil {
			return fmt.Errorf("joins: %s: column %q is not in %s", j.Table, mine, t.Name)
		}
		if b == nil {
			return fmt.Errorf("joins: %s: column %q is not in %s", j.Table, theirs, j.Table)
		}
		if a.Type != b.Type {
			return fmt.Errorf("joins: %s: %s.%s is %s but %s.%s is %s", j.Table, t.Name, mine, a.Type, j.Table, theirs, b.Type)
		}
		keys = append(keys, theirs)
	}
	sort.Strings(keys)
	want := slices.Clone(other.Key)
	sort.Strings(want)
	if !slices.Equal(keys, want) {
		return fmt.Errorf("joins: %s: must join on its key (%s)", j.Table, strings.Join(other.Key, ", "))
	}
	return nil
}

func (t *Thresholds) normalize() error {
	if t.MaxRejectedRows == nil {
		t.MaxRejectedRows = ptr(0.05)
	}
	if r := *t.MaxRejectedRows; r < 0 || r > 1 {
		return fmt.Errorf("max_rejected_rows %v: want a fraction between 0 and 1", r)
	}
	if t.MaxErrors == 0 {
		t.MaxErrors = 1000
	}
	if t.MaxErrors < 0 {
		return fmt.Errorf("max_errors %d is negative", t.MaxErrors)
	}
	if t.RowCountRatio != 0 && t.RowCountRatio < 1 {
		return fmt.Errorf("row_count_ratio %v: want 0 (off) or at least 1", t.RowCountRatio)
	}
	if t.Corrections == "" {
		t.Corrections = "*correction*"
	}
	if _, err := path.Match(t.Corrections, ""); err != nil {
		return fmt.Errorf("corrections pattern %q: %v", t.Corrections, err)
	}
	return nil
}

func (h *Hospital) normalizeTraining() error {
	tr := &h.Training
	if tr.Table == "" {
		tr.Table = "cases"
	}
	main := h.Table(tr.Table)
	if main == nil {
		return fmt.Errorf("table: %q is not a declared table", tr.Table)
	}
	inputs := map[string]*models.Column{}
	owner := map[string]string{}
	for _, c := range main.Columns {
		inputs[c.Name] = &c
		owner[c.Name] = main.Name
	}
	for _, j := range main.Joins {
		other := h.Table(j.Table)
		joined := map[string]bool{}
		for _, theirs := range j.On {
			joined[theirs] = true
		}
		for _, c := range other.Columns {
			if joined[c.Name] {
				continue
			}
			if prev, dup := owner[c.Name]; dup {
				return fmt.Errorf("column %q is in both %s and %s: rename one (name:, with header: for the file's name)", c.Name, prev, other.Name)
			}
			inputs[c.Name] = &c
			owner[c.Name] = other.Name
		}
	}
	column := func(field, name string, mainOnly bool) (*models.Column, error) {
		c, ok := inputs[name]
		if !ok || (mainOnly && owner[name] != main.Name) {
			where := main.Name + " or its joins"
			if mainOnly {
				where = main.Name
			}
			return nil, fmt.Errorf("%s: column %q is not in %s", field, name, where)
		}
		return c, nil
	}
	if tr.Target == "" {
		return errors.New("target: missing (the column to predict, e.g. total_bill)")
	}
	target, err := column("target", tr.Target, true)
	if err != nil {
		return err
	}
	if target.Type != models.Float && target.Type != models.Int {
		return fmt.Errorf("target: column %q is %s, want float or int", tr.Target, target.Type)
	}
	if tr.ID == "" {
		tr.ID = main.Key[0]
	}
	if _, err := column("id", tr.ID, true); err != nil {
		return err
	}
	if tr.TimeColumn != "" {
		c, err := column("time_column", tr.TimeColumn, true)
		if err != nil {
			return err
		}
		if c.Type != models.Date && c.Type != models.Timestamp {
			return fmt.Errorf("time_column: column %q is %s, want date or timestamp", tr.TimeColumn, c.Type)
		}
	}
	if tr.GroupColumn != "" {
		if _, err := column("group_column", tr.GroupColumn, true); err != nil {
			return err
		}
	}
	if tr.TargetTransform == "" {
		tr.TargetTransform = models.Log
	}
	if err := models.CheckTransform(tr.TargetTransform); err != nil {
		return fmt.Errorf("target_transform: %w", err)
	}
	for i, r := range tr.Cleaning {
		if err := r.check(func(name string) (*models.Column, error) {
			return column(fmt.Sprintf("cleaning[%d]", i), name, false)
		}); err != nil {
			return fmt.Errorf("cleaning[%d]: %w", i, err)
		}
	}
	if len(tr.Features) == 0 {
		return errors.New("features: none declared")
	}
	fnames := map[string]bool{}
	for i := range tr.Features {
		f := &tr.Features[i]
		name := f.Column
		if name == "" {
			name = f.Name
		}
		c, err := column(fmt.Sprintf("features[%d]", i), name, false)
		if err != nil {
			return err
		}
		if err := f.Normalize(c.Type); err != nil {
			return fmt.Errorf("features[%d]: %w", i, err)
		}
		if f.Column == tr.Target {
			return fmt.Errorf("features[%d]: %s is the target: a model cannot use it as a feature", i, f.Column)
		}
		if fnames[f.Name] {
			return fmt.Errorf("features[%d]: feature %q declared twice", i, f.Name)
		}
		fnames[f.Name] = true
	}
	for i, s := range tr.Segments {
		if _, err := column(fmt.Sprintf("segments[%d]", i), s, false); err != nil {
			return err
		}
	}
	m := &tr.Model
	switch {
	case len(m.Families) == 0 && m.Family == "":
		m.Families = []string{models.FamilyRidge}
	case len(m.Families) == 0:
		m.Families = []string{m.Family}
	case m.Family != "" && !slices.Contains(m.Families, m.Family):
		return fmt.Errorf("model: family %q is not among families %v: give one or the other", m.Family, m.Families)
	}
	m.Family = m.Families[0]
	for i, f := range m.Families {
		if !slices.Contains(models.Families, f) {
			return fmt.Errorf("model: families[%d]: %q: want one of %s", i, f, strings.Join(models.Families, ", "))
		}
		if slices.Index(m.Families, f) != i {
			return fmt.Errorf("model: families[%d]: %q is listed twice", i, f)
		}
	}
	if err := m.GBDT.Settings().Check(); err != nil {
		return fmt.Errorf("model: gbdt: %w", err)
	}
	if len(tr.Model.Lambdas) == 0 {
		tr.Model.Lambdas = []float64{0.01, 0.1, 1, 10, 100, 1000}
	}
	for _, l := range tr.Model.Lambdas {
		if l < 0 {
			return fmt.Errorf("model: lambda %v is negative", l)
		}
	}
	if err := tr.normalizeSplit(); err != nil {
		return fmt.Errorf("split: %w", err)
	}
	if u := tr.Calibration.UnderRate; u != nil && (*u <= 0 || *u >= 1) {
		return fmt.Errorf("calibration: under_rate %v: want a fraction between 0 and 1", *u)
	}
	switch tr.Gate.Metric {
	case "":
		tr.Gate.Metric = "mae"
	case "mae", "rmse", "under_rate":
	default:
		return fmt.Errorf("gate: metric %q: want mae, rmse or under_rate", tr.Gate.Metric)
	}
	if tr.Gate.MaxRegression == nil {
		tr.Gate.MaxRegression = ptr(0.02)
	}
	if *tr.Gate.MaxRegression < 0 {
		return fmt.Errorf("gate: max_regression %v is negative", *tr.Gate.MaxRegression)
	}
	if tr.MinRows == 0 {
		tr.MinRows = 200
	}
	return nil
}

func (tr *Training) normalizeSplit() error {
	s := &tr.Split
	switch s.Kind {
	case "":
		s.Kind = "time"
		if tr.TimeColumn == "" {
			s.Kind = "random"
		}
	case "time":
		if tr.TimeColumn == "" {
			return errors.New("kind time needs training.time_column")
		}
	case "random":
	default:
		return fmt.Errorf("kind %q: want time or random", s.Kind)
	}
	if s.Validation.IsZero() {
		s.Validation = Period{Months: 3}
	}
	if s.Folds < 0 {
		return fmt.Errorf("folds %d is negative", s.Folds)
	}
	if s.Grouped && tr.GroupColumn == "" {
		return errors.New("grouped needs training.group_column")
	}
	if s.Fraction == 0 {
		s.Fraction = 0.2
	}
	if s.Fraction <= 0 || s.Fraction >= 1 {
		return fmt.Errorf("fraction %v: want a fraction between 0 and 1", s.Fraction)
	}
	if s.Seed == 0 {
		s.Seed = 1
	}
	return nil
}

func (r CleaningRule) check(column func(string) (*models.Column, error)) error {
	n := 0
	if r.DropIf != nil {
		n++
		if _, err := column(r.DropIf.Column); err != nil {
			return err
		}
		if len(r.DropIf.In) == 0 {
			return errors.New("drop_if: in: no values")
		}
	}
	if r.DropMissing != "" {
		n++
		if _, err := column(r.DropMissing); err != nil {
			return err
		}
	}
	if r.CapPercentile != nil {
		n++
		c, err := column(r.CapPercentile.Column)
		if err != nil {
			return err
		}
		if c.Type != models.Float && c.Type != models.Int {
			return fmt.Errorf("cap_percentile: column %q is %s, want a number", c.Name, c.Type)
		}
		if p := r.CapPercentile.P; p <= 0 || p > 100 {
			return fmt.Errorf("cap_percentile: p %v: want a percentile in (0, 100]", p)
		}
	}
	if r.DropOutside != nil {
		n++
		c, err := column(r.DropOutside.Column)
		if err != nil {
			return err
		}
		if !c.Type.Numeric() {
			return fmt.Errorf("drop_outside: column %q is %s, want a number or date", c.Name, c.Type)
		}
	}
	if n != 1 {
		return fmt.Errorf("want exactly one of drop_if, drop_missing, cap_percentile, drop_outside; found %d", n)
	}
	return nil
}

// Period is a span of months and days, written "3mo", "90d", "2w", "1y"
// or "0".
type Period struct {
	Months int
	Days   int
}

// IsZero reports whether the period is empty.
func (p Period) IsZero() bool { return p.Months == 0 && p.Days == 0 }

func (p Period) String() string {
	switch {
	case p.IsZero():
		return "0"
	case p.Days == 0 && p.Months%12 == 0:
		return strconv.Itoa(p.Months/12) + "y"
	case p.Days == 0:
		return strconv.Itoa(p.Months) + "mo"
	case p.Months == 0:
		return strconv.Itoa(p.Days) + "d"
	}
	return fmt.Sprintf("%dmo%dd", p.Months, p.Days)
}

// ParsePeriod reads "3mo", "90d", "2w", "1y" or "0".
func ParsePeriod(s string) (Period, error) {
	s = strings.TrimSpace(s)
	if s == "0" || s == "" {
		return Period{}, nil
	}
	for _, u := range []struct {
		suffix       string
		months, days int
	}{{"mo", 1, 0}, {"y", 12, 0}, {"w", 0, 7}, {"d", 0, 1}} {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.Atoi(num)
			if err != nil || n < 0 {
				break
			}
			return Period{Months: n * u.months, Days: n * u.days}, nil
		}
	}
	return Period{}, fmt.Errorf("period %q: want a count and a unit, like 3mo, 90d, 2w or 1y", s)
}

// UnmarshalYAML reads a period from its text form.
func (p *Period) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := ParsePeriod(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*p = v
	return nil
}

// MarshalYAML writes a period in its text form.
func (p Period) MarshalYAML() (any, error) { return p.String(), nil }

func ptr[T any](v T) *T { return &v }
