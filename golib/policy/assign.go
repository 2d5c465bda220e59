package policy

import (
	"math"

	"github.com/exitnet/exitnet/golib/xerr"
)

// Assignment is the outcome per sample for given thresholds.
type Assignment struct {
	Exit []int32   // exit index in [0, K)
	Pred []int32   // prediction of that exit
	Conf []float32 // confidence at that exit
}

// Assign sends sample i to the first exit k < K−1 with Conf[k][i] ≥ τ_k, or to
// the last exit. tau has one value (global τ) or K values (τ_{K−1} is not used:
// the last exit always accepts). NaN thresholds are errors; ±Inf are allowed
// (+Inf: nobody leaves there, −Inf: everybody who reaches it does).
func Assign(s *Scores, tau []float32) (*Assignment, error) {
	full, err := expandTau(tau, s.K)
	if err != nil {
		return nil, err
	}
	a := &Assignment{Exit: make([]int32, s.N), Pred: make([]int32, s.N), Conf: make([]float32, s.N)}
	for i := 0; i < s.N; i++ {
		k := s.exitOf(i, full)
		a.Exit[i], a.Pred[i], a.Conf[i] = int32(k), s.Pred[k][i], s.Conf[k][i]
	}
	return a, nil
}

func (s *Scores) exitOf(i int, tau []float32) int {
	for k := 0; k < s.K-1; k++ {
		if s.Conf[k][i] >= tau[k] {
			return k
		}
	}
	return s.K - 1
}

func expandTau(tau []float32, K int) ([]float32, error) {
	if len(tau) != 1 && len(tau) != K {
		return nil, xerr.Invalid("thresholds: %d values, need 1 (global) or K = %d (one per exit)", len(tau), K)
	}
	full := make([]float32, K)
	for k := range full {
		v := tau[0]
		if len(tau) == K {
			v = tau[k]
		}
		if v != v {
			return nil, xerr.Invalid("thresholds: NaN at position %d", min(k, len(tau)-1))
		}
		full[k] = v
	}
	full[K-1] = float32(math.Inf(-1))
	return full, nil
}

// Point is one operating point: a threshold (global τ, or NaN for per-exit
// thresholds), its accuracy, mean cost, speed-up and exit histogram.
type Point struct {
	Tau      float32
	Correct  int64
	Accuracy float64 // Correct / N
	MeanCost float64 // Σ_k Hist[k]·Cum[k] / N
	Speedup  float64 // Full / MeanCost
	Hist     []int64 // samples leaving at each exit
}

// Evaluate scores an assignment against labels under a cost model.
func Evaluate(s *Scores, a *Assignment, labels []int32, cost CostModel) (Point, error) {
	if err := s.checkLabels(labels); err != nil {
		return Point{}, err
	}
	if err := cost.check(s.K); err != nil {
		return Point{}, err
	}
	if len(a.Exit) != s.N || len(a.Pred) != s.N {
		return Point{}, xerr.Invalid("assignment: %d rows for %d samples", len(a.Exit), s.N)
	}
	hist := make([]int64, s.K)
	var correct int64
	for i := range a.Exit {
		hist[a.Exit[i]]++
		if a.Pred[i] == labels[i] {
			correct++
		}
	}
	return makePoint(float32(math.NaN()), correct, hist, s.N, cost), nil
}

func makePoint(tau float32, correct int64, hist []int64, n int, cost CostModel) Point {
	mc := cost.meanCost(hist, n)
	sp := math.Inf(1)
	if mc > 0 {
		sp = cost.Full() / mc
	}
	return Point{Tau: tau, Correct: correct, Accuracy: float64(correct) / float64(n), MeanCost: mc, Speedup: sp, Hist: hist}
}

// evalTau assigns and evaluates in one pass (internal; inputs already validated).
func (s *Scores) evalTau(tau []float32, labels []int32, cost CostModel) Point {
	hist := make([]int64, s.K)
	var correct int64
	for i := 0; i < s.N; i++ {
		k := s.exitOf(i, tau)
		hist[k]++
		if s.Pred[k][i] == labels[i] {
			correct++
		}
	}
	return makePoint(float32(math.NaN()), correct, hist, s.N, cost)
}
