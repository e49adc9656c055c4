package models

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"time"
)

// ErrConstant is wrapped by the error of a feature that takes one value on
// every training row: it cannot explain anything, and a model with it has
// no unique fit.
var ErrConstant = errors.New("constant on the training rows")

// FittedFeature is a feature with what the training rows taught it. It is
// part of the artifact, so the parameters are exported; exactly one of
// Numeric, Categorical and Date is set, the one of its Kind.
type FittedFeature struct {
	Feature
	Numeric     *NumericFit     `json:"numeric,omitempty"`
	Categorical *CategoricalFit `json:"categorical,omitempty"`
	Date        *DateFit        `json:"date,omitempty"`

	col    int  // index of Column in the inputs
	typ    Type // its type
	offset int  // first encoded column
	width  int
	levels map[string]int // categorical: level text -> position
	years  map[int]int    // date: year -> position
}

// NumericFit standardises a numeric feature: z = (transform(x) - Mean) / Std.
// A missing value becomes the mean, so z = 0.
type NumericFit struct {
	Mean float64 `json:"mean"`
	Std  float64 `json:"std"`
}

// CategoricalFit is the one-hot code of a categorical feature: one column
// per level in Levels, then one for "other", which takes the values seen
// fewer than MinCount times in training and the values never seen. Levels
// are the canonical text of the values (Value.Format), sorted as strings.
// A missing value (null, or an empty string) is the level "": it has its
// own column when it was seen MinCount times, and goes to other otherwise.
type CategoricalFit struct {
	Levels []string `json:"levels"`
}

// DateFit is the one-hot code of a date feature's parts. Every part but
// the year has a fixed set of values (quarter 1-4, month 1-12, ISO week
// 1-53, ISO day of week 1-7 from Monday, day of month 1-31). The year has
// one column per year in Years, the years of the training rows, and one for
// "other", which takes any later (or earlier) year. Parts are taken in UTC.
// A missing date sets no column.
type DateFit struct {
	Years []int `json:"years,omitempty"`
}

// Names of the levels that are not values, in encoded column names.
const (
	OtherLevel   = "(other)"
	MissingLevel = "(missing)"
)

var partSizes = map[string]int{"quarter": 4, "month": 12, "week": 53, "dow": 7, "dom": 31}

// Encoder turns a row of inputs into the model's feature columns. It is
// fitted on the training rows (EncoderFit) and goes into the artifact, so
// training and serving encode with the same parameters and the same code.
type Encoder struct {
	Features []FittedFeature `json:"features"`

	inputs int
	width  int
	names  []string
}

// Sparse is an encoded row: the columns that are not zero, in increasing
// order of Index. Encode reuses its slices, so a caller that keeps one
// Sparse per goroutine encodes without allocating.
type Sparse struct {
	Index []int
	Value []float64
	// Unseen lists the features (indices into Encoder.Features) whose value
	// is not a level the model knows and was encoded as "other".
	Unseen []int

	key   []byte
	dense []float64 // the tree features, for a forest
	ranks []uint32  // and their ranks (Forest.rank)
	live  []uint64  // the leaves each tree may still reach (scorer.add)
}

func (s *Sparse) reset() {
	s.Index, s.Value, s.Unseen = s.Index[:0], s.Value[:0], s.Unseen[:0]
}

func (s *Sparse) add(i int, v float64) {
	s.Index = append(s.Index, i)
	s.Value = append(s.Value, v)
}

// Width is the number of encoded columns.
func (e *Encoder) Width() int { return e.width }

// Names returns the names of the encoded columns: the feature's name for a
// numeric one, "name=level" for a categorical one, and "name.part=value"
// for a date part.
func (e *Encoder) Names() []string { return e.names }

// prepare checks the fitted parameters against the inputs and builds what
// Encode needs. Fitting and decoding both end here, so a fresh model and a
// decoded one encode identically.
func (e *Encoder) prepare(inputs []Column) error {
	if err := resolve(e.Features, inputs); err != nil {
		return err
	}
	e.inputs, e.width, e.names = len(inputs), 0, nil
	for i := range e.Features {
		f := &e.Features[i]
		f.offset = e.width
		if err := f.prepare(); err != nil {
			return fmt.Errorf("feature %s: %w", f.Name, err)
		}
		e.width += f.width
		e.names = append(e.names, f.columnNames()...)
	}
	return nil
}

// resolve finds the input column of each feature and checks the feature's
// definition against the column's type.
func resolve(features []FittedFeature, inputs []Column) error {
	if len(features) == 0 {
		return errors.New("no features")
	}
	byName := make(map[string]int, len(inputs))
	for i, c := range inputs {
		byName[c.Name] = i
	}
	seen := map[string]bool{}
	for i := range features {
		f := &features[i]
		col, ok := byName[f.Column]
		if f.Column == "" {
			col, ok = byName[f.Name]
		}
		if !ok {
			return fmt.Errorf("feature %s: column %q is not an input", f.Name, f.Column)
		}
		if err := f.Feature.Normalize(inputs[col].Type); err != nil {
			return err
		}
		if seen[f.Name] {
			return fmt.Errorf("feature %s: declared twice", f.Name)
		}
		seen[f.Name] = true
		f.col, f.typ = col, inputs[col].Type
	}
	return nil
}

func (f *FittedFeature) prepare() error {
	if (f.Numeric != nil) != (f.Kind == Numeric) || (f.Categorical != nil) != (f.Kind == Categorical) || (f.Date != nil) != (f.Kind == DateParts) {
		return fmt.Errorf("a %s feature takes %s parameters, and only those", f.Kind, f.Kind)
	}
	switch f.Kind {
	case Numeric:
		n := f.Numeric
		if !finite(n.Mean) || !finite(n.Std) || n.Std <= 0 {
			return fmt.Errorf("numeric parameters mean %v, std %v: want finite numbers and std > 0", n.Mean, n.Std)
		}
		f.width = 1
	case Categorical:
		c := f.Categorical
		if !slices.IsSorted(c.Levels) {
			return errors.New("categorical levels are not sorted")
		}
		f.levels = make(map[string]int, len(c.Levels))
		for i, l := range c.Levels {
			if _, dup := f.levels[l]; dup {
				return fmt.Errorf("categorical level %q appears twice", l)
			}
			f.levels[l] = i
		}
		f.width = len(c.Levels) + 1
	case DateParts:
		d := f.Date
		hasYear := slices.Contains(f.Parts, "year")
		if hasYear != (len(d.Years) > 0) {
			return errors.New("date years: want the training years exactly when parts has year")
		}
		if !slices.IsSorted(d.Years) {
			return errors.New("date years are not sorted")
		}
		f.years = make(map[int]int, len(d.Years))
		for i, y := range d.Years {
			f.years[y] = i
		}
		f.width = 0
		for _, p := range f.Parts {
			f.width += f.partWidth(p)
		}
	}
	return nil
}

func (f *FittedFeature) partWidth(part string) int {
	if part == "year" {
		return len(f.Date.Years) + 1
	}
	return partSizes[part]
}

func (f *FittedFeature) columnNames() []string {
	switch f.Kind {
	case Numeric:
		return []string{f.Name}
	case Categorical:
		names := make([]string, 0, f.width)
		for _, l := range f.Categorical.Levels {
			if l == "" {
				l = MissingLevel
			}
			names = append(names, f.Name+"="+l)
		}
		return append(names, f.Name+"="+OtherLevel)
	}
	var names []string
	for _, p := range f.Parts {
		prefix := f.Name + "." + p + "="
		if p == "year" {
			for _, y := range f.Date.Years {
				names = append(names, prefix+strconv.Itoa(y))
			}
			names = append(names, prefix+OtherLevel)
			continue
		}
		for v := 1; v <= partSizes[p]; v++ {
			names = append(names, prefix+strconv.Itoa(v))
		}
	}
	return names
}

// Encode encodes one row (aligned with the inputs the encoder was fitted
// on) into s. A value outside the domain of a numeric feature's transform
// is a *FieldError; every other value encodes (unknown categories as
// "other", listed in s.Unseen).
func (e *Encoder) Encode(s *Sparse, row []Value) error {
	s.reset()
	if len(row) != e.inputs {
		return fmt.Errorf("row has %d values, want %d (one per input)", len(row), e.inputs)
	}
	for i := range e.Features {
		f := &e.Features[i]
		v := row[f.col]
		switch f.Kind {
		case Numeric:
			z, err := f.standardise(v)
			if err != nil {
				return err
			}
			if z != 0 {
				s.add(f.offset, z)
			}
		case Categorical:
			s.key = levelKey(s.key[:0], v, f.typ)
			pos, known := f.levels[string(s.key)]
			if !known {
				pos = len(f.Categorical.Levels)
				if len(s.key) > 0 {
					s.Unseen = append(s.Unseen, i)
				}
			}
			s.add(f.offset+pos, 1)
		case DateParts:
			if v.Null {
				continue
			}
			t := v.Time(f.typ)
			off := f.offset
			for _, p := range f.Parts {
				pos, known := f.partPosition(p, t)
				if !known {
					s.Unseen = append(s.Unseen, i)
				}
				s.add(off+pos, 1)
				off += f.partWidth(p)
			}
		}
	}
	return nil
}

func (f *FittedFeature) standardise(v Value) (float64, error) {
	if v.Null {
		return 0, nil
	}
	x, err := f.transform(v)
	if err != nil {
		return 0, err
	}
	return (x - f.Numeric.Mean) / f.Numeric.Std, nil
}

// transform applies a numeric feature's transform to a present value.
func (f *FittedFeature) transform(v Value) (float64, error) {
	x, ok := Transform(f.Transform, v.Num)
	if !ok {
		return 0, &FieldError{Column: f.Column, Value: v.Format(f.typ), Reason: "feature " + f.Name + ": " + domain(f.Transform)}
	}
	return x, nil
}

// levelKey appends the level text of v: its canonical text, and "" for a
// missing value or an empty string.
func levelKey(b []byte, v Value, t Type) []byte {
	if v.Null {
		return b
	}
	return v.AppendFormat(b, t)
}

// datePart returns the value of one calendar part of t.
func datePart(part string, t time.Time) int {
	switch part {
	case "year":
		return t.Year()
	case "quarter":
		return (int(t.Month())-1)/3 + 1
	case "month":
		return int(t.Month())
	case "week":
		_, w := t.ISOWeek()
		return w
	case "dow":
		return (int(t.Weekday())+6)%7 + 1
	}
	return t.Day()
}

// partPosition returns the position of t's part within the part's columns;
// known is false for a year the model has not seen (position: other).
func (f *FittedFeature) partPosition(part string, t time.Time) (pos int, known bool) {
	v := datePart(part, t)
	if part != "year" {
		return v - 1, true
	}
	if pos, ok := f.years[v]; ok {
		return pos, true
	}
	return len(f.Date.Years), false
}

// EncoderFit learns an encoder from the training rows in one streaming
// pass: Add every row, then call Encoder. It holds only counts: the mean
// and variance of each numeric feature, the count of each categorical
// level, and which date parts vary.
type EncoderFit struct {
	inputs   []Column
	features []FittedFeature
	rows     int
	stats    []featureStats
	key      []byte
}

type featureStats struct {
	n, mean, m2 float64        // numeric: Welford's running moments
	first       float64        // numeric: first value, for the constant message
	index       map[string]int // categorical: level -> position in counts
	names       []string
	counts      []int
	parts       []partStats // date
	sample      sample      // numeric: raw values, for the summary's deciles
}

type partStats struct {
	first  int
	seen   bool
	varies bool
	years  map[int]bool
}

// NewEncoderFit starts fitting the features on rows aligned with inputs.
// The features are normalised (defaults filled in) against the inputs'
// types.
func NewEncoderFit(inputs []Column, features []Feature) (*EncoderFit, error) {
	if len(features) == 0 {
		return nil, errors.New("no features")
	}
	fitted := make([]FittedFeature, len(features))
	for i, f := range features {
		fitted[i].Feature = f
		fitted[i].Parts = slices.Clone(f.Parts)
	}
	if err := resolve(fitted, inputs); err != nil {
		return nil, err
	}
	fit := &EncoderFit{inputs: inputs, features: fitted, stats: make([]featureStats, len(features))}
	for i, f := range fit.features {
		switch f.Kind {
		case Categorical:
			fit.stats[i].index = map[string]int{}
		case DateParts:
			fit.stats[i].parts = make([]partStats, len(f.Parts))
			for j, p := range f.Parts {
				if p == "year" {
					fit.stats[i].parts[j].years = map[int]bool{}
				}
			}
		}
	}
	return fit, nil
}

// Add counts one training row.
func (fit *EncoderFit) Add(row []Value) error {
	if len(row) != len(fit.inputs) {
		return fmt.Errorf("row has %d values, want %d (one per input)", len(row), len(fit.inputs))
	}
	for i := range fit.features {
		f, st := &fit.features[i], &fit.stats[i]
		v := row[f.col]
		switch f.Kind {
		case Numeric:
			if v.Null {
				continue
			}
			x, err := f.transform(v)
			if err != nil {
				return err
			}
			if st.n == 0 {
				st.first = v.Num
			}
			st.sample.add(v.Num)
			st.n++
			d := x - st.mean
			st.mean += d / st.n
			st.m2 += d * (x - st.mean)
		case Categorical:
			fit.key = levelKey(fit.key[:0], v, f.typ)
			pos, ok := st.index[string(fit.key)]
			if !ok {
				pos = len(st.counts)
				st.index[string(fit.key)] = pos
				st.names = append(st.names, string(fit.key))
				st.counts = append(st.counts, 0)
			}
			st.counts[pos]++
		case DateParts:
			if v.Null {
				continue
			}
			t := v.Time(f.typ)
			for j, p := range f.Parts {
				ps := &st.parts[j]
				x := datePart(p, t)
				switch {
				case !ps.seen:
					ps.first, ps.seen = x, true
				case x != ps.first:
					ps.varies = true
				}
				if ps.years != nil {
					ps.years[x] = true
				}
			}
		}
	}
	fit.rows++
	return nil
}

// Rows is the number of rows added.
func (fit *EncoderFit) Rows() int { return fit.rows }

// Encoder returns the fitted encoder. A feature that cannot be fitted (no
// values, or one value on every row: ErrConstant) is an error naming it;
// all such features are named at once.
func (fit *EncoderFit) Encoder() (*Encoder, error) {
	if fit.rows == 0 {
		return nil, errors.New("no training rows")
	}
	e := &Encoder{Features: slices.Clone(fit.features)}
	var errs []error
	for i := range e.Features {
		f, st := &e.Features[i], &fit.stats[i]
		if err := f.fit(st); err != nil {
			errs = append(errs, fmt.Errorf("feature %s: %w", f.Name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := e.prepare(fit.inputs); err != nil {
		return nil, err
	}
	return e, nil
}

func (f *FittedFeature) fit(st *featureStats) error {
	switch f.Kind {
	case Numeric:
		if st.n == 0 {
			return fmt.Errorf("column %s has no values in the training rows", f.Column)
		}
		std := math.Sqrt(st.m2 / st.n)
		if !(std > 1e-12*math.Max(1, math.Abs(st.mean))) {
			return fmt.Errorf("%w: every value of %s is %s; drop it from the features", ErrConstant, f.Column, Number(st.first).Format(f.typ))
		}
		f.Numeric = &NumericFit{Mean: st.mean, Std: std}
	case Categorical:
		var kept []string
		other := 0
		for j, name := range st.names {
			if st.counts[j] >= f.MinCount {
				kept = append(kept, name)
			} else {
				other += st.counts[j]
			}
		}
		sort.Strings(kept)
		used := len(kept)
		if other > 0 {
			used++
		}
		if used < 2 {
			what := "rarer than min_count " + strconv.Itoa(f.MinCount) + ", so all are other"
			if len(kept) == 1 {
				what = "is " + strconv.Quote(kept[0])
				if kept[0] == "" {
					what = "is missing"
				}
			}
			return fmt.Errorf("%w: every value of %s %s; drop it from the features", ErrConstant, f.Column, what)
		}
		f.Categorical = &CategoricalFit{Levels: kept}
	case DateParts:
		d := &DateFit{}
		for j, p := range f.Parts {
			ps := &st.parts[j]
			if !ps.seen {
				return fmt.Errorf("column %s has no values in the training rows", f.Column)
			}
			if !ps.varies {
				return fmt.Errorf("part %s: %w: every %s of %s is %d; drop it from the parts", p, ErrConstant, p, f.Column, ps.first)
			}
			if ps.years != nil {
				for y := range ps.years {
					d.Years = append(d.Years, y)
				}
				sort.Ints(d.Years)
			}
		}
		f.Date = d
	}
	return nil
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
