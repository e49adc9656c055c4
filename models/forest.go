package models

import (
	"fmt"
	"math"
	"slices"
	"strconv"
)

// Forest is the trees of a gradient-boosted model: the prediction in the
// transformed space is the artifact's Intercept plus the value of the leaf
// each tree sends the row to, added in tree order. Trees read the tree
// features of the artifact's encoder (Encoder.TreeFeatures): a numeric
// feature's transformed value, a categorical feature's level code (its
// position in the levels, other last), a date part's value.
type Forest struct {
	// LearningRate the trees were grown with (their values are already
	// shrunk by it).
	LearningRate float64 `json:"learning_rate"`
	Trees        []Tree  `json:"trees"`

	nodes []fnode // every tree's nodes, compiled; roots[t] is tree t's first
	roots []int32
	bits  []uint64
}

// Tree is one regression tree; Nodes[0] is its root.
type Tree struct {
	Nodes []Node `json:"nodes"`
}

// Node is a split (Left > 0) or a leaf. A split sends a row left when its
// feature's value is <= Threshold (a numeric feature; a missing value goes
// left when DefaultLeft), or is one of Categories (a categorical feature;
// any other level, unseen ones included, goes right).
type Node struct {
	Feature     int     `json:"f,omitempty"`
	Threshold   float64 `json:"t,omitempty"`
	Categories  []int   `json:"c,omitempty"`
	DefaultLeft bool    `json:"d,omitempty"`
	Left        int     `json:"l,omitempty"`
	Right       int     `json:"r,omitempty"`
	Value       float64 `json:"v,omitempty"`
}

// fnode is a node as prediction walks it: flat, no pointers.
type fnode struct {
	thr         float64 // split: threshold; leaf: value
	feat        int32   // -1: leaf
	left, right int32   // absolute indices into nodes
	cat         int32   // offset into bits; -1: a numeric split
	defaultLeft bool
}

// prepare checks the trees against the tree features (codes[f] is the
// number of codes of a categorical one, 0 for a numeric one) and compiles
// them.
func (fo *Forest) prepare(codes []int) error {
	if !(fo.LearningRate > 0 && fo.LearningRate <= 1) {
		return fmt.Errorf("learning_rate %v: want a number in (0, 1]", fo.LearningRate)
	}
	fo.nodes, fo.roots, fo.bits = nil, nil, nil
	for t, tree := range fo.Trees {
		if len(tree.Nodes) == 0 {
			return fmt.Errorf("trees[%d]: no nodes", t)
		}
		base := int32(len(fo.nodes))
		fo.roots = append(fo.roots, base)
		for i, n := range tree.Nodes {
			where := "trees[" + strconv.Itoa(t) + "].nodes[" + strconv.Itoa(i) + "]"
			if n.Left == 0 {
				if n.Right != 0 || n.Feature != 0 || n.Threshold != 0 || n.Categories != nil || n.DefaultLeft {
					return fmt.Errorf("%s: a leaf has a value only", where)
				}
				if !finite(n.Value) {
					return fmt.Errorf("%s: value %v is not a finite number", where, n.Value)
				}
				fo.nodes = append(fo.nodes, fnode{thr: n.Value, feat: -1})
				continue
			}
			switch {
			case n.Left <= i || n.Right <= i || n.Left >= len(tree.Nodes) || n.Right >= len(tree.Nodes) || n.Left == n.Right:
				return fmt.Errorf("%s: children %d and %d: want two distinct nodes after this one", where, n.Left, n.Right)
			case n.Feature < 0 || n.Feature >= len(codes):
				return fmt.Errorf("%s: feature %d: the model has %d tree features", where, n.Feature, len(codes))
			case n.Value != 0:
				return fmt.Errorf("%s: a split has no value", where)
			}
			fn := fnode{feat: int32(n.Feature), left: base + int32(n.Left), right: base + int32(n.Right), cat: -1, defaultLeft: n.DefaultLeft}
			if c := codes[n.Feature]; c > 0 {
				if n.Threshold != 0 || n.DefaultLeft || len(n.Categories) == 0 {
					return fmt.Errorf("%s: a categorical split has categories only", where)
				}
				if !slices.IsSorted(n.Categories) || n.Categories[0] < 0 || n.Categories[len(n.Categories)-1] >= c {
					return fmt.Errorf("%s: categories %v: want sorted codes 0 to %d", where, n.Categories, c-1)
				}
				fn.cat = int32(len(fo.bits))
				words := make([]uint64, (c+63)/64)
				for _, k := range n.Categories {
					words[k/64] |= 1 << (k % 64)
				}
				fo.bits = append(fo.bits, words...)
			} else {
				if n.Categories != nil || !finite(n.Threshold) {
					return fmt.Errorf("%s: a numeric split has a finite threshold and no categories", where)
				}
				fn.thr = n.Threshold
			}
			fo.nodes = append(fo.nodes, fn)
		}
	}
	return nil
}

// add adds each tree's leaf for the tree features x to y, in tree order.
func (fo *Forest) add(y float64, x []float64) float64 {
	nodes, bits := fo.nodes, fo.bits
	for _, i := range fo.roots {
		n := &nodes[i]
		for n.feat >= 0 {
			v := x[n.feat]
			var left bool
			switch {
			case n.cat >= 0:
				k := int(v)
				left = bits[int(n.cat)+k/64]&(1<<(k%64)) != 0
			case math.IsNaN(v):
				left = n.defaultLeft
			default:
				left = v <= n.thr
			}
			if left {
				n = &nodes[n.left]
			} else {
				n = &nodes[n.right]
			}
		}
		y += n.thr
	}
	return y
}

// TreeFeatures names the values the trees read: a numeric or categorical
// feature's name, a date part as name.part.
func (e *Encoder) TreeFeatures() []string {
	var out []string
	for _, f := range e.Features {
		if f.Kind == DateParts {
			for _, p := range f.Parts {
				out = append(out, f.Name+"."+p)
			}
			continue
		}
		out = append(out, f.Name)
	}
	return out
}

// codes is the number of codes of each tree feature: a categorical one's
// levels and other, 0 for the others.
func (e *Encoder) codes() []int {
	var out []int
	for _, f := range e.Features {
		switch f.Kind {
		case Categorical:
			out = append(out, f.width)
		case DateParts:
			for range f.Parts {
				out = append(out, 0)
			}
		default:
			out = append(out, 0)
		}
	}
	return out
}

// Dense writes the tree features of a row into dst (reused when it has
// room): NaN for a missing numeric value or date.
func (e *Encoder) Dense(dst []float64, row []Value) ([]float64, error) {
	if len(row) != e.inputs {
		return dst, fmt.Errorf("row has %d values, want %d (one per input)", len(row), e.inputs)
	}
	dst = dst[:0]
	var key []byte
	for i := range e.Features {
		f := &e.Features[i]
		v := row[f.col]
		switch f.Kind {
		case Numeric:
			if v.Null {
				dst = append(dst, math.NaN())
				continue
			}
			x, err := f.transform(v)
			if err != nil {
				return dst, err
			}
			dst = append(dst, x)
		case Categorical:
			key = levelKey(key[:0], v, f.typ)
			pos, known := f.levels[string(key)]
			if !known {
				pos = len(f.Categorical.Levels)
			}
			dst = append(dst, float64(pos))
		case DateParts:
			for _, p := range f.Parts {
				if v.Null {
					dst = append(dst, math.NaN())
					continue
				}
				dst = append(dst, float64(datePart(p, v.Time(f.typ))))
			}
		}
	}
	return dst, nil
}

// levelMap maps each code of a categorical feature of own (levels, then
// other) to the code of the same level in the same feature of another
// encoder (its other when it lacks the level).
func levelMap(own, other *FittedFeature) []int {
	m := make([]int, own.width)
	for k := range m {
		m[k] = len(other.Categorical.Levels)
		if k < len(own.Categorical.Levels) {
			if pos, ok := other.levels[own.Categorical.Levels[k]]; ok {
				m[k] = pos
			}
		}
	}
	return m
}

// forHospital is the pooled forest as one hospital's server needs it: the
// splits on the hospital's feature (tree feature hf) resolved for its code
// (so that the trees read none of the other hospitals), and the levels of
// the categorical features recoded from the pooled encoder to own, the
// hospital's own (the pooled one without the hospital feature).
func (fo *Forest) forHospital(pooled *Encoder, hf, code int, own *Encoder) (*Forest, error) {
	// Tree feature -> recoding of its levels (categorical features only).
	var maps [][]int
	for i := range own.Features {
		f := &own.Features[i]
		switch f.Kind {
		case Categorical:
			maps = append(maps, levelMap(f, &pooled.Features[i]))
		case DateParts:
			for range f.Parts {
				maps = append(maps, nil)
			}
		default:
			maps = append(maps, nil)
		}
	}
	if hf != len(maps) {
		return nil, fmt.Errorf("pooled forest: hospital feature %d, want the last tree feature (%d)", hf, len(maps))
	}
	out := &Forest{LearningRate: fo.LearningRate}
	for _, t := range fo.Trees {
		var nt Tree
		var walk func(i int) int
		walk = func(i int) int {
			n := t.Nodes[i]
			for n.Left != 0 && n.Feature == hf {
				if _, left := slices.BinarySearch(n.Categories, code); left {
					n = t.Nodes[n.Left]
				} else {
					n = t.Nodes[n.Right]
				}
			}
			at := len(nt.Nodes)
			nt.Nodes = append(nt.Nodes, Node{})
			if n.Left == 0 {
				nt.Nodes[at] = Node{Value: n.Value}
				return at
			}
			m := Node{Feature: n.Feature, Threshold: n.Threshold, DefaultLeft: n.DefaultLeft}
			if rec := maps[n.Feature]; rec != nil {
				for k, pk := range rec {
					if _, in := slices.BinarySearch(n.Categories, pk); in {
						m.Categories = append(m.Categories, k)
					}
				}
			}
			m.Left = walk(n.Left)
			m.Right = walk(n.Right)
			if maps[n.Feature] != nil && len(m.Categories) == 0 {
				// No level of this hospital goes left: the right side is
				// the whole subtree.
				right := slices.Clone(nt.Nodes[m.Right:])
				nt.Nodes = nt.Nodes[:at]
				return appendShifted(&nt, right, m.Right-at)
			}
			if maps[n.Feature] != nil && len(m.Categories) == len(maps[n.Feature]) {
				left := slices.Clone(nt.Nodes[m.Left:m.Right])
				nt.Nodes = nt.Nodes[:at]
				return appendShifted(&nt, left, m.Left-at)
			}
			nt.Nodes[at] = m
			return at
		}
		walk(0)
		out.Trees = append(out.Trees, nt)
	}
	if err := out.prepare(own.codes()); err != nil {
		return nil, fmt.Errorf("pooled forest for one hospital: %w", err)
	}
	return out, nil
}

// appendShifted appends a subtree whose node indices are by shift too high
// for where it now starts, and returns its root's index.
func appendShifted(t *Tree, sub []Node, shift int) int {
	at := len(t.Nodes)
	for _, n := range sub {
		if n.Left != 0 {
			n.Left -= shift
			n.Right -= shift
		}
		t.Nodes = append(t.Nodes, n)
	}
	return at
}
