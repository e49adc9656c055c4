package models

import (
	"fmt"
	"slices"
	"strings"
)

// FeatureKind says how a raw column becomes model features.
type FeatureKind string

// The feature kinds a contract may use.
const (
	// Numeric: standardised (mean 0, variance 1 on the training rows),
	// optionally after a log transform; a missing value becomes the mean.
	Numeric FeatureKind = "numeric"
	// Categorical: one-hot, with an "other" level for values seen fewer
	// than MinCount times in training and for values never seen.
	Categorical FeatureKind = "categorical"
	// DateParts: calendar parts of a date or timestamp (Parts), each one-hot.
	DateParts FeatureKind = "date"
)

// Transforms of a numeric feature or of the target.
const (
	NoTransform = "none"
	Log         = "log"   // natural log; values must be > 0
	Log1p       = "log1p" // log(1+x); values must be > -1
)

// DatePartNames lists the parts a date feature may take.
var DatePartNames = []string{"year", "quarter", "month", "week", "dow", "dom"}

// Feature is one feature of a model, as a contract declares it.
type Feature struct {
	// Name of the feature; defaults to Column.
	Name string `json:"name"`
	// Column is the input column it reads; defaults to Name.
	Column string      `json:"column"`
	Kind   FeatureKind `json:"kind"`
	// Transform of a numeric feature before standardising: none, log, log1p.
	Transform string `json:"transform,omitempty"`
	// MinCount of a categorical level in the training rows; rarer levels go
	// to "other". Default 1.
	MinCount int `json:"min_count,omitempty"`
	// Parts of a date feature (see DatePartNames). Default [month, dow].
	Parts []string `json:"parts,omitempty"`
}

// Normalize fills in the defaults and checks the feature's definition
// against the type of the column it reads.
func (f *Feature) Normalize(colType Type) error {
	if f.Name == "" {
		f.Name = f.Column
	}
	if f.Column == "" {
		f.Column = f.Name
	}
	if f.Name == "" {
		return fmt.Errorf("feature has neither name nor column")
	}
	switch f.Kind {
	case Numeric:
		if !colType.Numeric() || colType == Date || colType == Timestamp {
			return fmt.Errorf("feature %s: numeric needs an int, float or bool column, and %s is %s", f.Name, f.Column, colType)
		}
		if f.Transform == "" {
			f.Transform = NoTransform
		}
		if err := CheckTransform(f.Transform); err != nil {
			return fmt.Errorf("feature %s: %w", f.Name, err)
		}
	case Categorical:
		if f.MinCount == 0 {
			f.MinCount = 1
		}
		if f.MinCount < 0 {
			return fmt.Errorf("feature %s: min_count %d is negative", f.Name, f.MinCount)
		}
	case DateParts:
		if colType != Date && colType != Timestamp {
			return fmt.Errorf("feature %s: date needs a date or timestamp column, and %s is %s", f.Name, f.Column, colType)
		}
		if len(f.Parts) == 0 {
			f.Parts = []string{"month", "dow"}
		}
		for _, p := range f.Parts {
			if !slices.Contains(DatePartNames, p) {
				return fmt.Errorf("feature %s: unknown date part %q (want one of %s)", f.Name, p, strings.Join(DatePartNames, ", "))
			}
		}
	case "":
		return fmt.Errorf("feature %s: no kind (want numeric, categorical or date)", f.Name)
	default:
		return fmt.Errorf("feature %s: unknown kind %q (want numeric, categorical or date)", f.Name, f.Kind)
	}
	if f.Kind != Numeric && f.Transform != "" {
		return fmt.Errorf("feature %s: transform applies to numeric features only", f.Name)
	}
	if f.Kind != Categorical && f.MinCount != 0 {
		return fmt.Errorf("feature %s: min_count applies to categorical features only", f.Name)
	}
	if f.Kind != DateParts && len(f.Parts) > 0 {
		return fmt.Errorf("feature %s: parts applies to date features only", f.Name)
	}
	return nil
}

// CheckTransform accepts the names of the transforms.
func CheckTransform(t string) error {
	switch t {
	case NoTransform, Log, Log1p:
		return nil
	}
	return fmt.Errorf("unknown transform %q (want none, log or log1p)", t)
}
