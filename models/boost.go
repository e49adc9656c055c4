package models

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"sync"
)

// GBDT holds the settings of gradient boosting (family gbdt): histogram
// boosting of regression trees on the transformed target, squared error.
// Zero fields take the defaults (DefaultGBDT).
type GBDT struct {
	// LearningRates is the grid of shrinkages; the inner validation picks
	// one, and the number of trees by early stopping.
	LearningRates []float64
	// MaxTrees bounds the trees; EarlyStop is the rounds without a better
	// inner validation RMSE after which boosting stops.
	MaxTrees  int
	EarlyStop int
	// MaxLeaves of a tree (grown best leaf first), MaxDepth (0: no bound).
	MaxLeaves int
	MaxDepth  int
	// MinLeaf is the fewest training cases a leaf may hold.
	MinLeaf int
	// L2 is the penalty on leaf values (lambda).
	L2 float64
	// Subsample is the share of training cases each tree draws (seeded by
	// Seed); 1 draws all.
	Subsample float64
	Seed      uint64
	// MaxBins of a numeric feature's histogram (at most 255).
	MaxBins int
}

// DefaultGBDT is the setting a contract gets for what it leaves out.
var DefaultGBDT = GBDT{LearningRates: []float64{0.05, 0.1}, MaxTrees: 1000, EarlyStop: 30, MaxLeaves: 31, MinLeaf: 20, L2: 1, Subsample: 1, Seed: 1, MaxBins: 255}

// WithDefaults fills the zero fields from DefaultGBDT.
func (g GBDT) WithDefaults() GBDT {
	d := DefaultGBDT
	if len(g.LearningRates) == 0 {
		g.LearningRates = d.LearningRates
	}
	g.MaxTrees = cmp.Or(g.MaxTrees, d.MaxTrees)
	g.EarlyStop = cmp.Or(g.EarlyStop, d.EarlyStop)
	g.MaxLeaves = cmp.Or(g.MaxLeaves, d.MaxLeaves)
	g.MinLeaf = cmp.Or(g.MinLeaf, d.MinLeaf)
	g.L2 = cmp.Or(g.L2, d.L2)
	g.Subsample = cmp.Or(g.Subsample, d.Subsample)
	g.Seed = cmp.Or(g.Seed, d.Seed)
	g.MaxBins = cmp.Or(g.MaxBins, d.MaxBins)
	return g
}

// Check says what is wrong with a setting.
func (g GBDT) Check() error {
	for _, lr := range g.LearningRates {
		if !(lr > 0 && lr <= 1) {
			return fmt.Errorf("learning rate %v: want a number in (0, 1]", lr)
		}
	}
	switch {
	case g.MaxTrees < 1 || g.EarlyStop < 1:
		return fmt.Errorf("max_trees %d, early_stop %d: want at least 1", g.MaxTrees, g.EarlyStop)
	case g.MaxLeaves < 2 || g.MaxDepth < 0 || g.MinLeaf < 1:
		return fmt.Errorf("max_leaves %d, max_depth %d, min_leaf %d: want at least 2, 0 and 1", g.MaxLeaves, g.MaxDepth, g.MinLeaf)
	case !(g.L2 >= 0) || !(g.Subsample > 0 && g.Subsample <= 1):
		return fmt.Errorf("l2 %v, subsample %v: want l2 >= 0 and subsample in (0, 1]", g.L2, g.Subsample)
	case g.MaxBins < 2 || g.MaxBins > 255:
		return fmt.Errorf("max_bins %d: want 2 to 255", g.MaxBins)
	}
	return nil
}

// binning cuts each tree feature into histogram bins: a numeric one at
// quantiles of its training values (bin b holds edges[b-1] < x <=
// edges[b], one more bin for a missing value); a categorical one has a bin
// per level code.
type binning struct {
	cat   []bool
	edges [][]float64 // numeric: upper bounds, the last bin unbounded
	nbins []int
	offs  []int // first bin of each feature in a histogram
	total int
}

// newBinning finds the bins of the features from their training values
// (feature-major; NaN is missing). ncat is the number of codes of each
// categorical feature, 0 for a numeric one.
func newBinning(cols [][]float64, ncat []int, maxBins int) *binning {
	b := &binning{cat: make([]bool, len(cols)), edges: make([][]float64, len(cols)), nbins: make([]int, len(cols)), offs: make([]int, len(cols))}
	for f, col := range cols {
		b.offs[f] = b.total
		if ncat[f] > 0 {
			b.cat[f], b.nbins[f] = true, ncat[f]
			b.total += ncat[f]
			continue
		}
		v := make([]float64, 0, len(col))
		for _, x := range col {
			if !math.IsNaN(x) {
				v = append(v, x)
			}
		}
		slices.Sort(v)
		distinct := slices.Compact(slices.Clone(v))
		var edges []float64
		if len(distinct) <= maxBins {
			edges = distinct
		} else {
			for q := 1; q < maxBins; q++ {
				e := v[q*len(v)/maxBins]
				if len(edges) == 0 || e > edges[len(edges)-1] {
					edges = append(edges, e)
				}
			}
		}
		if len(edges) > 0 {
			edges = edges[:len(edges)-1] // the last bin holds the rest
		}
		b.edges[f] = edges
		b.nbins[f] = len(edges) + 2 // + the last bin + missing
		b.total += b.nbins[f]
	}
	return b
}

// matrix is a set of cases binned, row-major.
type matrix struct {
	n, f int
	bins []uint16
}

func (b *binning) bin(cols [][]float64) *matrix {
	n := 0
	if len(cols) > 0 {
		n = len(cols[0])
	}
	m := &matrix{n: n, f: len(cols), bins: make([]uint16, n*len(cols))}
	for f, col := range cols {
		for i, x := range col {
			var k int
			switch {
			case b.cat[f]:
				k = int(x)
			case math.IsNaN(x):
				k = b.nbins[f] - 1
			default:
				k = sort.SearchFloat64s(b.edges[f], x)
			}
			m.bins[i*m.f+f] = uint16(k)
		}
	}
	return m
}

// hbin is one histogram bin: the sum of the gradients and the count of the
// cases in it (squared error: the hessian is the count).
type hbin struct {
	g float64
	n float64
}

// split is the best split of a leaf found so far.
type split struct {
	gain        float64
	feature     int
	bin         int  // numeric: left holds bins <= bin
	defaultLeft bool // numeric: where missing goes
	cats        []int
	lg, ln      float64 // left sums
}

type leaf struct {
	node      int // index in the tree's nodes
	lo, hi    int // rows[lo:hi]
	depth     int
	g, n      float64
	hist      []hbin
	best      split
	splitable bool
}

// chunks is the fixed number of parts a large node's rows are cut into to
// build its histogram on several cores: the parts' sums are added in
// order, so the result is the same bits whatever the number of cores.
const (
	chunks    = 4
	chunkRows = 1 << 14
)

type booster struct {
	p    GBDT
	lr   float64
	b    *binning
	m    *matrix
	grad []float64
	rows []int32
	tmp  []int32
	pool sync.Pool
}

func (bo *booster) newHist() []hbin {
	if h, ok := bo.pool.Get().([]hbin); ok {
		clear(h)
		return h
	}
	return make([]hbin, bo.b.total)
}

// histogram sums the gradients of rows into bins.
func (bo *booster) histogram(rows []int32) []hbin {
	h := bo.newHist()
	if len(rows) < chunks*chunkRows {
		bo.accumulate(h, rows)
		return h
	}
	parts := make([][]hbin, chunks)
	parts[0] = h
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for c := range chunks {
		lo, hi := c*len(rows)/chunks, (c+1)*len(rows)/chunks
		if c > 0 {
			parts[c] = bo.newHist()
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			bo.accumulate(parts[c], rows[lo:hi])
			<-sem
		}()
	}
	wg.Wait()
	for c := 1; c < chunks; c++ {
		for i, x := range parts[c] {
			h[i].g += x.g
			h[i].n += x.n
		}
		bo.pool.Put(parts[c])
	}
	return h
}

func (bo *booster) accumulate(h []hbin, rows []int32) {
	f, offs, bins, grad := bo.m.f, bo.b.offs, bo.m.bins, bo.grad
	for _, r := range rows {
		g := grad[r]
		row := bins[int(r)*f : int(r)*f+f]
		for j, k := range row {
			e := &h[offs[j]+int(k)]
			e.g += g
			e.n++
		}
	}
}

func (bo *booster) score(g, n float64) float64 { return g * g / (n + bo.p.L2) }

// findSplit finds the leaf's best split over every feature.
func (bo *booster) findSplit(l *leaf) {
	l.best = split{gain: 0, feature: -1}
	l.splitable = false
	if bo.p.MaxDepth > 0 && l.depth >= bo.p.MaxDepth {
		return
	}
	minLeaf := float64(bo.p.MinLeaf)
	if l.n < 2*minLeaf {
		return
	}
	parent := bo.score(l.g, l.n)
	consider := func(s split) {
		if s.gain > l.best.gain+1e-12 {
			l.best = s
			l.splitable = true
		}
	}
	for f := range bo.m.f {
		h := l.hist[bo.b.offs[f] : bo.b.offs[f]+bo.b.nbins[f]]
		if bo.b.cat[f] {
			bo.catSplit(l, f, h, parent, minLeaf, consider)
			continue
		}
		miss := h[len(h)-1]
		var lg, ln float64
		for k := 0; k < len(h)-2; k++ {
			lg += h[k].g
			ln += h[k].n
			for _, left := range []bool{false, true} {
				g, n := lg, ln
				if left {
					if miss.n == 0 {
						continue
					}
					g, n = g+miss.g, n+miss.n
				}
				rn := l.n - n
				if n < minLeaf || rn < minLeaf {
					continue
				}
				gain := bo.score(g, n) + bo.score(l.g-g, rn) - parent
				consider(split{gain: gain, feature: f, bin: k, defaultLeft: left, lg: g, ln: n})
			}
		}
	}
}

// catSplit orders the levels present in the leaf by the value a leaf of
// their cases alone would take and tries each prefix as the left side (no
// one-hot). A level with fewer cases than a leaf may hold has too little
// evidence to be ranked by its own mean, which would put its noise at
// either end of the order, where a split isolates it: it ranks as neutral
// (no correction), as xgboost's partition-based splits rank it (weight 0
// below min_child_weight).
func (bo *booster) catSplit(l *leaf, f int, h []hbin, parent, minLeaf float64, consider func(split)) {
	var present []int
	for k, e := range h {
		if e.n > 0 {
			present = append(present, k)
		}
	}
	if len(present) < 2 {
		return
	}
	weight := func(e hbin) float64 {
		if e.n < minLeaf {
			return 0
		}
		return -e.g / (e.n + bo.p.L2)
	}
	slices.SortStableFunc(present, func(a, b int) int {
		return cmp.Compare(weight(h[a]), weight(h[b]))
	})
	var lg, ln float64
	bestAt, best := -1, split{}
	for i := 0; i < len(present)-1; i++ {
		e := h[present[i]]
		lg += e.g
		ln += e.n
		rn := l.n - ln
		if ln < minLeaf || rn < minLeaf {
			continue
		}
		gain := bo.score(lg, ln) + bo.score(l.g-lg, rn) - parent
		if gain > best.gain+1e-12 {
			best, bestAt = split{gain: gain, feature: f, lg: lg, ln: ln}, i
		}
	}
	if bestAt >= 0 {
		best.cats = slices.Sorted(slices.Values(present[:bestAt+1]))
		consider(best)
	}
}

// goesLeft says where a binned value goes under a split.
func (b *binning) goesLeft(s *split, k int) bool {
	if b.cat[s.feature] {
		_, found := slices.BinarySearch(s.cats, k)
		return found
	}
	if k == b.nbins[s.feature]-1 {
		return s.defaultLeft
	}
	return k <= s.bin
}

// growTree grows one tree on rows (their gradients in bo.grad), best leaf
// first, and returns it with leaf values already shrunk, and where its
// leaves' rows are in bo.rows.
func (bo *booster) growTree(rows []int32) (Tree, []span) {
	bo.rows = rows
	root := &leaf{lo: 0, hi: len(rows)}
	root.hist = bo.histogram(rows)
	for _, e := range root.hist[:bo.b.nbins[0]] {
		root.g += e.g
		root.n += e.n
	}
	t := Tree{Nodes: []Node{{}}}
	bo.findSplit(root)
	leaves := []*leaf{root}
	for len(leaves) < bo.p.MaxLeaves {
		bi := -1
		for i, l := range leaves {
			if l.splitable && (bi < 0 || l.best.gain > leaves[bi].best.gain) {
				bi = i
			}
		}
		if bi < 0 {
			break
		}
		l := leaves[bi]
		s := l.best
		// Partition the rows, stably, left first.
		seg := bo.rows[l.lo:l.hi]
		tmp := bo.tmp[:0]
		w := 0
		f := bo.m.f
		for _, r := range seg {
			if bo.b.goesLeft(&s, int(bo.m.bins[int(r)*f+s.feature])) {
				seg[w] = r
				w++
			} else {
				tmp = append(tmp, r)
			}
		}
		copy(seg[w:], tmp)
		bo.tmp = tmp
		left := &leaf{lo: l.lo, hi: l.lo + w, depth: l.depth + 1, g: s.lg, n: s.ln}
		right := &leaf{lo: l.lo + w, hi: l.hi, depth: l.depth + 1, g: l.g - s.lg, n: l.n - s.ln}
		small, large := left, right
		if right.hi-right.lo < left.hi-left.lo {
			small, large = right, left
		}
		small.hist = bo.histogram(bo.rows[small.lo:small.hi])
		large.hist = l.hist
		for i := range large.hist {
			large.hist[i].g -= small.hist[i].g
			large.hist[i].n -= small.hist[i].n
		}
		l.hist = nil
		node := Node{Feature: s.feature, DefaultLeft: s.defaultLeft, Left: len(t.Nodes), Right: len(t.Nodes) + 1}
		if bo.b.cat[s.feature] {
			node.Categories = s.cats
		} else {
			node.Threshold = bo.b.threshold(s.feature, s.bin)
		}
		t.Nodes[l.node] = node
		left.node, right.node = len(t.Nodes), len(t.Nodes)+1
		t.Nodes = append(t.Nodes, Node{}, Node{})
		bo.findSplit(left)
		bo.findSplit(right)
		leaves[bi] = left
		leaves = slices.Insert(leaves, bi+1, right)
	}
	spans := make([]span, len(leaves))
	for i, l := range leaves {
		t.Nodes[l.node] = Node{Value: float64(bo.lr * (-l.g / (l.n + bo.p.L2)))}
		spans[i] = span{l.lo, l.hi, t.Nodes[l.node].Value}
		if l.hist != nil {
			bo.pool.Put(l.hist)
		}
	}
	return t, spans
}

// span is a leaf's rows, bo.rows[lo:hi], and its value.
type span struct {
	lo, hi int
	value  float64
}

// threshold is the value a numeric split compares with: the upper edge of
// its last left bin.
func (b *binning) threshold(f, bin int) float64 { return b.edges[f][bin] }

// leafOf is the value of the leaf row i of m lands in, in t: the same leaf as the raw
// values would reach, since a value is in a bin <= k exactly when it is
// <= the bin's upper edge.
func (b *binning) leafOf(t *Tree, m *matrix, i int) float64 {
	n := 0
	for {
		nd := &t.Nodes[n]
		if nd.Left == 0 {
			return nd.Value
		}
		k := int(m.bins[i*m.f+nd.Feature])
		var left bool
		switch {
		case b.cat[nd.Feature]:
			_, left = slices.BinarySearch(nd.Categories, k)
		case k == b.nbins[nd.Feature]-1:
			left = nd.DefaultLeft
		default:
			left = k < len(b.edges[nd.Feature]) && b.edges[nd.Feature][k] <= nd.Threshold
		}
		if left {
			n = nd.Left
		} else {
			n = nd.Right
		}
	}
}

// boosted is the outcome of one boosting run.
type boosted struct {
	base  float64
	trees []Tree
	// best is the number of trees with the lowest validation RMSE, and
	// rmse that RMSE (no validation: all trees, NaN).
	best int
	rmse float64
}

// boost fits up to rounds trees at learning rate lr on the training
// matrix; with a validation matrix it stops EarlyStop rounds after the
// best validation RMSE and keeps the trees up to it.
func boost(p GBDT, lr float64, b *binning, tm *matrix, y []float64, vm *matrix, vy []float64, rounds int) boosted {
	n := tm.n
	base := 0.0
	for _, v := range y {
		base += v
	}
	base /= float64(n)
	pred := make([]float64, n)
	for i := range pred {
		pred[i] = base
	}
	var vpred []float64
	if vm != nil {
		vpred = make([]float64, vm.n)
		for i := range vpred {
			vpred[i] = base
		}
	}
	bo := &booster{p: p, lr: lr, b: b, m: tm, grad: make([]float64, n)}
	rng := rand.New(rand.NewPCG(p.Seed, 0x9e3779b97f4a7c15))
	out := boosted{base: base, rmse: math.NaN()}
	rows := make([]int32, 0, n)
	sinceBest := 0
	for range rounds {
		for i := range n {
			bo.grad[i] = pred[i] - y[i]
		}
		rows = rows[:0]
		for i := range int32(n) {
			if p.Subsample >= 1 || rng.Float64() < p.Subsample {
				rows = append(rows, i)
			}
		}
		if len(rows) < 2*p.MinLeaf {
			break
		}
		t, spans := bo.growTree(rows)
		if len(t.Nodes) == 1 {
			break // nothing left to learn
		}
		if len(rows) == n {
			// Every case grew the tree: its leaves hold them all, as
			// leafOf would send them.
			for _, sp := range spans {
				for _, r := range bo.rows[sp.lo:sp.hi] {
					pred[r] += sp.value
				}
			}
		} else {
			for i := range n {
				pred[i] += b.leafOf(&t, tm, i)
			}
		}
		out.trees = append(out.trees, t)
		if vm == nil {
			continue
		}
		sse := 0.0
		for i := range vm.n {
			vpred[i] += b.leafOf(&t, vm, i)
			e := vpred[i] - vy[i]
			sse += e * e
		}
		rmse := math.Sqrt(sse / float64(vm.n))
		if math.IsNaN(out.rmse) || rmse < out.rmse {
			out.rmse, out.best, sinceBest = rmse, len(out.trees), 0
		} else if sinceBest++; sinceBest >= p.EarlyStop {
			break
		}
	}
	if vm == nil {
		out.best = len(out.trees)
	}
	out.trees = out.trees[:out.best]
	return out
}
