package fisher

import (
	"math"
	"sync"

	"github.com/exitnet/exitnet/golib/par"
	"github.com/exitnet/exitnet/golib/xerr"
)

// penaltyChunk is the number of elements processed for all K pairs before
// moving on, so θ and the gradient chunk stay in L2 across pairs.
const penaltyChunk = 1 << 15

// Penalty returns the EWC penalty (the ½ convention)
//
//	value = λ/2 · Σ_k Σ_i F_{k,i} (θ_i − θ*_{k,i})²
//
// over K (Fisher, anchor) pairs of flat buffers of len(theta).
func Penalty(theta []float32, anchors, fishers [][]float32, lambda float64) (float64, error) {
	return PenaltyGrad(nil, theta, anchors, fishers, lambda)
}

// PenaltyGrad returns the penalty value and, when dst is not nil, writes its
// gradient with respect to θ in one fused pass:
//
//	dst_i = λ · Σ_k F_{k,i} (θ_i − θ*_{k,i})
//
// The value is accumulated in float64; the gradient is float32 (λ applied in
// float32). λ must be finite and ≥ 0. K = 0 gives value 0 and a zero gradient.
func PenaltyGrad(dst, theta []float32, anchors, fishers [][]float32, lambda float64) (float64, error) {
	if math.IsNaN(lambda) || lambda < 0 || math.IsInf(lambda, 0) {
		return 0, xerr.Invalid("lambda: %v must be finite and >= 0", lambda)
	}
	if len(anchors) != len(fishers) {
		return 0, xerr.Invalid("anchors: %d anchors for %d Fishers", len(anchors), len(fishers))
	}
	p := len(theta)
	if dst != nil && len(dst) != p {
		return 0, xerr.Invalid("dst: %d elements, params have %d", len(dst), p)
	}
	for k := range anchors {
		if len(anchors[k]) != p {
			return 0, xerr.Invalid("anchors: anchor %d has %d elements, params have %d", k, len(anchors[k]), p)
		}
		if len(fishers[k]) != p {
			return 0, xerr.Invalid("fishers: Fisher %d has %d elements, params have %d", k, len(fishers[k]), p)
		}
	}
	if p == 0 {
		return 0, nil
	}
	nc := (p + penaltyChunk - 1) / penaltyChunk
	var mu sync.Mutex
	var total float64
	par.For(nc, 8, func(clo, chi int) {
		var scratch []float32
		if dst == nil {
			scratch = make([]float32, penaltyChunk)
		}
		var v float64
		for c := clo; c < chi; c++ {
			lo, hi := c*penaltyChunk, min((c+1)*penaltyChunk, p)
			var g []float32
			if dst != nil {
				g = dst[lo:hi]
			} else {
				g = scratch[:hi-lo]
			}
			if len(anchors) == 0 {
				clear(g)
			}
			for k := range anchors {
				v += penaltyKernel(g, theta[lo:hi], anchors[k][lo:hi], fishers[k][lo:hi], float32(lambda), k > 0)
			}
		}
		mu.Lock()
		total += v
		mu.Unlock()
	})
	value := 0.5 * lambda * total
	if math.IsNaN(value) || math.IsInf(value, 0) {
		return 0, xerr.Invalid("params: the penalty is not finite (NaN or Inf in params, anchors or fishers)")
	}
	return value, nil
}
