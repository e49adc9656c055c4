package contract

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/wardml/ward/models"
)

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
	TargetTransform string         `yaml:"target_transform"`
	Cleaning        []CleaningRule `yaml:"cleaning"`
	Features        Features       `yaml:"features"`
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

// Features holds the model's features as models takes them; a contract
// writes each in feature's shape.
type Features []models.Feature

// feature is the contract's shape of a models.Feature (which has no YAML
// keys of its own): the same fields, so that one converts to the other.
type feature struct {
	Name      string             `yaml:"name,omitempty"`
	Column    string             `yaml:"column,omitempty"`
	Kind      models.FeatureKind `yaml:"kind"`
	Transform string             `yaml:"transform,omitempty"`
	MinCount  int                `yaml:"min_count,omitempty"`
	Parts     []string           `yaml:"parts,omitempty"`
}

// UnmarshalYAML reads the features through the decoder it is called from,
// so that an unknown key stays an error (yaml.Node's Decode would start a
// lenient decoder).
func (fs *Features) UnmarshalYAML(unmarshal func(any) error) error {
	var in []feature
	err := unmarshal(&in)
	*fs = make(Features, len(in))
	for i, f := range in {
		(*fs)[i] = models.Feature(f)
	}
	return err
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

func (h *Hospital) normalizeTraining() error {
	tr := &h.Training
	if tr.Table == "" {
		tr.Table = "cases"
	}
	main := h.Table(tr.Table)
	if main == nil {
		return fmt.Errorf("table: %q is not a declared table", tr.Table)
	}
	row, err := h.joinedRow(main)
	if err != nil {
		return err
	}
	inputs := make(map[string]*joinedColumn, len(row))
	for i := range row {
		inputs[row[i].Name] = &row[i]
	}
	column := func(field, name string, mainOnly bool) (*models.Column, error) {
		c, ok := inputs[name]
		if !ok || (mainOnly && c.table != main.Name) {
			where := main.Name + " or its joins"
			if mainOnly {
				where = main.Name
			}
			return nil, fmt.Errorf("%s: column %q is not in %s", field, name, where)
		}
		return &c.Column, nil
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
	if err := checkTimeColumn(tr.TimeColumn, func(name string) (*models.Column, error) {
		return column("time_column", name, true)
	}); err != nil {
		return err
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
	if err := tr.Model.normalize(); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	if err := tr.normalizeSplit(); err != nil {
		return fmt.Errorf("split: %w", err)
	}
	if u := tr.Calibration.UnderRate; u != nil && (*u <= 0 || *u >= 1) {
		return fmt.Errorf("calibration: under_rate %v: want a fraction between 0 and 1", *u)
	}
	if err := tr.Gate.normalize(); err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	if tr.MinRows == 0 {
		tr.MinRows = 200
	}
	return nil
}

func (m *Model) normalize() error {
	switch {
	case len(m.Families) == 0 && m.Family == "":
		m.Families = []string{models.FamilyRidge}
	case len(m.Families) == 0:
		m.Families = []string{m.Family}
	case m.Family != "" && !slices.Contains(m.Families, m.Family):
		return fmt.Errorf("family %q is not among families %v: give one or the other", m.Family, m.Families)
	}
	m.Family = m.Families[0]
	for i, f := range m.Families {
		if !slices.Contains(models.Families, f) {
			return fmt.Errorf("families[%d]: %q: want one of %s", i, f, strings.Join(models.Families, ", "))
		}
		if slices.Index(m.Families, f) != i {
			return fmt.Errorf("families[%d]: %q is listed twice", i, f)
		}
	}
	if err := m.GBDT.Settings().Check(); err != nil {
		return fmt.Errorf("gbdt: %w", err)
	}
	if len(m.Lambdas) == 0 {
		m.Lambdas = []float64{0.01, 0.1, 1, 10, 100, 1000}
	}
	for _, l := range m.Lambdas {
		if l < 0 {
			return fmt.Errorf("lambda %v is negative", l)
		}
	}
	return nil
}

func (g *Gate) normalize() error {
	switch g.Metric {
	case "":
		g.Metric = "mae"
	case "mae", "rmse", "under_rate":
	default:
		return fmt.Errorf("metric %q: want mae, rmse or under_rate", g.Metric)
	}
	if g.MaxRegression == nil {
		g.MaxRegression = ptr(0.02)
	}
	if *g.MaxRegression < 0 {
		return fmt.Errorf("max_regression %v is negative", *g.MaxRegression)
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
