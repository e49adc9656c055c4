package train

import (
	"fmt"
	"slices"
	"strings"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
)

// HospitalColumn is the input and feature of the pooled model that says
// which hospital a case is from.
const HospitalColumn = models.HospitalColumn

// pool is the pooled baseline of a set of compatible hospitals: one model
// over all their training cases, with the hospital as a feature, on the
// same split as each hospital's own model.
type pool struct {
	members []*contract.Hospital // every compatible hospital, by id
	used    []string             // those whose cases could be prepared
	model   *models.Artifact     // the pooled ridge: the baseline
	err     error
	// gbdt is the pooled gbdt, fitted when a member lists gbdt-pooled.
	gbdt    *models.Artifact
	gbdtErr error
}

// compatibility is what hospitals must share to be pooled: the same
// features (names, kinds, transforms, levels, parts) over the same input
// columns of the same types, and the same target transform, so that one
// model can read all their rows and predict each one's target alike.
func compatibility(h *contract.Hospital) string {
	tr := h.Training
	cols := h.InputColumns()
	var b strings.Builder
	fmt.Fprintf(&b, "target %s;", tr.TargetTransform)
	for _, f := range tr.Features {
		var typ models.Type
		if j := slices.IndexFunc(cols, func(c models.Column) bool { return c.Name == f.Column }); j >= 0 {
			typ = cols[j].Type
		}
		fmt.Fprintf(&b, "%s:%s(%s %s) %s %d %v;", f.Name, f.Kind, f.Column, typ, f.Transform, f.MinCount, f.Parts)
	}
	return b.String()
}

// poolsOf groups the hospitals into pools, keeping those that pool a
// hospital being trained with at least one other.
func poolsOf(all []*contract.Hospital, ids []string) []*pool {
	byKey := map[string]*pool{}
	var out []*pool
	for _, h := range all {
		k := compatibility(h)
		p := byKey[k]
		if p == nil {
			p = &pool{}
			byKey[k] = p
			out = append(out, p)
		}
		p.members = append(p.members, h)
	}
	return slices.DeleteFunc(out, func(p *pool) bool {
		return len(p.members) < 2 || !slices.ContainsFunc(p.members, func(h *contract.Hospital) bool { return slices.Contains(ids, h.ID) })
	})
}

// fit fits the pooled model on the members whose cases were prepared:
// their main splits' training cases (capped as each one's are), and
// their validation cases, by which it chooses its penalty and is scored,
// hospital by hospital (its one segment is the hospital).
func (pl *pool) fit(prepared map[string]*dataset, ward string) {
	var ps []*dataset
	var left []string
	for _, h := range pl.members {
		p := prepared[h.ID]
		if p.err != nil {
			left = append(left, fmt.Sprintf("%s (%v)", h.ID, p.err))
			continue
		}
		ps = append(ps, p)
		pl.used = append(pl.used, h.ID)
	}
	if len(ps) < 2 {
		pl.err = fmt.Errorf("no other compatible hospital has cases to pool (left out: %s)", strings.Join(left, "; "))
		return
	}
	first := ps[0]
	spec := first.spec
	spec.Hospital = "pooled"
	spec.Inputs = append(slices.Clone(spec.Inputs), models.Column{Name: HospitalColumn, Type: models.String})
	spec.Features = append(slices.Clone(spec.Features), models.Feature{Name: HospitalColumn, Column: HospitalColumn, Kind: models.Categorical})
	spec.UnderRate = nil
	spec.Segments = []string{HospitalColumn}
	spec.Lineage = models.Lineage{Contract: first.h.Hash, Ward: ward}
	var train, valid []view
	wantGBDT := false
	for _, p := range ps {
		spec.Lineage.Files = append(spec.Lineage.Files, p.files...)
		// The columns of the first member's inputs, by name: the same in
		// every member, as compatibility says.
		inputs := make([]int, len(first.inputs))
		for j, c := range first.spec.Inputs {
			inputs[j] = p.column(c.Name)
		}
		// Each member's inner validation is its own: the pooled inner
		// model never sees any member's inner cases.
		train = append(train, view{p: p, idx: p.main.train, inputs: inputs, caps: p.capsOf(p.main.train), hospital: true, held: p.held})
		valid = append(valid, view{p: p, idx: p.main.valid, inputs: inputs, hospital: true})
		wantGBDT = wantGBDT || slices.Contains(p.h.Training.Model.Families, models.FamilyGBDTPooled)
	}
	spec.Family = models.FamilyRidge
	pl.model, pl.err = models.Fit(spec, concat(train), concat(valid))
	if wantGBDT {
		spec.Family = models.FamilyGBDT
		pl.gbdt, pl.gbdtErr = models.Fit(spec, concat(train), concat(valid))
	}
}

// priorsFor is the pooled models of the hospital's pool, by family, and
// why one is missing.
func priorsFor(id string, pools []*pool) (map[string]*models.Artifact, map[string]error) {
	priors, errs := map[string]*models.Artifact{}, map[string]error{}
	for _, pl := range pools {
		if !slices.ContainsFunc(pl.members, func(h *contract.Hospital) bool { return h.ID == id }) {
			continue
		}
		for family, m := range map[string]struct {
			a   *models.Artifact
			err error
		}{models.FamilyRidge: {pl.model, pl.err}, models.FamilyGBDT: {pl.gbdt, pl.gbdtErr}} {
			switch {
			case m.a != nil && slices.Contains(pl.used, id):
				priors[family] = m.a
			case m.err != nil:
				errs[family] = fmt.Errorf("no pooled %s model: %w", family, m.err)
			}
		}
	}
	return priors, errs
}

// concat yields the cases of each view in turn.
func concat(views []view) models.Cases {
	return func(yield func(models.Case, error) bool) {
		for _, v := range views {
			for c, err := range v.cases() {
				if !yield(c, err) {
					return
				}
			}
		}
	}
}

// pooledFor is the pooled baseline of a hospital: the pooled model's
// metrics on its validation window.
func pooledFor(r *Result, pools []*pool, prepared map[string]*dataset) Pooled {
	i := slices.IndexFunc(pools, func(p *pool) bool {
		return slices.ContainsFunc(p.members, func(h *contract.Hospital) bool { return h.ID == r.Hospital })
	})
	if i < 0 {
		return Pooled{Reason: "no pooled baseline: no other hospital declares the same features over the same columns"}
	}
	pl := pools[i]
	if prepared[r.Hospital].err != nil {
		return Pooled{Hospitals: pl.used, Reason: "no pooled baseline: this hospital's cases could not be prepared"}
	}
	if pl.err != nil {
		return Pooled{Hospitals: pl.used, Reason: fmt.Sprintf("no pooled baseline: %v", pl.err)}
	}
	for _, seg := range pl.model.Metrics["validation"].Segments[HospitalColumn] {
		if seg.Value == r.Hospital {
			m := seg.Metrics
			return Pooled{Hospitals: pl.used, Lambda: pl.model.Lambda, Metrics: &m}
		}
	}
	return Pooled{Hospitals: pl.used, Reason: "no pooled baseline: the pooled model has no validation case of this hospital"}
}
