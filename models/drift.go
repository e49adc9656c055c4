package models

import (
	"fmt"
	"math"
	"slices"
	"sort"
)

// Summary is the distribution of a model's features over its validation
// window, kept in the artifact so that feedback can measure how far live
// inputs have drifted from it (Drift). The validation window is the
// model's most recent data and the one its validation metrics come from,
// so live error and live inputs are judged against the same cases; over
// the whole training window, slow and expected change (doctors who left a
// year ago, say) would read as drift the day the model ships. The bins of
// a numeric feature are cut at the deciles of the training rows. Date
// features have none: time moving on is not drift.
type Summary struct {
	Features []FeatureSummary `json:"features"`
}

// FeatureSummary is the distribution of one feature over the model's
// validation window as shares over bins (Shares and Missing sum to 1). A numeric
// feature's bins are cut at Edges, about the deciles of its training
// values (bin i holds Edges[i-1] < x <= Edges[i]); a categorical feature's
// bins are its encoded columns: its levels, then other.
type FeatureSummary struct {
	Feature string    `json:"feature"`
	Edges   []float64 `json:"edges,omitempty"`
	Shares  []float64 `json:"shares"`
	// Missing is the share of rows without a value (numeric features; a
	// categorical one counts them in its levels).
	Missing float64 `json:"missing"`
}

// sampleCap bounds the values a numeric feature keeps to find its
// deciles: beyond it, every other value is dropped and the stride doubles,
// so the sample is every 2^k-th row, the same for the same rows.
const sampleCap = 1 << 16

type sample struct {
	values []float64
	stride int
	seen   int
}

func (s *sample) add(x float64) {
	if s.stride == 0 {
		s.stride = 1
	}
	if s.seen%s.stride == 0 {
		s.values = append(s.values, x)
		if len(s.values) == 2*sampleCap {
			for i := range sampleCap {
				s.values[i] = s.values[2*i]
			}
			s.values = s.values[:sampleCap]
			s.stride *= 2
		}
	}
	s.seen++
}

// deciles returns the distinct deciles of the sample and the share of the
// sample in each bin they cut.
func (s *sample) deciles() (edges, shares []float64) {
	v := slices.Clone(s.values)
	slices.Sort(v)
	m := len(v)
	for q := 1; q < 10; q++ {
		e := v[(q*m+9)/10-1]
		if len(edges) == 0 || e > edges[len(edges)-1] {
			edges = append(edges, e)
		}
	}
	shares = make([]float64, len(edges)+1)
	for _, x := range v {
		shares[sort.SearchFloat64s(edges, x)]++
	}
	for i := range shares {
		shares[i] /= float64(m)
	}
	return edges, shares
}

// summary builds the training summary from the fit's counts.
func (fit *EncoderFit) summary(e *Encoder) Summary {
	s := Summary{Features: []FeatureSummary{}}
	rows := float64(fit.rows)
	for i := range e.Features {
		f, st := &e.Features[i], &fit.stats[i]
		switch f.Kind {
		case Numeric:
			if st.n == 0 {
				// No value in these rows (a pooled model's encoder may
				// hold a feature the hospital never fills).
				s.Features = append(s.Features, FeatureSummary{Feature: f.Name, Shares: []float64{0}, Missing: 1})
				continue
			}
			edges, shares := st.sample.deciles()
			present := st.n / rows
			for j := range shares {
				shares[j] *= present
			}
			s.Features = append(s.Features, FeatureSummary{Feature: f.Name, Edges: edges, Shares: shares, Missing: 1 - present})
		case Categorical:
			shares := make([]float64, f.width)
			for j, name := range st.names {
				pos, ok := f.levels[name]
				if !ok {
					pos = f.width - 1
				}
				shares[pos] += float64(st.counts[j])
			}
			for j := range shares {
				shares[j] /= rows
			}
			s.Features = append(s.Features, FeatureSummary{Feature: f.Name, Shares: shares})
		}
	}
	return s
}

// recount makes the summary's shares those of the rows d counted, in the
// same bins.
func (s *Summary) recount(d *Drift) {
	rows := float64(d.rows)
	for i := range s.Features {
		fs, c := &s.Features[i], d.counts[i]
		for j := range fs.Shares {
			fs.Shares[j] = c[j] / rows
		}
		fs.Missing = c[len(c)-1] / rows
	}
}

// check validates a decoded summary against the encoder.
func (s *Summary) check(e *Encoder) error {
	byName := map[string]*FittedFeature{}
	for i := range e.Features {
		byName[e.Features[i].Name] = &e.Features[i]
	}
	for _, fs := range s.Features {
		f, ok := byName[fs.Feature]
		if !ok {
			return fmt.Errorf("feature %q is not a feature of the model", fs.Feature)
		}
		want := len(fs.Edges) + 1
		switch f.Kind {
		case Categorical:
			want = f.width
			if len(fs.Edges) > 0 {
				return fmt.Errorf("feature %s: a categorical feature has no edges", f.Name)
			}
		case DateParts:
			return fmt.Errorf("feature %s: a date feature has no summary", f.Name)
		}
		if len(fs.Shares) != want {
			return fmt.Errorf("feature %s: %d shares, want %d", f.Name, len(fs.Shares), want)
		}
		if !slices.IsSorted(fs.Edges) {
			return fmt.Errorf("feature %s: edges are not sorted", f.Name)
		}
		total := fs.Missing
		for _, x := range append(slices.Clone(fs.Edges), fs.Shares...) {
			if !finite(x) {
				return fmt.Errorf("feature %s: %v is not a finite number", f.Name, x)
			}
		}
		for _, x := range fs.Shares {
			if x < 0 {
				return fmt.Errorf("feature %s: negative share %v", f.Name, x)
			}
			total += x
		}
		if math.Abs(total-1) > 1e-6 {
			return fmt.Errorf("feature %s: shares sum to %v, want 1", f.Name, total)
		}
	}
	return nil
}

// PSI bands: below 0.1 the population is stable, up to 0.25 it deserves a
// watch, above it the model should be acted on.
const (
	Stable = "stable"
	Watch  = "watch"
	Act    = "act"
)

// Band names the band of a PSI value.
func Band(psi float64) string {
	switch {
	case psi < 0.1:
		return Stable
	case psi <= 0.25:
		return Watch
	}
	return Act
}

// psiFloor stands in for an empty bin, whose log would be infinite.
const psiFloor = 1e-4

// PSI is the population stability index of actual shares against
// expected ones over the same bins: sum (a - e) * ln(a / e), with empty
// bins counted as a share of 1e-4.
func PSI(expected, actual []float64) float64 {
	psi := 0.0
	for i, e := range expected {
		e, a := math.Max(e, psiFloor), math.Max(actual[i], psiFloor)
		psi += (a - e) * math.Log(a/e)
	}
	return psi
}

// Drift accumulates live rows and compares their distribution with the
// training summary, feature by feature.
type Drift struct {
	enc     *Encoder
	summary *Summary
	feature []*FittedFeature
	counts  [][]float64 // per summarised feature: bins, then missing
	rows    int
	key     []byte
}

// FeatureDrift is one feature's PSI, live against training, and its band.
type FeatureDrift struct {
	Feature string  `json:"feature"`
	PSI     float64 `json:"psi"`
	Band    string  `json:"band"`
}

// Drift starts measuring live rows (aligned with the model's inputs)
// against the training summary.
func (a *Artifact) Drift() *Drift {
	d := &Drift{enc: a.Encoder, summary: &a.Summary}
	for _, fs := range a.Summary.Features {
		for i := range a.Encoder.Features {
			if a.Encoder.Features[i].Name == fs.Feature {
				d.feature = append(d.feature, &a.Encoder.Features[i])
			}
		}
		d.counts = append(d.counts, make([]float64, len(fs.Shares)+1))
	}
	return d
}

// Add counts one live row.
func (d *Drift) Add(row []Value) error {
	if len(row) != d.enc.inputs {
		return fmt.Errorf("row has %d values, want %d (one per input)", len(row), d.enc.inputs)
	}
	for i, f := range d.feature {
		c := d.counts[i]
		v := row[f.col]
		switch f.Kind {
		case Numeric:
			if v.Null {
				c[len(c)-1]++
				continue
			}
			c[sort.SearchFloat64s(d.summary.Features[i].Edges, v.Num)]++
		case Categorical:
			d.key = levelKey(d.key[:0], v, f.typ)
			pos, ok := f.levels[string(d.key)]
			if !ok {
				pos = f.width - 1
			}
			c[pos]++
		}
	}
	d.rows++
	return nil
}

// Rows is the number of live rows added.
func (d *Drift) Rows() int { return d.rows }

// Result returns the PSI of every summarised feature, in the model's order
// of features. No live rows give no result.
func (d *Drift) Result() []FeatureDrift {
	if d.rows == 0 {
		return nil
	}
	out := make([]FeatureDrift, len(d.feature))
	for i, fs := range d.summary.Features {
		expected := append(slices.Clone(fs.Shares), fs.Missing)
		live := make([]float64, len(d.counts[i]))
		for j, c := range d.counts[i] {
			live[j] = c / float64(d.rows)
		}
		psi := PSI(expected, live)
		out[i] = FeatureDrift{Feature: fs.Feature, PSI: psi, Band: Band(psi)}
	}
	return out
}
