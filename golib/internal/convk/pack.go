package convk

// blockGroup is a run of up to 3 output-channel blocks of 8 that one tile call
// computes: channels [c0, c0+nch) of a group, weights at w[wOff:], bias at
// bias[bOff:] (24 floats).
type blockGroup struct {
	c0, nb, nch int
	wOff, bOff  int
}

// splitBlocks covers n channels with groups of 3 blocks of 8, using two groups
// of 2 instead of 3+1 (a 1-block tile has only 4 accumulators, too few to hide
// the FMA latency).
func splitBlocks(n int) []int {
	blocks := (n + 7) / 8
	var nbs []int
	for blocks > 0 {
		switch {
		case blocks == 4:
			nbs = append(nbs, 2, 2)
			blocks = 0
		case blocks >= 3:
			nbs = append(nbs, 3)
			blocks -= 3
		default:
			nbs = append(nbs, blocks)
			blocks = 0
		}
	}
	return nbs
}

// packWeights lays out, for each channel group of ng groups with cout output
// channels each, the weights of each block group as [k][nb·8] (zero past the
// group's last channel), where src(g, o, k) gives weight k of output channel o
// of group g; biases as 24 floats per block group.
func packWeights(ng, cout, k int, src func(g, o, k int) float32, bias func(o int) float32) ([]blockGroup, []float32, []float32) {
	var bgs []blockGroup
	c0 := 0
	for _, nb := range splitBlocks(cout) {
		bgs = append(bgs, blockGroup{c0: c0, nb: nb, nch: min(nb*8, cout-c0)})
		c0 += nb * 8
	}
	per := 0
	for i := range bgs {
		bgs[i].wOff = per
		bgs[i].bOff = 24 * i
		per += k * bgs[i].nb * 8
	}
	w := make([]float32, ng*per)
	b := make([]float32, ng*24*len(bgs))
	for g := 0; g < ng; g++ {
		for _, bg := range bgs {
			nw := bg.nb * 8
			dst := w[g*per+bg.wOff:][:k*nw]
			for o := 0; o < bg.nch; o++ {
				for s := 0; s < k; s++ {
					dst[s*nw+o] = src(g, bg.c0+o, s)
				}
				if bias != nil {
					b[g*24*len(bgs)+bg.bOff+o] = bias(g*cout + bg.c0 + o)
				}
			}
		}
	}
	return bgs, w, b
}
