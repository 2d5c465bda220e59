package fisher

import (
	"math"

	"github.com/exitnet/exitnet/golib/xerr"
)

// Consolidation modes.
const (
	ConsolidateSeparate = "separate"
	ConsolidateSum      = "sum"
	ConsolidateWeighted = "weighted"
	ConsolidateOnline   = "online"
)

// Consolidate combines the Fishers of several exits (equal lengths, oldest first):
//
//	separate: the list itself (copied)
//	sum:      F = Σ_k F_k
//	weighted: F = Σ_k c_k F_k              (weights c_k finite, len K)
//	online:   F ← F_0; F ← γ·F + F_k for k = 1..K−1   (γ ∈ (0, 1])
//
// Sums are formed in float64 and rounded once. It returns one slice for
// separate and a single-element list otherwise. weights must be nil unless
// mode is "weighted"; gamma is read only by "online".
func Consolidate(mode string, fishers [][]float32, weights []float64, gamma float64) ([][]float32, error) {
	if len(fishers) == 0 {
		return nil, xerr.Invalid("fishers: empty list")
	}
	p := len(fishers[0])
	for k, f := range fishers {
		if len(f) != p {
			return nil, xerr.Invalid("fishers: Fisher %d has %d elements, Fisher 0 has %d", k, len(f), p)
		}
		if i := firstNonFinite32(f); i >= 0 {
			return nil, xerr.Invalid("fishers: Fisher %d has a non-finite value at element %d", k, i)
		}
	}
	if mode != ConsolidateWeighted && weights != nil {
		return nil, xerr.Invalid("weights: only used by mode \"weighted\" (mode is %q)", mode)
	}
	acc := make([]float64, p)
	switch mode {
	case ConsolidateSeparate:
		out := make([][]float32, len(fishers))
		for k, f := range fishers {
			out[k] = append([]float32(nil), f...)
		}
		return out, nil
	case ConsolidateSum:
		for _, f := range fishers {
			for i, v := range f {
				acc[i] += float64(v)
			}
		}
	case ConsolidateWeighted:
		if len(weights) != len(fishers) {
			return nil, xerr.Invalid("weights: %d weights for %d Fishers", len(weights), len(fishers))
		}
		for k, c := range weights {
			if !(c >= 0) || math.IsInf(c, 0) {
				return nil, xerr.Invalid("weights: weight %d is %v; must be finite and >= 0 (a Fisher is positive semi-definite)", k, c)
			}
		}
		for k, f := range fishers {
			c := weights[k]
			for i, v := range f {
				acc[i] += c * float64(v)
			}
		}
	case ConsolidateOnline:
		if !(gamma > 0 && gamma <= 1) {
			return nil, xerr.Invalid("gamma: %v is outside (0, 1]", gamma)
		}
		for i, v := range fishers[0] {
			acc[i] = float64(v)
		}
		for _, f := range fishers[1:] {
			for i, v := range f {
				acc[i] = gamma*acc[i] + float64(v)
			}
		}
	default:
		return nil, xerr.Invalid("mode: %q is not one of separate, sum, weighted, online", mode)
	}
	out := make([]float32, p)
	for i, v := range acc {
		if v > math.MaxFloat32 {
			return nil, xerr.Invalid("fishers: consolidated element %d is %g, beyond float32 (mode %q)", i, v, mode)
		}
		out[i] = float32(v)
	}
	return [][]float32{out}, nil
}
