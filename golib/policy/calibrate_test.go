package policy

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// A synthetic early-exit problem: deeper exits are more accurate, confidence
// correlates with correctness (logit of the true class boosted by an
// exit-dependent amount), and logits are rounded to create ties.
func synth(rng *rand.Rand, K, n, c int) ([]Matrix, []int32) {
	y := randLabels(rng, n, c)
	out := make([]Matrix, K)
	for k := range out {
		d := make([]float32, n*c)
		for i := 0; i < n; i++ {
			for j := 0; j < c; j++ {
				v := rng.NormFloat64()
				if int32(j) == y[i] {
					v += 0.6 * float64(k+1) * rng.Float64() * 2
				}
				d[i*c+j] = float32(math.Round(v*8) / 8)
			}
		}
		out[k] = Matrix{Data: d, Rows: n, Cols: c}
	}
	return out, y
}

func setup(t *testing.T, seed uint64, n int) (*Scores, []int32, *Scores, []int32, CostModel) {
	rng := rand.New(rand.NewPCG(seed, 7))
	lv, yv := synth(rng, 4, n, 10)
	lt, yt := synth(rng, 4, n, 10)
	sv, err := ComputeScores(lv, MaxSoftmax, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := ComputeScores(lt, MaxSoftmax, nil)
	cost, _ := NewCostModel([]float64{100, 120, 150, 200}, []float64{10, 10, 10, 5})
	return sv, yv, st, yt, cost
}

// bruteGlobal: best point over every distinct τ by direct evaluation.
func bruteGlobal(s *Scores, y []int32, cost CostModel, o objective) (Point, bool) {
	vals := []float32{float32(math.Inf(1))}
	for k := 0; k < s.K-1; k++ {
		vals = append(vals, s.Conf[k]...)
	}
	var best Point
	found := false
	for _, v := range vals {
		c, h, m := bruteEval(s, y, fill(s.K, v), cost.Cum)
		pt := Point{Correct: c, Hist: h, MeanCost: m, Accuracy: float64(c) / float64(s.N)}
		if o.feasible(pt) && (!found || o.better(pt, best)) {
			best, found = pt, true
		}
	}
	return best, found
}

func TestCalibrate(t *testing.T) {
	sv, yv, st, yt, cost := setup(t, 11, 400)
	full := cost.Full()
	var targets []Target
	for _, f := range []float64{cost.Cum[0] / full, 0.45, 0.6, 0.8, 1} {
		targets = append(targets, Target{Cost: f * full})
	}
	last, _, _ := bruteEval(sv, yv, fill(4, float32(math.Inf(1))), cost.Cum)
	for _, a := range []float64{0.3, 0.5, float64(last) / 400} {
		targets = append(targets, Target{ByAccuracy: true, Accuracy: a})
	}
	for _, tg := range targets {
		o := objective{tg}
		res := map[Method]*Calibration{}
		for _, m := range []Method{Global, MSDNet, PerExit} {
			c, err := Calibrate(sv, yv, st, yt, cost, tg, m)
			if err != nil {
				t.Fatalf("%v %+v: %v", m, tg, err)
			}
			res[m] = c
			// the validation point is what the thresholds give (brute force), and meets the target
			wc, wh, wm := bruteEval(sv, yv, c.Thresholds, cost.Cum)
			if c.Val.Correct != wc || !slices.Equal(c.Val.Hist, wh) || c.Val.MeanCost != wm {
				t.Fatalf("%v %+v: val point %+v, brute %d %v %v", m, tg, c.Val, wc, wh, wm)
			}
			if tg.ByAccuracy && !(float64(wc)/400 >= tg.Accuracy) || !tg.ByAccuracy && !(wm <= tg.Cost) {
				t.Fatalf("%v %+v: target missed on validation: acc %v cost %v", m, tg, float64(wc)/400, wm)
			}
			tc, th, tm := bruteEval(st, yt, c.Thresholds, cost.Cum)
			if c.Test.Correct != tc || !slices.Equal(c.Test.Hist, th) || c.Test.MeanCost != tm {
				t.Fatalf("%v: test point mismatch", m)
			}
		}
		bg, _ := bruteGlobal(sv, yv, cost, o)
		if g := res[Global].Val; g.Correct != bg.Correct || g.MeanCost != bg.MeanCost {
			t.Fatalf("global %+v: %d/%v, brute best %d/%v", tg, g.Correct, g.MeanCost, bg.Correct, bg.MeanCost)
		}
		t.Logf("%+v: global %d/%.1f msdnet %d/%.1f per_exit %d/%.1f", tg, res[Global].Val.Correct, res[Global].Val.MeanCost, res[MSDNet].Val.Correct, res[MSDNet].Val.MeanCost, res[PerExit].Val.Correct, res[PerExit].Val.MeanCost)
		pe := res[PerExit].Val
		for _, m := range []Method{Global, MSDNet} {
			if o.better(res[m].Val, pe) {
				t.Fatalf("per_exit worse than %v on validation for %+v: %+v vs %+v", m, tg, pe, res[m].Val)
			}
		}
	}
}

// MSDNet thresholds on tie-free scores give exactly ⌊N·p_k⌋ samples at each
// early exit, with p_k ∝ q^k (hand formula).
func TestMSDNetProportions(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	s, _ := ComputeScores(randLogits(rng, 4, 1000, 10, false), MaxSoftmax, nil)
	for _, q := range []float64{0.5, 1, 2} {
		tau := MSDNetThresholds(s, q)
		hist := make([]int, 4)
		for i := 0; i < s.N; i++ {
			hist[bruteExit(s, i, tau)]++
		}
		z := 1 + q + q*q + q*q*q
		for k := 0; k < 3; k++ {
			if want := int(math.Floor(1000 * math.Pow(q, float64(k)) / z)); hist[k] != want {
				t.Fatalf("q=%v exit %d: %d samples, want %d", q, k, hist[k], want)
			}
		}
	}
}

func TestCalibrateErrors(t *testing.T) {
	sv, yv, st, yt, cost := setup(t, 12, 100)
	for _, tc := range []struct {
		tg   Target
		want string
	}{
		{Target{Cost: cost.Cum[0] * 0.99}, "target_cost: "},
		{Target{Cost: cost.Full() * 1.01}, "target_cost: "},
		{Target{Cost: math.NaN()}, "target_cost: NaN"},
		{Target{ByAccuracy: true, Accuracy: 1.5}, "target_accuracy: "},
		{Target{ByAccuracy: true, Accuracy: 1}, "target_accuracy: 1 is not reachable"},
	} {
		for _, m := range []Method{Global, MSDNet, PerExit} {
			_, err := Calibrate(sv, yv, st, yt, cost, tc.tg, m)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("%v %+v: %v", m, tc.tg, err)
			}
		}
	}
	// a budget fraction times the full cost that rounds just below the first exit's cost
	cm, _ := CostFromCumulative([]float64{0.1, 0.2, 0.3, 2.9}) // (0.1/2.9)·2.9 = 0.09999999999999999
	frac := cm.Cum[0] / cm.Full()
	if !(frac*cm.Full() < cm.Cum[0]) {
		t.Fatalf("no rounding for this example: %v", frac*cm.Full())
	}
	for _, m := range []Method{Global, MSDNet, PerExit} {
		c, err := Calibrate(sv, yv, nil, nil, cm, Target{Cost: frac * cm.Full()}, m)
		if err != nil || c.Val.Hist[0] != int64(sv.N) {
			t.Errorf("%v at the first exit's cost: %v", m, err)
		}
	}
	bad := slices.Clone(yt)
	bad[3] = 10
	if _, err := Calibrate(sv, yv, st, bad, cost, Target{Cost: cost.Full()}, Global); err == nil || !strings.Contains(err.Error(), "labels: 10 at row 3") {
		t.Errorf("labels: %v", err)
	}
	if _, err := Calibrate(sv, yv, st, yt, UniformCost(3), Target{Cost: 2}, Global); err == nil || !strings.HasPrefix(err.Error(), "costs:") {
		t.Errorf("costs K: %v", err)
	}
}
