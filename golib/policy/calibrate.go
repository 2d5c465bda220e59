package policy

import (
	"math"

	"github.com/exitnet/exitnet/golib/xerr"
)

// Method selects the calibration search.
type Method int

const (
	// Global searches a single τ on the validation split's exact curve.
	Global Method = iota
	// MSDNet fits per-exit thresholds so that the validation exit proportions
	// follow a geometric law p_k ∝ q^k (Huang et al., MSDNet, ICLR 2018), and
	// searches q (bisection on log q) for the target.
	MSDNet
	// PerExit runs coordinate descent over τ_0..τ_{K−2}, each coordinate swept
	// exactly over the distinct validation confidences at that exit, starting
	// from both the MSDNet and the Global solutions and keeping the better. It
	// never ends worse than either start on validation.
	PerExit
)

var methodNames = [...]string{"global", "msdnet", "per_exit"}

func (m Method) String() string {
	if m >= 0 && int(m) < len(methodNames) {
		return methodNames[m]
	}
	return "Method(?)"
}

// ParseMethod maps "global", "msdnet", "per_exit" to a Method.
func ParseMethod(s string) (Method, error) {
	for i, n := range methodNames {
		if s == n {
			return Method(i), nil
		}
	}
	return 0, xerr.Invalid("method: %q is not one of global, msdnet, per_exit", s)
}

// Target is what calibration aims for on validation: either a mean cost
// (ByAccuracy false: maximise accuracy subject to mean cost ≤ Cost; ties go to
// the cheaper point) or an accuracy (ByAccuracy true: minimise mean cost
// subject to accuracy ≥ Accuracy; ties go to the more accurate point).
type Target struct {
	ByAccuracy bool
	Cost       float64 // same unit as the cost model, in [Cum[0], Full]
	Accuracy   float64 // in [0, 1]
}

// Calibration is the chosen operating point: thresholds (K values; the last
// one is −Inf, the last exit always accepts), the MSDNet q when used (NaN
// otherwise), and the validation and test points it gives.
type Calibration struct {
	Method     Method
	Thresholds []float32
	Q          float64
	Val, Test  Point
	HasTest    bool
}

type objective struct {
	t Target
}

func (o objective) feasible(p Point) bool {
	if o.t.ByAccuracy {
		return p.Accuracy >= o.t.Accuracy
	}
	return p.MeanCost <= o.t.Cost
}

// better reports whether a beats b (both feasible).
func (o objective) better(a, b Point) bool {
	if o.t.ByAccuracy {
		return a.MeanCost < b.MeanCost || (a.MeanCost == b.MeanCost && a.Correct > b.Correct)
	}
	return a.Correct > b.Correct || (a.Correct == b.Correct && a.MeanCost < b.MeanCost)
}

func (t Target) check(cost CostModel) error {
	if t.ByAccuracy {
		if !(t.Accuracy >= 0 && t.Accuracy <= 1) {
			return xerr.Invalid("target_accuracy: %g, need a value in [0, 1]", t.Accuracy)
		}
		return nil
	}
	if t.Cost != t.Cost {
		return xerr.Invalid("target_cost: NaN")
	}
	if t.Cost < cost.Cum[0] && t.Cost >= cost.Cum[0]*(1-relTol) {
		return nil // rounding of fraction·full (e.g. (Cum[0]/Full)·Full): snapped by snap()
	}
	if t.Cost > cost.Full() && t.Cost <= cost.Full()*(1+relTol) {
		return nil
	}
	if t.Cost < cost.Cum[0] {
		return xerr.Invalid("target_cost: %g is below the cost of the first exit (%g): no policy can be that cheap", t.Cost, cost.Cum[0])
	}
	if t.Cost > cost.Full() {
		return xerr.Invalid("target_cost: %g is above the full cost (%g): every policy meets it; pass at most the full cost", t.Cost, cost.Full())
	}
	return nil
}

// Calibrate chooses thresholds on the validation split for target with the
// given method, then evaluates them on the test split (test may be nil).
// An unreachable accuracy target is an error naming the best reachable value.
func Calibrate(val *Scores, valLabels []int32, test *Scores, testLabels []int32, cost CostModel, target Target, method Method) (*Calibration, error) {
	if err := val.checkLabels(valLabels); err != nil {
		return nil, xerr.Wrap(err, "validation")
	}
	if err := cost.check(val.K); err != nil {
		return nil, err
	}
	if err := target.check(cost); err != nil {
		return nil, err
	}
	if test != nil {
		if test.K != val.K || test.C != val.C {
			return nil, xerr.Invalid("test_logits: %d exits × %d classes, validation has %d × %d", test.K, test.C, val.K, val.C)
		}
		if err := test.checkLabels(testLabels); err != nil {
			return nil, xerr.Wrap(err, "test")
		}
	}
	if !target.ByAccuracy { // within relTol of a bound (checked above): snap onto it
		target.Cost = min(max(target.Cost, cost.Cum[0]), cost.Full())
	}
	o := objective{target}
	var (
		tau []float32
		pt  Point
		q   = math.NaN()
		ok  bool
		err error
	)
	switch method {
	case Global:
		tau, pt, ok, err = calibrateGlobal(val, valLabels, cost, o)
	case MSDNet:
		tau, pt, q, ok = calibrateMSDNet(val, valLabels, cost, o)
	case PerExit:
		tau, pt, ok, err = calibratePerExit(val, valLabels, cost, o)
	default:
		return nil, xerr.Invalid("method: unknown value %d", int(method))
	}
	if err != nil {
		return nil, err
	}
	if !ok {
		best := val.bestAccuracy(valLabels)
		return nil, xerr.Invalid("target_accuracy: %g is not reachable on validation with method %s (the best accuracy of any single exit assignment is %g)", target.Accuracy, method, best)
	}
	c := &Calibration{Method: method, Thresholds: tau, Q: q, Val: pt}
	if test != nil {
		c.Test = test.evalTau(tau, testLabels, cost)
		c.HasTest = true
	}
	return c, nil
}

// bestAccuracy is the accuracy of the best exit chosen per sample by an oracle
// (an upper bound for every policy), used in error messages.
func (s *Scores) bestAccuracy(labels []int32) float64 {
	var c int
	for i := 0; i < s.N; i++ {
		for k := 0; k < s.K; k++ {
			if s.Pred[k][i] == labels[i] {
				c++
				break
			}
		}
	}
	return float64(c) / float64(s.N)
}

func globalTau(t float32, K int) []float32 {
	tau := make([]float32, K)
	for k := range tau {
		tau[k] = t
	}
	tau[K-1] = float32(math.Inf(-1))
	return tau
}

func calibrateGlobal(val *Scores, labels []int32, cost CostModel, o objective) ([]float32, Point, bool, error) {
	c, err := ExactCurve(val, labels, cost)
	if err != nil {
		return nil, Point{}, false, err
	}
	best := -1
	for p := 0; p < c.Len(); p++ {
		pt := c.Point(p)
		if o.feasible(pt) && (best < 0 || o.better(pt, c.Point(best))) {
			best = p
		}
	}
	if best < 0 {
		return nil, Point{}, false, nil
	}
	pt := c.Point(best)
	pt.Hist = append([]int64(nil), pt.Hist...)
	pt.Tau = c.Tau[best]
	return globalTau(c.Tau[best], val.K), pt, true, nil
}
