package models

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// FormatVersion is the artifact format this ward writes and reads.
const FormatVersion = 1

// Artifact is a fitted model: one self-contained, versioned file that
// package puts into the image and serving loads. Its encoding is
// canonical (fields in a fixed order, map keys sorted, floats in their
// shortest form that reads back to the same bits), so the same inputs give
// the same bytes. Build one with Fit, read one with Decode, write one with
// Encode.
type Artifact struct {
	FormatVersion int    `json:"format_version"`
	Hospital      string `json:"hospital"`
	// Version of the model, e.g. a date or the content hash Fit gives it.
	Version string `json:"version"`
	Family  string `json:"family"`
	// Inputs are the raw columns the model reads, with the rules a value
	// must meet: serving validates requests with them.
	Inputs []Column `json:"inputs"`
	Target Target   `json:"target"`
	// Encoder holds the features and what they learned from the training
	// rows (means, levels, years).
	Encoder *Encoder `json:"encoder"`
	// Lambda is the ridge penalty chosen on the inner validation (the
	// leaf penalty of a gbdt).
	Lambda float64 `json:"lambda"`
	// Intercept starts every prediction in the transformed space; the
	// linear part (ridge families) and the trees (gbdt families) add to it.
	Intercept float64 `json:"intercept"`
	// Coefficients, one per encoded column, named as Encoder.Names (ridge
	// families; none for gbdt).
	Coefficients []Coefficient `json:"coefficients"`
	// Forest holds the trees (gbdt families).
	Forest      *Forest      `json:"forest,omitempty"`
	Calibration *Calibration `json:"calibration,omitempty"`
	// Metrics are named sets: "validation" (always: the outer window),
	// "inner" (the inner model on the inner validation, which every choice
	// was made on), and whatever training adds ("random_split", ...).
	Metrics  map[string]Evaluation `json:"metrics"`
	Training Training              `json:"training"`
	Lineage  Lineage               `json:"lineage"`
	Summary  Summary               `json:"summary"`

	coef []float64
	// inner is the model fitted without the inner validation, with the
	// same choices (Fit's only; never encoded).
	inner *Artifact
}

// Target is the column the model predicts and the transform it is fitted
// on (predictions come back in the column's own unit).
type Target struct {
	Column    string `json:"column"`
	Transform string `json:"transform"`
}

// Coefficient is the weight of one encoded column.
type Coefficient struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
}

// Evaluation is the metrics of one set of cases: of the raw predictions,
// of the calibrated ones when the model is calibrated, and by segment
// (segment column -> its values).
type Evaluation struct {
	Metrics
	Calibrated *Metrics             `json:"calibrated,omitempty"`
	Segments   map[string][]Segment `json:"segments,omitempty"`
}

func (ev Evaluation) check() error {
	sets := []*Metrics{&ev.Metrics, ev.Calibrated}
	for _, segs := range ev.Segments {
		for i := range segs {
			sets = append(sets, &segs[i].Metrics, segs[i].Calibrated)
		}
	}
	for _, m := range sets {
		if m == nil {
			continue
		}
		if err := m.check(); err != nil {
			return err
		}
	}
	return nil
}

// Training says what the model was fitted on.
type Training struct {
	// Rows is the number of training cases fitted on, ValidationRows the
	// number it was validated on; cases without a target are neither.
	Rows           int `json:"rows"`
	ValidationRows int `json:"validation_rows"`
	// InnerRows is the training cases the inner validation held out.
	InnerRows int `json:"inner_rows,omitempty"`
	// MissingTarget counts the training cases skipped for lack of a target.
	MissingTarget int `json:"missing_target,omitempty"`
	// Grid is the inner validation RMSE (in the transformed space) of
	// each lambda, or of each learning rate at its best number of trees.
	Grid []GridPoint `json:"grid"`
}

// Lineage is where the model came from.
type Lineage struct {
	// Files are the staged extracts (the ingest ledger's entries) the
	// training rows came from.
	Files []File `json:"files"`
	// Train and Validation are the data windows (dates, YYYY-MM-DD) of a
	// time split; empty for a random split.
	Train      Window `json:"train,omitzero"`
	Validation Window `json:"validation,omitzero"`
	// Contract is the SHA-256 of the hospital's contract file.
	Contract string `json:"contract"`
	// Ward is the version of ward that trained the model.
	Ward string `json:"ward"`
}

// File is one staged file, by name and content hash.
type File struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
}

// Window is a span of dates, both ends included.
type Window struct {
	From string `json:"from"`
	To   string `json:"to"`
}

var hexHash = regexp.MustCompile(`^[0-9a-f]{64}$`)

// prepare checks every part of the artifact against the others and
// readies it to predict. Fit and Decode both end with it.
func (a *Artifact) prepare() error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if a.FormatVersion != FormatVersion {
		fail("format_version %d: want %d", a.FormatVersion, FormatVersion)
	}
	if a.Hospital == "" {
		fail("hospital: missing")
	}
	if a.Version == "" {
		fail("version: missing")
	}
	if !slices.Contains(Families, a.Family) {
		fail("family %q: want one of %s", a.Family, strings.Join(Families, ", "))
	}
	if len(a.Inputs) == 0 {
		fail("inputs: none")
	}
	names := map[string]bool{}
	for i := range a.Inputs {
		c := &a.Inputs[i]
		if err := c.Prepare(); err != nil {
			fail("inputs[%d]: %v", i, err)
		}
		if names[c.Name] {
			fail("inputs[%d]: %s appears twice", i, c.Name)
		}
		names[c.Name] = true
	}
	if a.Target.Column == "" {
		fail("target: column missing")
	}
	if err := CheckTransform(a.Target.Transform); err != nil {
		fail("target: %v", err)
	}
	if !finite(a.Lambda) || a.Lambda < 0 {
		fail("lambda %v: want a finite number >= 0", a.Lambda)
	}
	if !finite(a.Intercept) {
		fail("intercept %v: not a finite number", a.Intercept)
	}
	if c := a.Calibration; c != nil && (!(c.UnderRate > 0 && c.UnderRate < 1) || !finite(c.Shift)) {
		fail("calibration: under_rate %v, shift %v: want a fraction between 0 and 1 and a finite shift", c.UnderRate, c.Shift)
	}
	if _, ok := a.Metrics["validation"]; !ok {
		fail(`metrics: no "validation" set`)
	}
	for _, name := range slices.Sorted(maps.Keys(a.Metrics)) {
		if err := a.Metrics[name].check(); err != nil {
			fail("metrics %s: %v", name, err)
		}
	}
	if a.Training.Rows < 1 || a.Training.ValidationRows < 1 {
		fail("training: rows %d, validation_rows %d: want at least 1 each", a.Training.Rows, a.Training.ValidationRows)
	}
	if err := a.Lineage.check(); err != nil {
		fail("lineage: %v", err)
	}
	// What follows needs a sound encoder.
	if a.Encoder == nil {
		fail("encoder: missing")
		return errors.Join(errs...)
	}
	if err := a.Encoder.prepare(a.Inputs); err != nil {
		fail("encoder: %v", err)
		return errors.Join(errs...)
	}
	read := map[string]bool{}
	for _, f := range a.Encoder.Features {
		read[f.Column] = true
	}
	for _, c := range a.Inputs {
		if !read[c.Name] {
			fail("inputs: %s is read by no feature", c.Name)
		}
	}
	want := a.Encoder.Names()
	trees := a.Family == FamilyGBDT || a.Family == FamilyGBDTPooled
	switch {
	case trees && a.Forest == nil:
		fail("forest: missing (family %s)", a.Family)
	case !trees && a.Forest != nil:
		fail("forest: family %s has none", a.Family)
	case trees && len(a.Coefficients) > 0:
		fail("coefficients: family %s has none", a.Family)
	case !trees && len(a.Coefficients) != len(want):
		fail("coefficients: %d, want %d (one per encoded column)", len(a.Coefficients), len(want))
	default:
		for i, c := range a.Coefficients {
			if c.Name != want[i] {
				fail("coefficients[%d]: name %q, want %q", i, c.Name, want[i])
			}
			if !finite(c.Value) {
				fail("coefficients[%d] (%s): %v is not a finite number", i, c.Name, c.Value)
			}
		}
		if err := a.compile(); err != nil {
			fail("%v", err)
		}
	}
	if err := a.Summary.check(a.Encoder); err != nil {
		fail("summary: %v", err)
	}
	return errors.Join(errs...)
}

func (l *Lineage) check() error {
	if len(l.Files) == 0 {
		return errors.New("files: none (the staged files the model was trained on)")
	}
	for i, f := range l.Files {
		if f.Name == "" || !hexHash.MatchString(f.SHA256) {
			return fmt.Errorf("files[%d]: name %q, sha256 %q: want a name and 64 hex digits", i, f.Name, f.SHA256)
		}
	}
	if !hexHash.MatchString(l.Contract) {
		return fmt.Errorf("contract %q: want the SHA-256 of the contract, 64 hex digits", l.Contract)
	}
	if l.Ward == "" {
		return errors.New("ward: missing (the version of ward that trained the model)")
	}
	for _, w := range []struct {
		name string
		w    Window
	}{{"train", l.Train}, {"validation", l.Validation}} {
		if w.w == (Window{}) {
			continue
		}
		from, err1 := time.Parse(time.DateOnly, w.w.From)
		to, err2 := time.Parse(time.DateOnly, w.w.To)
		if err1 != nil || err2 != nil || to.Before(from) {
			return fmt.Errorf("%s window %s to %s: want two dates YYYY-MM-DD, in order", w.name, w.w.From, w.w.To)
		}
	}
	return nil
}

// Encode writes the artifact in its canonical form. It checks the
// artifact first, so a model that Decode would refuse is never written.
func (a *Artifact) Encode() ([]byte, error) {
	if err := a.prepare(); err != nil {
		return nil, fmt.Errorf("artifact: %w", err)
	}
	return a.marshal()
}

func (a *Artifact) marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(a); err != nil {
		return nil, fmt.Errorf("artifact: %w", err)
	}
	return buf.Bytes(), nil
}

// Decode reads an artifact and checks all of it: JSON that is truncated or
// malformed, a format version this ward does not read, a field that is
// missing, unknown or null, lengths that disagree, numbers that are not
// finite, parameters that do not fit the features. A server refuses to
// start on any of these.
func Decode(data []byte) (*Artifact, error) {
	var head struct {
		FormatVersion *int `json:"format_version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("artifact: %w", jsonError(data, err))
	}
	switch v := head.FormatVersion; {
	case v == nil:
		return nil, errors.New("artifact: no format_version: not a ward model artifact")
	case *v > FormatVersion:
		return nil, fmt.Errorf("artifact: format version %d is newer than this ward reads (format %d): use a ward that reads format %d", *v, FormatVersion, *v)
	case *v != FormatVersion:
		return nil, fmt.Errorf("artifact: format version %d: this ward reads format %d only", *v, FormatVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var a Artifact
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("artifact: %w", jsonError(data, err))
	}
	if err := a.missing(data); err != nil {
		return nil, fmt.Errorf("artifact: %w", err)
	}
	if err := a.prepare(); err != nil {
		return nil, fmt.Errorf("artifact: %w", err)
	}
	return &a, nil
}

// jsonError says where in the data the JSON went wrong.
func jsonError(data []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case len(bytes.TrimSpace(data)) == 0:
		return errors.New("empty: no JSON at all")
	case errors.As(err, &syn) && syn.Error() == "unexpected end of JSON input":
		return fmt.Errorf("truncated: the JSON ends at line %d before the artifact does", bytes.Count(data, []byte("\n"))+1)
	case errors.As(err, &syn):
		line, col := position(data, syn.Offset)
		return fmt.Errorf("not valid JSON at line %d, column %d: %v", line, col, syn)
	case errors.As(err, &typ):
		line, col := position(data, typ.Offset)
		return fmt.Errorf("%s at line %d, column %d: want %s, found a JSON %s", typ.Field, line, col, typ.Type, typ.Value)
	}
	if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fmt.Errorf("unknown field %s: not part of format %d", field, FormatVersion)
	}
	return err
}

// position turns the offset the JSON decoder reports (the bytes read,
// the bad one included) into a line and column, both from 1.
func position(data []byte, offset int64) (line, col int) {
	at := int(min(max(offset-1, 0), int64(len(data))))
	before := data[:at]
	return bytes.Count(before, []byte("\n")) + 1, at - bytes.LastIndexByte(before, '\n')
}

// missing finds the fields that the artifact must hold but data lacks, or
// holds as null. encoding/json would quietly read either as zero, and a
// zero mean or intercept is a valid number: the only sign of the loss is
// the key's absence. The required fields are those a canonical encoding
// always writes (everything but omitempty), so the canonical re-encoding
// of what was read says what to look for.
func (a *Artifact) missing(data []byte) error {
	var have any
	if err := json.Unmarshal(data, &have); err != nil {
		return err
	}
	canon, err := a.marshal()
	if err != nil {
		return err
	}
	var want any
	if err := json.Unmarshal(canon, &want); err != nil {
		return err
	}
	var errs []error
	compareKeys("", have, want, &errs)
	return errors.Join(errs...)
}

func compareKeys(path string, have, want any, errs *[]error) {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			*errs = append(*errs, fmt.Errorf("%s: null, want an object", strings.TrimPrefix(path, ".")))
			return
		}
		for _, k := range slices.Sorted(maps.Keys(w)) {
			hv, present := h[k]
			switch {
			case !present:
				*errs = append(*errs, fmt.Errorf("%s: missing", strings.TrimPrefix(path+"."+k, ".")))
			case hv == nil && w[k] != nil:
				*errs = append(*errs, fmt.Errorf("%s: null, want a value", strings.TrimPrefix(path+"."+k, ".")))
			default:
				compareKeys(path+"."+k, hv, w[k], errs)
			}
		}
	case []any:
		h, _ := have.([]any)
		for i := range min(len(h), len(w)) {
			compareKeys(fmt.Sprintf("%s[%d]", path, i), h[i], w[i], errs)
		}
	}
}

// compile readies the fitted parameters to predict.
func (a *Artifact) compile() error {
	if len(a.Coefficients) > 0 {
		a.coef = make([]float64, len(a.Coefficients))
		for i, c := range a.Coefficients {
			a.coef[i] = c.Value
		}
	}
	if a.Forest != nil {
		if a.Forest.Trees == nil {
			a.Forest.Trees = []Tree{}
		}
		if err := a.Forest.prepare(a.Encoder.codes()); err != nil {
			return fmt.Errorf("forest: %w", err)
		}
	}
	return nil
}

// Prediction is a model's answer for one row.
type Prediction struct {
	// Value is the prediction in the target's unit (the bill).
	Value float64
	// Calibrated is Value moved by the calibration (Value when the model
	// has none).
	Calibrated float64
	// Transformed is the prediction in the transformed space, before
	// calibration.
	Transformed float64
	// Unseen lists the features (indices into Encoder.Features) whose
	// value the model does not know and encoded as "other". It shares the
	// Sparse's memory.
	Unseen []int
}

// Predict predicts one row, aligned with Inputs and already checked
// against them (ParseInput). s is scratch space: one per goroutine makes
// Predict allocate nothing (nil allocates a fresh one). The artifact is
// only read, so goroutines may share it. The result is the same to the bit
// on every platform and in training: the arithmetic is fixed (no fused
// multiply-add, the transforms' own exp and log).
func (a *Artifact) Predict(s *Sparse, row []Value) (Prediction, error) {
	if s == nil {
		s = new(Sparse)
	}
	y := a.Intercept
	if a.Forest != nil {
		// The trees read the tree features alone: the row is not
		// encoded for a linear model as well.
		if err := a.Encoder.treeValues(s, row); err != nil {
			return Prediction{}, err
		}
		s.ranks = a.Forest.rank(s.ranks, s.dense)
		if q := a.Forest.quick; q != nil {
			y, s.live = q.add(y, s.ranks, s.live)
		} else {
			y = a.Forest.add(y, s.ranks)
		}
	} else {
		if err := a.Encoder.Encode(s, row); err != nil {
			return Prediction{}, err
		}
		if a.coef != nil {
			for k, i := range s.Index {
				y += float64(a.coef[i] * s.Value[k])
			}
		}
	}
	p, err := a.answer(y)
	p.Unseen = s.Unseen
	return p, err
}

// answer turns a prediction in the transformed space into the answer,
// calibrated or not.
func (a *Artifact) answer(y float64) (Prediction, error) {
	p := Prediction{Transformed: y, Value: Untransform(a.Target.Transform, y)}
	p.Calibrated = p.Value
	if a.Calibration != nil {
		p.Calibrated = Untransform(a.Target.Transform, y+a.Calibration.Shift)
	}
	if !finite(p.Value) || !finite(p.Calibrated) {
		return p, fmt.Errorf("prediction %v is not a finite number: the inputs are far outside what the model was trained on", p.Value)
	}
	return p, nil
}

// InputField describes one input for clients (serving's GET /v1/model):
// the column's type and rules, and for a categorical feature the levels
// the model knows (any other value is accepted and counts as "other").
type InputField struct {
	Column
	Levels []string `json:"levels,omitempty"`
}

// Schema lists the model's inputs.
func (a *Artifact) Schema() []InputField {
	out := make([]InputField, len(a.Inputs))
	for i, c := range a.Inputs {
		out[i].Column = c
		for _, f := range a.Encoder.Features {
			if f.Column == c.Name && f.Kind == Categorical {
				for _, l := range f.Categorical.Levels {
					if l != "" && !slices.Contains(out[i].Levels, l) {
						out[i].Levels = append(out[i].Levels, l)
					}
				}
			}
		}
	}
	return out
}

// ParseInput reads one request object (as encoding/json decodes it, with
// or without UseNumber) into a row aligned with the inputs. It reports
// every bad field, not just the first: a required one that is missing, a
// wrong type, a value out of range or not allowed, and a field the model
// does not take. dst is reused when it has room.
func (a *Artifact) ParseInput(fields map[string]any, dst []Value) ([]Value, []*FieldError) {
	row := slices.Grow(dst[:0], len(a.Inputs))[:len(a.Inputs)]
	var errs []*FieldError
	present := 0
	for i := range a.Inputs {
		c := &a.Inputs[i]
		raw, ok := fields[c.Name]
		if ok {
			present++
		}
		v, ferr := c.ParseJSON(raw)
		if ferr != nil {
			errs = append(errs, ferr)
		}
		row[i] = v
	}
	if present == len(fields) {
		return row, errs // no field that is not an input
	}
	var unknown []string
	for k := range fields {
		if !slices.ContainsFunc(a.Inputs, func(c Column) bool { return c.Name == k }) {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		errs = append(errs, &FieldError{Column: k, Reason: "unknown field: the model's inputs are " + a.inputNames()})
	}
	return row, errs
}

func (a *Artifact) inputNames() string {
	names := make([]string, len(a.Inputs))
	for i, c := range a.Inputs {
		names[i] = c.Name
	}
	return strings.Join(names, ", ")
}

// contentVersion names a model by its content: the first 12 hex digits of
// the SHA-256 of its canonical encoding without a version.
func contentVersion(a *Artifact) (string, error) {
	b := *a
	b.Version = ""
	data, err := b.marshal()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:6]), nil
}
