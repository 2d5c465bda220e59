package policy

import (
	"math"

	"github.com/exitnet/exitnet/golib/xerr"
)

// relTol absorbs the rounding of fraction·Full when comparing with exact costs.
const relTol = 1e-12

// AccuracyAtBudgets returns, for each budget b (a fraction of the full cost,
// First/Full ≤ b ≤ 1), the best accuracy over the curve's points with mean
// cost ≤ b·Full, and the index of that point (the cheapest among equals).
func AccuracyAtBudgets(c *Curve, budgets []float64) ([]float64, []int, error) {
	if len(budgets) == 0 {
		return nil, nil, xerr.Invalid("budgets: empty")
	}
	acc := make([]float64, len(budgets))
	idx := make([]int, len(budgets))
	for j, b := range budgets {
		if b != b {
			return nil, nil, xerr.Invalid("budgets: NaN at position %d", j)
		}
		lim := b * c.Full
		if lim < c.First*(1-relTol) {
			return nil, nil, xerr.Invalid("budgets: %g of the full cost (%g) is below the cost of the first exit (%g = %g of the full cost)", b, lim, c.First, c.First/c.Full)
		}
		if b > 1+relTol {
			return nil, nil, xerr.Invalid("budgets: %g is above 1 (the full cost)", b)
		}
		best := -1
		for p := range c.Tau {
			if c.MeanCost[p] <= lim*(1+relTol) && (best < 0 || c.Correct[p] > c.Correct[best] ||
				(c.Correct[p] == c.Correct[best] && c.MeanCost[p] < c.MeanCost[best])) {
				best = p
			}
		}
		acc[j], idx[j] = c.Accuracy[best], best
	}
	return acc, idx, nil
}

// SpeedupAtIsoAccuracy returns the speed-up Full/MeanCost of the cheapest point
// whose accuracy is at least A_last − delta, where A_last is the accuracy of
// the last exit alone (point 0, τ = +Inf), and that point's index.
func SpeedupAtIsoAccuracy(c *Curve, delta float64) (float64, int, error) {
	if !(delta >= 0) || math.IsInf(delta, 0) {
		return 0, 0, xerr.Invalid("delta: %g, need a finite value >= 0", delta)
	}
	ref := c.Accuracy[0] - delta
	best := 0
	for p := range c.Tau {
		if c.Accuracy[p] >= ref-relTol && (c.MeanCost[p] < c.MeanCost[best] ||
			(c.MeanCost[p] == c.MeanCost[best] && c.Correct[p] > c.Correct[best])) {
			best = p
		}
	}
	return c.Speedup[best], best, nil
}

// AUC is the area under accuracy versus normalised cost x = MeanCost/Full,
// by the trapezoid rule along the curve (x runs from First/Full to 1):
//
//	AUC = Σ_p (x_p − x_{p+1}) · (acc_p + acc_{p+1}) / 2
//
// It is at most 1 − First/Full; divide by that for a [0, 1] score.
func AUC(c *Curve) float64 {
	a := 0.0
	for p := 0; p+1 < len(c.Tau); p++ {
		dx := (c.MeanCost[p] - c.MeanCost[p+1]) / c.Full
		a += dx * (c.Accuracy[p] + c.Accuracy[p+1]) / 2
	}
	return a
}
