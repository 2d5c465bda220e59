package policy

import (
	"math"

	"github.com/exitnet/exitnet/golib/xerr"
)

// CostModel is the declared cost of leaving at each exit.
//
//	Cum[k] = Σ_{j≤k} (Stage[j] + Head[j])
//
// Stage and Head may be nil when the model was built from cumulative costs.
type CostModel struct {
	Stage, Head []float64
	Cum         []float64
}

// NewCostModel builds the cost model from per-stage and per-head costs (MACs),
// one of each per exit. Negative or non-finite costs and a zero total are errors.
func NewCostModel(stage, head []float64) (CostModel, error) {
	if len(stage) == 0 {
		return CostModel{}, xerr.Invalid("stage_macs: empty")
	}
	if len(head) != len(stage) {
		return CostModel{}, xerr.Invalid("head_macs: %d values, stage_macs has %d (need one per exit)", len(head), len(stage))
	}
	cum := make([]float64, len(stage))
	acc := 0.0
	for k := range stage {
		if !(stage[k] >= 0) || math.IsInf(stage[k], 0) {
			return CostModel{}, xerr.Invalid("stage_macs: exit %d has %g, need a finite value >= 0", k, stage[k])
		}
		if !(head[k] >= 0) || math.IsInf(head[k], 0) {
			return CostModel{}, xerr.Invalid("head_macs: exit %d has %g, need a finite value >= 0", k, head[k])
		}
		acc += stage[k] + head[k]
		if math.IsInf(acc, 0) {
			return CostModel{}, xerr.Invalid("stage_macs, head_macs: the cumulative cost up to exit %d overflows float64", k)
		}
		cum[k] = acc
	}
	if !(acc > 0) {
		return CostModel{}, xerr.Invalid("stage_macs: total cost is 0 (speed-up undefined)")
	}
	return CostModel{Stage: append([]float64(nil), stage...), Head: append([]float64(nil), head...), Cum: cum}, nil
}

// CostFromCumulative builds the cost model from the cost of leaving at each
// exit directly. Negative, non-finite or decreasing values and a zero total are errors.
func CostFromCumulative(cum []float64) (CostModel, error) {
	if len(cum) == 0 {
		return CostModel{}, xerr.Invalid("costs: empty")
	}
	for k, v := range cum {
		if !(v >= 0) || math.IsInf(v, 0) {
			return CostModel{}, xerr.Invalid("costs: exit %d has %g, need a finite value >= 0", k, v)
		}
		if k > 0 && v < cum[k-1] {
			return CostModel{}, xerr.Invalid("costs: exit %d costs %g < exit %d's %g (cumulative costs cannot decrease)", k, v, k-1, cum[k-1])
		}
	}
	if !(cum[len(cum)-1] > 0) {
		return CostModel{}, xerr.Invalid("costs: total cost is 0 (speed-up undefined)")
	}
	return CostModel{Cum: append([]float64(nil), cum...)}, nil
}

// UniformCost is the default model when none is declared: every exit adds one
// unit (Cum[k] = k+1).
func UniformCost(K int) CostModel {
	cum := make([]float64, K)
	for k := range cum {
		cum[k] = float64(k + 1)
	}
	return CostModel{Cum: cum}
}

// K is the number of exits.
func (c CostModel) K() int { return len(c.Cum) }

// Full is the cost of running every stage and head.
func (c CostModel) Full() float64 { return c.Cum[len(c.Cum)-1] }

func (c CostModel) check(K int) error {
	if len(c.Cum) != K {
		return xerr.Invalid("costs: %d exits in the cost model, %d in the logits", len(c.Cum), K)
	}
	return nil
}

// meanCost is Σ_k hist_k·Cum[k] / n.
func (c CostModel) meanCost(hist []int64, n int) float64 {
	s := 0.0
	for k, h := range hist {
		s += float64(h) * c.Cum[k]
	}
	return s / float64(n)
}
