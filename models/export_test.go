package models

// TreeSum is the forest's part of a prediction for one row: the intercept
// plus the leaves, by the scorer (mode "quick"), walked by add ("add"), by
// a walk of one compiled tree at a time ("single"), or by the
// straightforward walk of the trees as trained ("walk").
func TreeSum(a *Artifact, s *Sparse, row []Value, mode string) (float64, error) {
	if err := a.Encoder.treeValues(s, row); err != nil {
		return 0, err
	}
	if mode == "walk" {
		return walkTrees(a.Forest, a.Intercept, s.dense), nil
	}
	s.ranks = a.Forest.rank(s.ranks, s.dense)
	if mode == "quick" {
		var y float64
		y, s.live = a.Forest.quick.add(a.Intercept, s.ranks, s.live)
		return y, nil
	}
	if mode == "single" {
		return a.Forest.addSingle(a.Intercept, s.ranks), nil
	}
	return a.Forest.add(a.Intercept, s.ranks), nil
}

// addSingle is add one tree at a time, branching at each split, as it was
// before the trees were walked side by side.
func (fo *Forest) addSingle(y float64, r []uint32) float64 {
	nodes, bits, values := fo.nodes, fo.bits, fo.values
	leaf := uint16(2 * len(fo.codes))
	for _, i := range fo.roots {
		n := nodes[i]
		for n.slot != leaf {
			v := r[n.slot&(catSplit-1)]
			var left bool
			if n.slot >= catSplit {
				left = bits[n.arg+v/64]&(1<<(v%64)) != 0
			} else {
				left = v <= n.arg
			}
			i += int32(n.off)
			if !left {
				i++
			}
			n = nodes[i]
		}
		y += values[n.arg]
	}
	return y
}
