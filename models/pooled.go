package models

import (
	"fmt"
	"slices"
)

// HospitalColumn is the input and feature of a pooled model that says
// which hospital a case is from. ward's own names start with _ward_, which
// no contract column may.
const HospitalColumn = "_ward_hospital"

// reduced is a pooled model as one hospital's model builds on it: its
// predictions for that hospital's cases, in terms of the hospital's own
// encoder, holding nothing of the other hospitals.
type reduced struct {
	intercept float64
	coef      []float64 // ridge: one per column of the own encoder
	forest    *Forest   // gbdt
}

// forHospital reduces the pooled model a (fitted with HospitalColumn as
// its last feature) to the hospital whose value of it is level, on own,
// the hospital's encoder over the same features less the hospital's.
func (a *Artifact) forHospital(level string, own *Encoder) (reduced, error) {
	pe := a.Encoder
	n := len(pe.Features)
	if n != len(own.Features)+1 || pe.Features[n-1].Name != HospitalColumn {
		return reduced{}, fmt.Errorf("pooled model %s: want the features of the hospital's model and %s last", a.Version, HospitalColumn)
	}
	for i := range own.Features {
		o, p := &own.Features[i], &pe.Features[i]
		if o.Name != p.Name || o.Kind != p.Kind || o.Transform != p.Transform || !slices.Equal(o.Parts, p.Parts) {
			return reduced{}, fmt.Errorf("pooled model %s: feature %d is %s (%s), the hospital's %s (%s): not the same features", a.Version, i, p.Name, p.Kind, o.Name, o.Kind)
		}
	}
	hf := &pe.Features[n-1]
	code, ok := hf.levels[level]
	if !ok {
		code = len(hf.Categorical.Levels)
	}
	r := reduced{intercept: a.Intercept}
	if a.Forest != nil {
		fo, err := a.Forest.forHospital(pe, len(own.TreeFeatures()), code, own)
		if err != nil {
			return reduced{}, err
		}
		r.forest = fo
		return r, nil
	}
	// Ridge: the hospital's column joins the intercept; each feature's
	// coefficients are restated on the own encoder's columns.
	r.intercept += a.coef[hf.offset+code]
	r.coef = make([]float64, own.width)
	for i := range own.Features {
		o, p := &own.Features[i], &pe.Features[i]
		switch o.Kind {
		case Numeric:
			// c (x - mp)/sp = (c so/sp) (x - mo)/so + c (mo - mp)/sp
			c := a.coef[p.offset]
			r.coef[o.offset] = c * o.Numeric.Std / p.Numeric.Std
			r.intercept += c * (o.Numeric.Mean - p.Numeric.Mean) / p.Numeric.Std
		case Categorical:
			for k, pk := range levelMap(o, p) {
				r.coef[o.offset+k] = a.coef[p.offset+pk]
			}
		case DateParts:
			oo, po := o.offset, p.offset
			for _, part := range o.Parts {
				if part != "year" {
					copy(r.coef[oo:oo+o.partWidth(part)], a.coef[po:po+p.partWidth(part)])
				} else {
					for k := range o.partWidth(part) {
						pk := len(p.Date.Years)
						if k < len(o.Date.Years) {
							if j, ok := p.years[o.Date.Years[k]]; ok {
								pk = j
							}
						}
						r.coef[oo+k] = a.coef[po+pk]
					}
				}
				oo += o.partWidth(part)
				po += p.partWidth(part)
			}
		}
	}
	return r, nil
}

// withoutLast is the encoder without its last feature (a pooled model's
// hospital), over inputs.
func (e *Encoder) withoutLast(inputs []Column) (*Encoder, error) {
	out := &Encoder{Features: slices.Clone(e.Features[:len(e.Features)-1])}
	if err := out.prepare(inputs); err != nil {
		return nil, fmt.Errorf("the pooled model's encoder: %w", err)
	}
	return out, nil
}
