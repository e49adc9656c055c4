package models

import (
	"errors"
	"fmt"
	"math"
	"slices"
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

	// compiled by prepare: every tree's nodes, roots[t] being tree t's
	// first; the depth of each tree, then of each group of lanes trees
	// (their deepest); the leaves' values; the categorical splits' level
	// sets; each numeric tree feature's thresholds, so that a row is ranked
	// once and every split compares integers; and the codes of each tree
	// feature.
	nodes  []fnode
	roots  []int32
	depths []int32
	values []float64
	bits   []uint64
	cuts   [][]float64
	codes  []int
	quick  *scorer // nil: the trees are walked (add)
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

// fnode is a node as prediction walks it: 8 bytes, no pointers, the two
// children of a split side by side (left, then right), so that 500 trees
// of 31 leaves stay in a few hundred kB of cache. A node reads one slot of
// the ranked row (Forest.rank): a numeric split goes right when the slot
// is above arg, a categorical split when the slot's level code's bit is
// clear. A leaf reads a slot that is always 0 and is its own left child,
// so that a walk that has reached it stays there (see add).
type fnode struct {
	// arg is a numeric split's threshold: its rank among the feature's
	// thresholds (Forest.cuts), plus 1 when missing values go left; a
	// categorical split's offset into bits; a leaf's index into values.
	arg uint32
	off uint16 // the left child is this many nodes on (a leaf: 0)
	// slot is the slot a split reads, catSplit added for a categorical
	// one: 2f for tree feature f, 2f+1 for a numeric split that sends
	// missing values left. A leaf reads slot 2*(tree features).
	slot uint16
}

// catSplit marks a categorical split's slot.
const catSplit = 1 << 15

// missingRank is the rank of a missing numeric value: above every
// threshold's.
const missingRank = math.MaxUint32

// lanes is how many trees add walks side by side (add names each one).
const lanes = 8

// prepare checks the trees against the tree features (codes[f] is the
// number of codes of a categorical one, 0 for a numeric one) and compiles
// them.
func (fo *Forest) prepare(codes []int) error {
	if !(fo.LearningRate > 0 && fo.LearningRate <= 1) {
		return fmt.Errorf("learning_rate %v: want a number in (0, 1]", fo.LearningRate)
	}
	if len(codes) >= catSplit/2 {
		return fmt.Errorf("%d tree features: at most %d", len(codes), catSplit/2-1)
	}
	fo.nodes, fo.roots, fo.depths, fo.values, fo.bits = nil, nil, nil, nil, nil
	fo.cuts, fo.codes, fo.quick = make([][]float64, len(codes)), codes, nil
	for t, tree := range fo.Trees {
		if len(tree.Nodes) == 0 {
			return fmt.Errorf("trees[%d]: no nodes", t)
		}
		if len(tree.Nodes) > math.MaxUint16 {
			// A child is fewer nodes on from its parent than the tree has.
			return fmt.Errorf("trees[%d]: %d nodes: at most %d", t, len(tree.Nodes), math.MaxUint16)
		}
		for i, n := range tree.Nodes {
			if err := checkNode(tree.Nodes, i, codes); err != nil {
				return fmt.Errorf("trees[%d].nodes[%d]: %w", t, i, err)
			}
			if n.Left != 0 && codes[n.Feature] == 0 {
				fo.cuts[n.Feature] = append(fo.cuts[n.Feature], n.Threshold)
			}
		}
	}
	for f, c := range fo.cuts {
		slices.Sort(c)
		fo.cuts[f] = slices.Clip(slices.Compact(c))
	}
	type place struct {
		src   int
		dst   int32
		depth int32
	}
	var todo []place
	var seen []bool
	for t, tree := range fo.Trees {
		root := int32(len(fo.nodes))
		fo.roots = append(fo.roots, root)
		fo.nodes = append(fo.nodes, fnode{})
		todo = append(todo[:0], place{0, root, 0})
		depth := int32(0)
		seen = append(seen[:0], make([]bool, len(tree.Nodes))...)
		for len(todo) > 0 {
			p := todo[len(todo)-1]
			todo = todo[:len(todo)-1]
			if seen[p.src] {
				return fmt.Errorf("trees[%d].nodes[%d]: reached from two splits: want a tree", t, p.src)
			}
			seen[p.src] = true
			n := tree.Nodes[p.src]
			if n.Left == 0 {
				fo.nodes[p.dst] = fnode{arg: uint32(len(fo.values)), slot: uint16(2 * len(codes))}
				fo.values = append(fo.values, n.Value)
				depth = max(depth, p.depth)
				continue
			}
			left := int32(len(fo.nodes))
			fo.nodes = append(fo.nodes, fnode{}, fnode{})
			fn := fnode{off: uint16(left - p.dst), slot: uint16(2 * n.Feature)}
			switch {
			case codes[n.Feature] > 0:
				fn.slot, fn.arg = fn.slot|catSplit, uint32(len(fo.bits))
				words := make([]uint64, (codes[n.Feature]+63)/64)
				for _, k := range n.Categories {
					words[k/64] |= 1 << (k % 64)
				}
				fo.bits = append(fo.bits, words...)
			default:
				r, _ := slices.BinarySearch(fo.cuts[n.Feature], n.Threshold)
				fn.arg = uint32(r)
				if n.DefaultLeft {
					fn.slot, fn.arg = fn.slot+1, fn.arg+1
				}
			}
			fo.nodes[p.dst] = fn
			todo = append(todo, place{n.Right, left + 1, p.depth + 1}, place{n.Left, left, p.depth + 1})
		}
		fo.depths = append(fo.depths, depth)
	}
	for t := 0; t+lanes <= len(fo.Trees); t += lanes {
		fo.depths = append(fo.depths, slices.Max(fo.depths[t:t+lanes]))
	}
	fo.quick = newScorer(fo.Trees, codes, fo.cuts)
	return nil
}

// checkNode says what is wrong with node i of a tree.
func checkNode(nodes []Node, i int, codes []int) error {
	n := nodes[i]
	if n.Left == 0 {
		if n.Right != 0 || n.Feature != 0 || n.Threshold != 0 || n.Categories != nil || n.DefaultLeft {
			return errors.New("a leaf has a value only")
		}
		if !finite(n.Value) {
			return fmt.Errorf("value %v is not a finite number", n.Value)
		}
		return nil
	}
	switch {
	case n.Left <= i || n.Right <= i || n.Left >= len(nodes) || n.Right >= len(nodes) || n.Left == n.Right:
		return fmt.Errorf("children %d and %d: want two distinct nodes after this one", n.Left, n.Right)
	case n.Feature < 0 || n.Feature >= len(codes):
		return fmt.Errorf("feature %d: the model has %d tree features", n.Feature, len(codes))
	case n.Value != 0:
		return errors.New("a split has no value")
	}
	if c := codes[n.Feature]; c > 0 {
		if n.Threshold != 0 || n.DefaultLeft || len(n.Categories) == 0 {
			return errors.New("a categorical split has categories only")
		}
		if !slices.IsSorted(n.Categories) || n.Categories[0] < 0 || n.Categories[len(n.Categories)-1] >= c {
			return fmt.Errorf("categories %v: want sorted codes 0 to %d", n.Categories, c-1)
		}
		return nil
	}
	if n.Categories != nil || !finite(n.Threshold) {
		return errors.New("a numeric split has a finite threshold and no categories")
	}
	return nil
}

// rank writes the slots the nodes read for the tree features x into dst
// (reused when it has room), two per feature: a numeric value's rank among
// its feature's thresholds (the first threshold >= it, so that x <=
// threshold j exactly when its rank is <= j), missingRank for a missing
// one, then the rank plus 1, 0 for a missing one (so that it is below
// every threshold plus 1); a level code, twice. Then the 0 the leaves
// read.
func (fo *Forest) rank(dst []uint32, x []float64) []uint32 {
	dst = dst[:0]
	for f, v := range x {
		switch {
		case fo.codes[f] > 0:
			dst = append(dst, uint32(v), uint32(v))
		case math.IsNaN(v):
			dst = append(dst, missingRank, 0)
		default:
			r, _ := slices.BinarySearch(fo.cuts[f], v)
			dst = append(dst, uint32(r), uint32(r)+1)
		}
	}
	return append(dst, 0)
}

// next is where node i sends the ranked row r: one step of a walk (a leaf
// sends it to itself). A numeric split, left or right, is no branch.
func next(nodes []fnode, bits []uint64, r []uint32, i int32) int32 {
	n := nodes[i]
	v := r[n.slot&(catSplit-1)]
	i += int32(n.off)
	if n.slot >= catSplit {
		return i + int32(uint32(^bits[n.arg+v>>6]>>(v&63))&1)
	}
	return i + int32((uint64(n.arg)-uint64(v))>>63) // 1 when v > arg
}

// add adds each tree's leaf for the ranked row r to y, in tree order. It
// walks lanes trees at a time, side by side, so that the processor follows
// their independent paths at once instead of waiting on one; each walks as
// many steps as the deepest of them needs, a shallower one waiting at its
// leaf. The rest of the trees are walked one by one.
func (fo *Forest) add(y float64, r []uint32) float64 {
	nodes, bits, values, roots := fo.nodes, fo.bits, fo.values, fo.roots
	t := 0
	for _, d := range fo.depths[len(roots):] {
		g := roots[t : t+lanes : t+lanes]
		a0, a1, a2, a3, a4, a5, a6, a7 := g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]
		for ; d > 0; d-- {
			a0 = next(nodes, bits, r, a0)
			a1 = next(nodes, bits, r, a1)
			a2 = next(nodes, bits, r, a2)
			a3 = next(nodes, bits, r, a3)
			a4 = next(nodes, bits, r, a4)
			a5 = next(nodes, bits, r, a5)
			a6 = next(nodes, bits, r, a6)
			a7 = next(nodes, bits, r, a7)
		}
		y += values[nodes[a0].arg]
		y += values[nodes[a1].arg]
		y += values[nodes[a2].arg]
		y += values[nodes[a3].arg]
		y += values[nodes[a4].arg]
		y += values[nodes[a5].arg]
		y += values[nodes[a6].arg]
		y += values[nodes[a7].arg]
		t += lanes
	}
	for ; t < len(roots); t++ {
		i := roots[t]
		for d := fo.depths[t]; d > 0; d-- {
			i = next(nodes, bits, r, i)
		}
		y += values[nodes[i].arg]
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

// treeValues writes the tree features of a row into s: NaN for a missing
// numeric value or date; an unknown level is other, and listed in
// s.Unseen as Encode lists it.
func (e *Encoder) treeValues(s *Sparse, row []Value) error {
	s.reset()
	s.dense = s.dense[:0]
	if len(row) != e.inputs {
		return fmt.Errorf("row has %d values, want %d (one per input)", len(row), e.inputs)
	}
	for i := range e.Features {
		f := &e.Features[i]
		v := row[f.col]
		switch f.Kind {
		case Numeric:
			if v.Null {
				s.dense = append(s.dense, math.NaN())
				continue
			}
			x, err := f.transform(v)
			if err != nil {
				return err
			}
			s.dense = append(s.dense, x)
		case Categorical:
			s.key = levelKey(s.key[:0], v, f.typ)
			pos, known := f.levels[string(s.key)]
			if !known {
				pos = len(f.Categorical.Levels)
				if len(s.key) > 0 {
					s.Unseen = append(s.Unseen, i)
				}
			}
			s.dense = append(s.dense, float64(pos))
		case DateParts:
			if v.Null {
				for range f.Parts {
					s.dense = append(s.dense, math.NaN())
				}
				continue
			}
			t := v.Time(f.typ)
			for _, p := range f.Parts {
				if _, known := f.partPosition(p, t); !known {
					s.Unseen = append(s.Unseen, i)
				}
				s.dense = append(s.dense, float64(datePart(p, t)))
			}
		}
	}
	return nil
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
