package models

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// walkTrees is the forest's prediction walked the straightforward way:
// each tree from its root, comparing the raw values with the thresholds,
// the leaves added in tree order.
func walkTrees(fo *Forest, y float64, x []float64) float64 {
	for _, t := range fo.Trees {
		n := t.Nodes[0]
		for n.Left != 0 {
			v := x[n.Feature]
			var left bool
			switch {
			case fo.codes[n.Feature] > 0:
				_, left = slices.BinarySearch(n.Categories, int(v))
			case math.IsNaN(v):
				left = n.DefaultLeft
			default:
				left = v <= n.Threshold
			}
			if left {
				n = t.Nodes[n.Left]
			} else {
				n = t.Nodes[n.Right]
			}
		}
		y += n.Value
	}
	return y
}

// TestAddWalksLikeTheTrees: the compiled trees, walked side by side, and
// the scorer (for the forests whose trees have at most 48 leaves) add the
// leaves the trees send a row to, to the bit, for random forests
// (numeric splits either way for missing values, categorical ones of few
// and of many levels, trees from a single leaf to deep ones, a number of
// trees that is not a multiple of lanes) and random rows (missing values,
// values on and between the thresholds, every level).
func TestAddWalksLikeTheTrees(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	scored := 0
	for round := range 200 {
		codes := []int{0, 0, 0, 2, 5, 64, 65, 150}
		rng.Shuffle(len(codes), func(i, j int) { codes[i], codes[j] = codes[j], codes[i] })
		codes = codes[:1+rng.IntN(len(codes))]
		// A few thresholds per numeric feature, shared by the trees.
		grid := make([][]float64, len(codes))
		for f := range grid {
			for range 1 + rng.IntN(6) {
				grid[f] = append(grid[f], math.Round(rng.NormFloat64()*100)/10)
			}
		}
		fo := &Forest{LearningRate: 0.1}
		for range rng.IntN(3 * lanes) {
			var tr Tree
			maxDepth := rng.IntN(12)
			var grow func(depth int) int
			grow = func(depth int) int {
				at := len(tr.Nodes)
				tr.Nodes = append(tr.Nodes, Node{})
				if depth >= maxDepth || rng.IntN(5) == 0 {
					tr.Nodes[at] = Node{Value: rng.NormFloat64()}
					return at
				}
				f := rng.IntN(len(codes))
				n := Node{Feature: f}
				if c := codes[f]; c > 0 {
					for k := range c {
						if rng.IntN(2) == 0 {
							n.Categories = append(n.Categories, k)
						}
					}
					if n.Categories == nil {
						n.Categories = []int{rng.IntN(c)}
					}
				} else {
					n.Threshold = grid[f][rng.IntN(len(grid[f]))]
					n.DefaultLeft = rng.IntN(2) == 0
				}
				n.Left = grow(depth + 1)
				n.Right = grow(depth + 1)
				tr.Nodes[at] = n
				return at
			}
			grow(0)
			fo.Trees = append(fo.Trees, tr)
		}
		if err := fo.prepare(codes); err != nil {
			t.Fatal(err)
		}
		wide := false
		for _, tr := range fo.Trees {
			leaves := 0
			for _, n := range tr.Nodes {
				if n.Left == 0 {
					leaves++
				}
			}
			wide = wide || leaves > 48
		}
		if (fo.quick == nil) != wide {
			t.Fatalf("round %d: scorer %v, a tree of over 48 leaves %v", round, fo.quick != nil, wide)
		}
		if fo.quick != nil {
			scored++
		}
		x := make([]float64, len(codes))
		var r []uint32
		var live []uint64
		for range 50 {
			for f, c := range codes {
				switch {
				case c > 0:
					x[f] = float64(rng.IntN(c))
				case rng.IntN(5) == 0:
					x[f] = math.NaN()
				case rng.IntN(2) == 0:
					x[f] = grid[f][rng.IntN(len(grid[f]))]
				default:
					x[f] = rng.NormFloat64() * 10
				}
			}
			r = fo.rank(r, x)
			y0 := rng.NormFloat64()
			got, want := fo.add(y0, r), walkTrees(fo, y0, x)
			if math.Float64bits(got) != math.Float64bits(want) {
				t.Fatalf("round %d, %d trees, row %v: add %v, the trees %v", round, len(fo.Trees), x, got, want)
			}
			if fo.quick == nil {
				continue
			}
			got, live = fo.quick.add(y0, r, live)
			if math.Float64bits(got) != math.Float64bits(want) {
				t.Fatalf("round %d, %d trees, row %v: scorer %v, the trees %v", round, len(fo.Trees), x, got, want)
			}
		}
	}
	if scored < 20 || scored > 180 {
		t.Fatalf("%d of 200 forests scored: want both ways tested", scored)
	}
}
