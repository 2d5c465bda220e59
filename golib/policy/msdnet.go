package policy

import (
	"math"
	"slices"
)

// MSDNetThresholds returns MSDNet's per-exit thresholds for geometric exit
// proportions p_k = q^k / Σ_{j<K} q^j on the given scores (Huang et al. 2018,
// dynamic_predict.py): for k = 0..K−2, n_k = ⌊N·p_k⌋ of the samples still
// running should leave at exit k, so τ_k is the n_k-th largest confidence at
// exit k among them (+Inf when n_k = 0; the smallest one when fewer than n_k
// remain, where MSDNet's code would let nobody leave). τ_{K−1} = −Inf.
// Ties at τ_k let more than n_k samples leave.
func MSDNetThresholds(s *Scores, q float64) []float32 {
	K, N := s.K, s.N
	tau := make([]float32, K)
	tau[K-1] = float32(math.Inf(-1))
	if K == 1 {
		return tau
	}
	p := geometric(q, K)
	running := make([]int32, N)
	for i := range running {
		running[i] = int32(i)
	}
	buf := make([]float32, 0, N)
	for k := 0; k < K-1; k++ {
		nk := int(math.Floor(float64(N) * p[k]))
		if nk == 0 || len(running) == 0 {
			tau[k] = float32(math.Inf(1))
			continue
		}
		buf = buf[:0]
		for _, i := range running {
			buf = append(buf, s.Conf[k][i])
		}
		slices.Sort(buf)
		if nk > len(buf) {
			nk = len(buf)
		}
		tau[k] = buf[len(buf)-nk]
		kept := running[:0]
		for _, i := range running {
			if s.Conf[k][i] < tau[k] {
				kept = append(kept, i)
			}
		}
		running = kept
	}
	return tau
}

// geometric returns p_k = q^k / Σ_j q^j, computed stably for large and small q.
func geometric(q float64, K int) []float64 {
	lq := math.Log(q)
	p := make([]float64, K)
	mx := math.Max(0, lq*float64(K-1))
	s := 0.0
	for k := range p {
		p[k] = math.Exp(lq*float64(k) - mx)
		s += p[k]
	}
	for k := range p {
		p[k] /= s
	}
	return p
}

// calibrateMSDNet bisects t = log q in [−40, 40] (q small: everyone at exit 0;
// q large: everyone at the last exit) and keeps the best feasible point seen.
func calibrateMSDNet(val *Scores, labels []int32, cost CostModel, o objective) ([]float32, Point, float64, bool) {
	var (
		bestTau []float32
		bestPt  Point
		bestQ   = math.NaN()
		found   bool
	)
	try := func(t float64) bool {
		q := math.Exp(t)
		tau := MSDNetThresholds(val, q)
		pt := val.evalTau(tau, labels, cost)
		f := o.feasible(pt)
		if f && (!found || o.better(pt, bestPt)) {
			bestTau, bestPt, bestQ, found = tau, pt, q, true
		}
		return f
	}
	lo, hi := -40.0, 40.0
	flo, fhi := try(lo), try(hi)
	if o.t.ByAccuracy {
		// feasible at large q: find the smallest feasible q
		if fhi && !flo {
			for range 60 {
				mid := (lo + hi) / 2
				if try(mid) {
					hi = mid
				} else {
					lo = mid
				}
			}
		}
	} else if flo && !fhi {
		// feasible at small q: find the largest feasible q
		for range 60 {
			mid := (lo + hi) / 2
			if try(mid) {
				lo = mid
			} else {
				hi = mid
			}
		}
	}
	return bestTau, bestPt, bestQ, found
}
