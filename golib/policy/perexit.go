package policy

import (
	"math"
	"slices"
)

// calibratePerExit runs coordinate descent from the MSDNet and the Global
// solutions and returns the better result. A coordinate step sweeps τ_k exactly
// (every distinct confidence at exit k among the samples that reach it, and
// +Inf) with the other thresholds fixed, and moves only on a strict
// improvement, so the result is never worse than its start.
func calibratePerExit(val *Scores, labels []int32, cost CostModel, o objective) ([]float32, Point, bool, error) {
	var starts [][]float32
	if tau, _, _, ok := calibrateMSDNet(val, labels, cost, o); ok {
		starts = append(starts, tau)
	}
	gtau, _, gok, err := calibrateGlobal(val, labels, cost, o)
	if err != nil {
		return nil, Point{}, false, err
	}
	if gok {
		starts = append(starts, gtau)
	}
	var (
		best   []float32
		bestPt Point
	)
	for _, st := range starts {
		tau, pt := coordinateDescent(val, labels, cost, o, slices.Clone(st))
		if best == nil || o.better(pt, bestPt) {
			best, bestPt = tau, pt
		}
	}
	return best, bestPt, best != nil, nil
}

func coordinateDescent(s *Scores, labels []int32, cost CostModel, o objective, tau []float32) ([]float32, Point) {
	cur := s.evalTau(tau, labels, cost)
	w := newCoordWork(s.N, s.K)
	for range 100 {
		improved := false
		for k := 0; k < s.K-1; k++ {
			t, pt, ok := coordBest(s, labels, cost, o, tau, k, w)
			if ok && o.better(pt, cur) {
				tau[k], cur, improved = t, pt, true
			}
		}
		if !improved {
			break
		}
	}
	return tau, cur
}

type coordWork struct {
	keys, tmp []uint64 // the keys and the radix sort's second buffer (swapped as the sort returns)
	down      []int32
	hist      []int64
	cnt       [3 << 13]uint32
}

func newCoordWork(n, K int) *coordWork {
	return &coordWork{keys: make([]uint64, 0, n), down: make([]int32, n), hist: make([]int64, K)}
}

// coordBest returns the best feasible value of τ_k with the others fixed.
func coordBest(s *Scores, labels []int32, cost CostModel, o objective, tau []float32, k int, w *coordWork) (float32, Point, bool) {
	K, N := s.K, s.N
	hist := w.hist
	clear(hist)
	var correct int64
	keys := w.keys[:0]
	for i := 0; i < N; i++ {
		e := -1
		for j := 0; j < k; j++ {
			if s.Conf[j][i] >= tau[j] {
				e = j
				break
			}
		}
		if e < 0 { // reaches exit k: downstream exit if it does not leave at k
			keys = append(keys, uint64(descKey(s.Conf[k][i]))<<32|uint64(i))
			e = K - 1
			for j := k + 1; j < K-1; j++ {
				if s.Conf[j][i] >= tau[j] {
					e = j
					break
				}
			}
			w.down[i] = int32(e)
		}
		hist[e]++
		if s.Pred[e][i] == labels[i] {
			correct++
		}
	}
	w.tmp = grow(w.tmp, len(keys))
	sorted := sortKeys(keys, w.tmp, &w.cnt)
	if len(sorted) > 0 && &sorted[0] == &w.tmp[0] {
		w.keys, w.tmp = w.tmp, keys
	} else {
		w.keys = keys
	}
	keys = sorted
	var (
		bestT  float32
		bestPt Point
		found  bool
	)
	consider := func(t float32) {
		pt := makePoint(t, correct, hist, N, cost)
		if o.feasible(pt) && (!found || o.better(pt, bestPt)) {
			pt.Hist = slices.Clone(hist)
			bestT, bestPt, found = t, pt, true
		}
	}
	consider(float32(math.Inf(1)))
	for a := 0; a < len(keys); {
		key := uint32(keys[a] >> 32)
		for ; a < len(keys) && uint32(keys[a]>>32) == key; a++ {
			i := int(uint32(keys[a]))
			d := w.down[i]
			hist[d]--
			hist[k]++
			if s.Pred[d][i] == labels[i] {
				correct--
			}
			if s.Pred[k][i] == labels[i] {
				correct++
			}
		}
		consider(fromDescKey(key))
	}
	return bestT, bestPt, found
}
