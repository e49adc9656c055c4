package models

import (
	"math/bits"
	"slices"
)

// scorer predicts a forest feature by feature instead of tree by tree
// (QuickScorer, Lucchese et al., SIGIR 2015, with each feature's false
// nodes merged per tree and per value). A tree's leaves are numbered left
// to right, and a split that sends the row right rules out the leaves of
// its left subtree; the leaf the row reaches is then the leftmost one that
// no split ruled out. For a tree feature and a value of it (a categorical
// feature's level code, a numeric one's rank among its thresholds, or
// missing), the scorer holds, for each tree that value sends right
// somewhere, the leaves it rules out there. Predicting a row is then one
// run through one list per tree feature, clearing bits, with no branch on
// the row's values and in the order the memory lies, then one look-up per
// tree. The leaves are added in tree order, as walking the trees does, so
// that the sum is the same to the bit.
//
// It is built when the forest has at most 65,536 trees of at most 48
// leaves each and its lists fit maxRules: a rule is then one word,
// the tree in its top 16 bits and the leaves it keeps in the other 48 (the
// top bits of a tree's word end up meaningless, and are never read: the
// leaf the row reaches always keeps its bit). The trees are walked
// otherwise.
type scorer struct {
	// The rules of tree feature f's value k are rules[at[base[f]+k] :
	// at[base[f]+k+1]], in tree order: k is a level code, a numeric
	// feature's rank (0 to len(cuts)), or len(cuts)+1 for a missing value
	// (its rank, missingRank, brought down to the last value).
	base  []int32
	at    []int32
	rules []uint64
	// first[t] is tree t's leftmost leaf in values.
	first  []int32
	values []float64
}

// maxRules bounds the scorer's rules (8 bytes each): 32 MiB.
const maxRules = 1 << 22

// newScorer builds the scorer of the trees, or returns nil when there are
// too many of them, one has over 48 leaves, or the rules would be too
// many. codes and cuts are prepare's, and every node has been checked.
func newScorer(trees []Tree, codes []int, cuts [][]float64) *scorer {
	q := &scorer{base: make([]int32, len(codes)+1)}
	for f, c := range codes {
		n := c
		if c == 0 {
			n = len(cuts[f]) + 2
		}
		q.base[f+1] = q.base[f] + int32(n)
	}
	lists := make([][]uint64, q.base[len(codes)])
	total := 0
	type split struct {
		rank    int  // a numeric split's threshold's rank
		missing bool // a missing value goes right
		keep    uint64
		set     []uint64 // a categorical split's left levels
	}
	byFeature := make([][]split, len(codes))
	for t, tree := range trees {
		// Number the leaves left to right; a split keeps all but the
		// leaves of its left subtree when the row goes right.
		q.first = append(q.first, int32(len(q.values)))
		leaves := 0
		var span func(i int) (lo, hi int)
		span = func(i int) (lo, hi int) {
			n := tree.Nodes[i]
			if n.Left == 0 {
				q.values = append(q.values, n.Value)
				leaves++
				return leaves - 1, leaves
			}
			lo, mid := span(n.Left)
			_, hi = span(n.Right)
			s := split{keep: ^(lowBits(mid) &^ lowBits(lo))}
			if codes[n.Feature] > 0 {
				s.set = make([]uint64, (codes[n.Feature]+63)/64)
				for _, k := range n.Categories {
					s.set[k/64] |= 1 << (k % 64)
				}
			} else {
				s.rank, _ = slices.BinarySearch(cuts[n.Feature], n.Threshold)
				s.missing = !n.DefaultLeft
			}
			byFeature[n.Feature] = append(byFeature[n.Feature], s)
			return lo, hi
		}
		for f := range byFeature {
			byFeature[f] = byFeature[f][:0]
		}
		span(0)
		if leaves > 48 || t >= 1<<16 {
			return nil
		}
		for f, splits := range byFeature {
			if len(splits) == 0 {
				continue
			}
			emit := func(k int, keep uint64) {
				if keep != ^uint64(0) {
					l := &lists[int(q.base[f])+k]
					*l = append(*l, keep&lowBits(48)|uint64(t)<<48)
					total++
				}
			}
			if codes[f] > 0 {
				for k := range codes[f] {
					keep := ^uint64(0)
					for _, s := range splits {
						if s.set[k/64]&(1<<(k%64)) == 0 {
							keep &= s.keep
						}
					}
					emit(k, keep)
				}
			} else {
				// Rank k sends right the splits whose threshold ranks
				// below it.
				slices.SortFunc(splits, func(a, b split) int { return a.rank - b.rank })
				keep, j := ^uint64(0), 0
				for k := range len(cuts[f]) + 1 {
					for ; j < len(splits) && splits[j].rank < k; j++ {
						keep &= splits[j].keep
					}
					emit(k, keep)
				}
				keep = ^uint64(0)
				for _, s := range splits {
					if s.missing {
						keep &= s.keep
					}
				}
				emit(len(cuts[f])+1, keep)
			}
		}
		if total > maxRules {
			return nil
		}
	}
	q.at = make([]int32, 0, len(lists)+1)
	q.rules = make([]uint64, 0, total)
	for _, l := range lists {
		q.at = append(q.at, int32(len(q.rules)))
		q.rules = append(q.rules, l...)
	}
	q.at = append(q.at, int32(len(q.rules)))
	return q
}

// lowBits is a word of the n lowest bits, n from 0 to 64.
func lowBits(n int) uint64 {
	if n >= 64 {
		return ^uint64(0)
	}
	return 1<<n - 1
}

// add adds each tree's leaf for the ranked row r (Forest.rank) to y, in
// tree order; live is scratch space (reused when it has room).
func (q *scorer) add(y float64, r []uint32, live []uint64) (float64, []uint64) {
	live = slices.Grow(live[:0], len(q.first))[:len(q.first)]
	for i := range live {
		live[i] = ^uint64(0)
	}
	for f := range len(q.base) - 1 {
		// The feature's value: its slot of the ranked row, a missing
		// value's rank brought down to the feature's last value (which
		// keeps any value within the feature's lists).
		i := q.base[f] + int32(min(r[2*f], uint32(q.base[f+1]-q.base[f]-1)))
		for _, r := range q.rules[q.at[i]:q.at[i+1]] {
			live[r>>48] &= r
		}
	}
	for t, m := range live {
		y += q.values[q.first[t]+int32(bits.TrailingZeros64(m))]
	}
	return y, live
}
