package train

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/store"
)

// Rule is one cleaning rule of the contract and what it did.
type Rule struct {
	// Rule is the rule as the contract says it, e.g. "drop_if status in
	// [cancelled]".
	Rule string `json:"rule"`
	// Removed is the cases it dropped (drop rules).
	Removed int `json:"removed"`
	// Capped is the values it lowered to Cap in the training cases of the
	// main split (cap_percentile).
	Capped int      `json:"capped,omitempty"`
	Cap    *float64 `json:"cap,omitempty"`
}

// dataset is one hospital's cases after cleaning, with what the fits
// need to see them: the model's spec, the main split, the caps.
type dataset struct {
	h    *contract.Hospital
	cols []models.Column // the joined row: Hospital.InputColumns()
	rows [][]models.Value
	// at is each row's time in Unix seconds; nil without a time column.
	at       []int64
	target   int
	segments []int // columns of the spec's segments
	inputs   []int // columns of the spec's inputs
	read     int
	cleaning []Rule
	caps     []capRule
	files    []models.File
	spec     models.Spec
	main     sides
	split    Split
	held     []bool // the main split's inner validation (innerSplit)
	err      error
}

// capRule is a cap_percentile rule: its column, percentile and place in
// the report.
type capRule struct {
	col  int
	p    float64
	rule int // index into cleaning
}

// capping is a cap_percentile rule resolved on one set of training cases.
type capping struct {
	col   int
	limit float64
	rule  int
}

// prepare reads a hospital's cases and cleans them as its contract says:
// the drop rules in order on every case, then the main split; the caps
// apply to the training cases of each split, at the percentile of those
// cases, so that nothing of a validation window leaks into training and
// validation errors are measured on the bills as they were. Errors are
// kept in the result: a hospital that cannot be prepared is reported, and
// left out of the pooled baseline.
func prepare(ctx context.Context, s *store.Store, h *contract.Hospital, ward string) *dataset {
	p := &dataset{h: h}
	p.err = p.load(ctx, s, ward)
	return p
}

func (p *dataset) load(ctx context.Context, s *store.Store, ward string) error {
	h, tr := p.h, &p.h.Training
	ds := s.Training(h)
	p.cols = ds.Columns
	for row, err := range ds.Rows(ctx) {
		if err != nil {
			return err
		}
		p.rows = append(p.rows, row)
	}
	p.read = len(p.rows)
	if p.read == 0 {
		return fmt.Errorf("%w: load its extracts with ward ingest first", ErrNoData)
	}
	col := p.column
	p.target = col(tr.Target)

	// A column that the contract names and no loaded row fills was added
	// to the contract after its extracts were loaded, or the extracts
	// send it empty: no model can use it.
	uses := []struct{ name, what string }{{tr.Target, "the target"}}
	if tr.TimeColumn != "" {
		uses = append(uses, struct{ name, what string }{tr.TimeColumn, "the time column"})
	}
	if tr.Split.Grouped {
		uses = append(uses, struct{ name, what string }{tr.GroupColumn, "the group column"})
	}
	for _, f := range tr.Features {
		uses = append(uses, struct{ name, what string }{f.Column, "read by feature " + f.Name})
	}
	var empty []error
	for _, u := range uses {
		j := col(u.name)
		if !slices.ContainsFunc(p.rows, func(r []models.Value) bool { return !r[j].Null }) {
			empty = append(empty, fmt.Errorf("column %s (%s) has no value in any of the %d cases in the database: the extracts loaded so far do not fill it (was it added to the contract after they were loaded?); fill it in the extracts, or take it out of the training section", u.name, u.what, p.read))
		}
	}
	if err := errors.Join(empty...); err != nil {
		return err
	}

	if err := p.clean(); err != nil {
		return err
	}
	var err error
	p.files, err = lineageFiles(ctx, s, h.ID, ds.Lineage.Files)
	if err != nil {
		return err
	}
	if p.spec, err = h.ModelSpec(p.cols, models.Lineage{Files: p.files, Contract: h.Hash, Ward: ward}); err != nil {
		return err
	}
	for _, c := range p.spec.Inputs {
		p.inputs = append(p.inputs, col(c.Name))
	}
	for _, name := range tr.Segments {
		p.segments = append(p.segments, col(name))
	}
	if p.main, p.split, err = p.mainSplit(); err != nil {
		return err
	}
	if p.held, err = p.innerSplit(p.main.train); err != nil {
		return p.advise(err, p.split)
	}
	for _, c := range p.capsOf(p.main.train) {
		r := &p.cleaning[c.rule]
		r.Cap = &c.limit
		for _, i := range p.main.train {
			if v := p.rows[i][c.col]; !v.Null && v.Num > c.limit {
				r.Capped++
			}
		}
	}
	return nil
}

// column is the position of a column of the joined row; the contract
// loader has checked that every name the training section uses is one.
func (p *dataset) column(name string) int {
	return slices.IndexFunc(p.cols, func(c models.Column) bool { return c.Name == name })
}

// clean applies the drop rules in contract order, counting what each
// removed, drops the cases without a time (which no time split can
// place), and sets the times.
func (p *dataset) clean() error {
	tr := &p.h.Training
	for _, r := range tr.Cleaning {
		rule := Rule{Rule: describe(r)}
		var drop func(row []models.Value) bool
		switch {
		case r.DropIf != nil:
			j := p.column(r.DropIf.Column)
			drop = func(row []models.Value) bool { return slices.Contains(r.DropIf.In, row[j].Format(p.cols[j].Type)) }
		case r.DropMissing != "":
			j := p.column(r.DropMissing)
			drop = func(row []models.Value) bool { return row[j].Null }
		case r.DropOutside != nil:
			j := p.column(r.DropOutside.Column)
			lo, hi := r.DropOutside.Min, r.DropOutside.Max
			drop = func(row []models.Value) bool {
				v := row[j]
				return !v.Null && ((lo != nil && v.Num < *lo) || (hi != nil && v.Num > *hi))
			}
		case r.CapPercentile != nil:
			p.caps = append(p.caps, capRule{col: p.column(r.CapPercentile.Column), p: r.CapPercentile.P, rule: len(p.cleaning)})
		}
		if drop != nil {
			before := len(p.rows)
			p.rows = slices.DeleteFunc(p.rows, drop)
			rule.Removed = before - len(p.rows)
		}
		p.cleaning = append(p.cleaning, rule)
	}
	if tr.TimeColumn != "" {
		j := p.column(tr.TimeColumn)
		before := len(p.rows)
		p.rows = slices.DeleteFunc(p.rows, func(row []models.Value) bool { return row[j].Null })
		if n := before - len(p.rows); n > 0 {
			p.cleaning = append(p.cleaning, Rule{Rule: "drop_missing " + tr.TimeColumn + " (the time column: a case without a time has no side in a time split)", Removed: n})
		}
		p.at = make([]int64, len(p.rows))
		for i, row := range p.rows {
			p.at[i] = row[j].Time(p.cols[j].Type).Unix()
		}
	}
	if len(p.rows) == 0 {
		return fmt.Errorf("the cleaning rules removed all %d cases: check the rules (cleaning in the contract) and the data", p.read)
	}
	return nil
}

// describe writes a cleaning rule as the contract says it.
func describe(r contract.CleaningRule) string {
	switch {
	case r.DropIf != nil:
		return fmt.Sprintf("drop_if %s in [%s]", r.DropIf.Column, strings.Join(r.DropIf.In, ", "))
	case r.DropMissing != "":
		return "drop_missing " + r.DropMissing
	case r.CapPercentile != nil:
		return fmt.Sprintf("cap_percentile %s at p%g", r.CapPercentile.Column, r.CapPercentile.P)
	}
	var b strings.Builder
	b.WriteString("drop_outside " + r.DropOutside.Column)
	if r.DropOutside.Min != nil {
		fmt.Fprintf(&b, " min %g", *r.DropOutside.Min)
	}
	if r.DropOutside.Max != nil {
		fmt.Fprintf(&b, " max %g", *r.DropOutside.Max)
	}
	return b.String()
}

// capsOf resolves the cap rules on a set of training cases: each caps its
// column at the percentile (nearest rank) of the values those cases have.
func (p *dataset) capsOf(train []int) []capping {
	var out []capping
	for _, c := range p.caps {
		var vs []float64
		for _, i := range train {
			if v := p.rows[i][c.col]; !v.Null {
				vs = append(vs, v.Num)
			}
		}
		if len(vs) == 0 {
			continue
		}
		slices.Sort(vs)
		rank := int(math.Ceil(c.p / 100 * float64(len(vs))))
		out = append(out, capping{col: c.col, limit: vs[min(max(rank, 1), len(vs))-1], rule: c.rule})
	}
	return out
}

// lineageFiles names the files the rows came from by their ledger
// entries, sorted by name.
func lineageFiles(ctx context.Context, s *store.Store, hospital string, hashes []string) ([]models.File, error) {
	entries, err := s.Files(ctx, store.FileQuery{Hospital: hospital, State: store.Loaded})
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	for _, e := range entries {
		names[e.SHA256] = e.Name
	}
	files := make([]models.File, 0, len(hashes))
	for _, sha := range hashes {
		name, ok := names[sha]
		if !ok {
			return nil, fmt.Errorf("lineage: rows come from a file with SHA-256 %s that the ledger has no loaded entry of", sha)
		}
		files = append(files, models.File{Name: name, SHA256: sha})
	}
	slices.SortFunc(files, func(a, b models.File) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.SHA256, b.SHA256))
	})
	return files, nil
}
