package train

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/wardml/ward/models"
)

// The kinds of split.
const (
	TimeSplit   = "time"
	RandomSplit = "random"
)

// Split says how the cases were split into training and validation.
type Split struct {
	// Kind is time or random.
	Kind string `json:"kind"`
	// Training and Validation are the data windows of the two sides: the
	// first and last date of their cases (a time split only).
	Training   models.Window `json:"training,omitzero"`
	Validation models.Window `json:"validation,omitzero"`
	// Cutoff is the first day of the validation window and End the day
	// after its last (a time split only); Gap is the period left out
	// before the cutoff.
	Cutoff string `json:"cutoff,omitempty"`
	End    string `json:"end,omitempty"`
	Gap    string `json:"gap,omitempty"`
	// Grouped keeps each patient's cases on one side: Moved counts the
	// cases that went to validation with their patient.
	Grouped bool `json:"grouped,omitempty"`
	Moved   int  `json:"moved,omitempty"`
	// Cases on each side, and in the gap.
	TrainingCases   int `json:"training_cases"`
	ValidationCases int `json:"validation_cases"`
	GapCases        int `json:"gap_cases,omitempty"`
	// Fraction and Seed of a random split.
	Fraction float64 `json:"fraction,omitempty"`
	Seed     int64   `json:"seed,omitempty"`
}

// sides are the cases (row indices, in store order) of each side.
type sides struct{ train, valid []int }

// mainSplit is the split the contract asks for.
func (p *dataset) mainSplit() (sides, Split, error) {
	if p.h.Training.Split.Kind == RandomSplit {
		return p.randomSplit()
	}
	return p.timeSplit(0)
}

// otherSplit is the other kind of split, when the contract has a time
// column: the comparison that shows how optimistic a random split is.
func (p *dataset) otherSplit() (sides, Split, bool, error) {
	if p.at == nil {
		return sides{}, Split{}, false, nil
	}
	var s sides
	var sp Split
	var err error
	if p.split.Kind == TimeSplit {
		s, sp, err = p.randomSplit()
	} else {
		s, sp, err = p.timeSplit(0)
	}
	return s, sp, true, err
}

// timeSplit validates on the last window of the contract's length and
// trains on the cases before it, less the gap. fold steps the window back
// by its length fold times (the rolling-origin backtest); cases after
// the window are left out. The windows are whole days in UTC: the last
// one ends with the day of the latest case.
func (p *dataset) timeSplit(fold int) (sides, Split, error) {
	sp := p.h.Training.Split
	v, g := sp.Validation, sp.Gap
	end := time.Unix(slices.Max(p.at), 0).UTC().Truncate(24*time.Hour).AddDate(0, 0, 1)
	end = end.AddDate(0, -fold*v.Months, -fold*v.Days)
	cutoff := end.AddDate(0, -v.Months, -v.Days)
	trainEnd := cutoff.AddDate(0, -g.Months, -g.Days)
	out := Split{Kind: TimeSplit, Cutoff: day(cutoff.Unix()), End: day(end.Unix()), Gap: g.String(), Grouped: sp.Grouped}
	var s sides
	for i, t := range p.at {
		switch {
		case t >= end.Unix():
		case t >= cutoff.Unix():
			s.valid = append(s.valid, i)
		case t < trainEnd.Unix():
			s.train = append(s.train, i)
		default:
			out.GapCases++
		}
	}
	window := fmt.Sprintf("validation window %s to %s", out.Cutoff, day(end.AddDate(0, 0, -1).Unix()))
	if len(s.valid) == 0 {
		return s, out, fmt.Errorf("%s: %w: no case falls in it", window, models.ErrNoValidation)
	}
	if sp.Grouped {
		g := p.column(p.h.Training.GroupColumn)
		inValid := map[string]bool{}
		for _, i := range s.valid {
			if v := p.rows[i][g]; !v.Null {
				inValid[v.Format(p.cols[g].Type)] = true
			}
		}
		var moved []int
		s.train = slices.DeleteFunc(s.train, func(i int) bool {
			v := p.rows[i][g]
			if !v.Null && inValid[v.Format(p.cols[g].Type)] {
				moved = append(moved, i)
				return true
			}
			return false
		})
		out.Moved = len(moved)
		s.valid = append(s.valid, moved...)
		slices.Sort(s.valid)
	}
	if len(s.train) == 0 {
		return s, out, fmt.Errorf("%w: no case before %s (the %s, less the gap %s)", models.ErrTooFewRows, day(trainEnd.Unix()), window, out.Gap)
	}
	out.Training, out.Validation = p.window(s.train), p.window(s.valid)
	out.TrainingCases, out.ValidationCases = len(s.train), len(s.valid)
	return s, out, nil
}

// randomSplit validates on a seeded draw of the cases (of the patients,
// when grouped): the same seed and cases give the same draw.
func (p *dataset) randomSplit() (sides, Split, error) {
	sp := p.h.Training.Split
	out := Split{Kind: RandomSplit, Grouped: sp.Grouped, Fraction: sp.Fraction, Seed: sp.Seed}
	rng := rand.New(rand.NewPCG(uint64(sp.Seed), 0))
	g := -1
	if sp.Grouped {
		g = p.column(p.h.Training.GroupColumn)
	}
	held := map[string]bool{}
	var s sides
	for i, row := range p.rows {
		var valid bool
		if g >= 0 && !row[g].Null {
			key := row[g].Format(p.cols[g].Type)
			v, seen := held[key]
			if !seen {
				v = rng.Float64() < sp.Fraction
				held[key] = v
			}
			valid = v
		} else {
			valid = rng.Float64() < sp.Fraction
		}
		if valid {
			s.valid = append(s.valid, i)
		} else {
			s.train = append(s.train, i)
		}
	}
	if len(s.valid) == 0 {
		return s, out, fmt.Errorf("random split (fraction %g of %d cases): %w: the draw held out no case", sp.Fraction, len(p.rows), models.ErrNoValidation)
	}
	out.TrainingCases, out.ValidationCases = len(s.train), len(s.valid)
	return s, out, nil
}

// window is the first and last date of the cases.
func (p *dataset) window(idx []int) models.Window {
	lo, hi := p.at[idx[0]], p.at[idx[0]]
	for _, i := range idx {
		lo, hi = min(lo, p.at[i]), max(hi, p.at[i])
	}
	return models.Window{From: day(lo), To: day(hi)}
}

func day(unix int64) string { return time.Unix(unix, 0).UTC().Format(time.DateOnly) }

// innerSplit marks the training cases that the inner validation holds
// out, by the same kind of split as the outer one, inside the training
// part: for a time split its last validation window (grouped: with the
// earlier cases of the same patients); otherwise a seeded draw of the
// same fraction (of patients, when grouped). Every choice of the fit is
// made on it; the outer window is never part of it.
func (p *dataset) innerSplit(train []int) ([]bool, error) {
	sp := p.h.Training.Split
	held := make([]bool, len(p.rows))
	g := -1
	if sp.Grouped {
		g = p.column(p.h.Training.GroupColumn)
	}
	key := func(i int) (string, bool) {
		if g < 0 || p.rows[i][g].Null {
			return "", false
		}
		return p.rows[i][g].Format(p.cols[g].Type), true
	}
	var what string
	if sp.Kind == TimeSplit {
		last := p.at[train[0]]
		for _, i := range train {
			last = max(last, p.at[i])
		}
		end := time.Unix(last, 0).UTC().Truncate(24*time.Hour).AddDate(0, 0, 1)
		cutoff := end.AddDate(0, -sp.Validation.Months, -sp.Validation.Days)
		patients := map[string]bool{}
		for _, i := range train {
			if p.at[i] >= cutoff.Unix() {
				held[i] = true
				if k, ok := key(i); ok {
					patients[k] = true
				}
			}
		}
		for _, i := range train {
			if k, ok := key(i); ok && patients[k] {
				held[i] = true
			}
		}
		what = fmt.Sprintf("the inner validation window %s to %s (the training part's last %s)", day(cutoff.Unix()), day(end.AddDate(0, 0, -1).Unix()), sp.Validation)
	} else {
		rng := rand.New(rand.NewPCG(uint64(sp.Seed), 1))
		drawn := map[string]bool{}
		for _, i := range train {
			k, ok := key(i)
			if !ok {
				held[i] = rng.Float64() < sp.Fraction
				continue
			}
			v, seen := drawn[k]
			if !seen {
				v = rng.Float64() < sp.Fraction
				drawn[k] = v
			}
			held[i] = v
		}
		what = fmt.Sprintf("the inner random split (fraction %g of the training part)", sp.Fraction)
	}
	n := 0
	for _, i := range train {
		if held[i] && !p.rows[i][p.target].Null {
			n++
		}
	}
	withTarget := 0
	for _, i := range train {
		if !p.rows[i][p.target].Null {
			withTarget++
		}
	}
	switch {
	case n == 0:
		return nil, fmt.Errorf("%s: %w: it holds no training case with a %s; shorten split.validation or load more history", what, models.ErrNoValidation, p.h.Training.Target)
	case withTarget-n < 2:
		return nil, fmt.Errorf("%s: %w: it leaves %d training cases to fit on", what, models.ErrTooFewRows, withTarget-n)
	}
	return held, nil
}
