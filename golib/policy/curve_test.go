package policy

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// The exact curve against a brute force over every distinct τ (every
// confidence value at exits 0..K−2, values between them, and ±Inf): the state
// for τ must equal the curve point with the smallest threshold ≥ τ.
func TestExactCurveVsBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		K, n, c int
		ties    bool
		m       Measure
	}{
		{1, 20, 3, false, MaxSoftmax}, {2, 50, 4, true, MaxSoftmax}, {3, 80, 5, true, Margin},
		{4, 200, 3, true, NegEntropy}, {4, 150, 6, false, MaxSoftmax}, {5, 100, 4, true, Patience},
		{3, 3000, 3, true, MaxSoftmax}, // large enough for the radix sort path
	} {
		s, err := ComputeScores(randLogits(rng, tc.K, tc.n, tc.c, tc.ties), tc.m, nil)
		if err != nil {
			t.Fatal(err)
		}
		y := randLabels(rng, tc.n, tc.c)
		cum := make([]float64, tc.K)
		for k := range cum {
			cum[k] = float64(k*k + 1)
		}
		cost, _ := CostFromCumulative(cum)
		c, err := ExactCurve(s, y, cost)
		if err != nil {
			t.Fatal(err)
		}
		var vals []float32
		for k := 0; k < tc.K-1; k++ {
			vals = append(vals, s.Conf[k]...)
		}
		slices.Sort(vals)
		vals = slices.Compact(vals)
		// every event value is a point; the number of points is distinct record values + 1
		probe := []float32{float32(math.Inf(1)), float32(math.Inf(-1))}
		for j, v := range vals {
			probe = append(probe, v, math.Nextafter32(v, float32(math.Inf(1))))
			if j > 0 {
				probe = append(probe, (v+vals[j-1])/2)
			}
		}
		for _, tau := range probe {
			wc, wh, wm := bruteEval(s, y, fill(tc.K, tau), cum)
			p := 0
			for q := range c.Tau {
				if c.Tau[q] >= tau {
					p = q
				}
			}
			pt := c.Point(p)
			if pt.Correct != wc || !slices.Equal(pt.Hist, wh) || pt.MeanCost != wm {
				t.Fatalf("%+v τ=%v: curve point %d (τ=%v) correct %d hist %v cost %v; brute %d %v %v",
					tc, tau, p, c.Tau[p], pt.Correct, pt.Hist, pt.MeanCost, wc, wh, wm)
			}
			if math.Abs(pt.Accuracy-float64(wc)/float64(tc.n)) > 0 || math.Abs(pt.Speedup-cum[tc.K-1]/wm) > 1e-12 {
				t.Fatalf("accuracy/speed-up mismatch at τ=%v", tau)
			}
		}
		// consecutive points are distinct states, thresholds strictly decrease
		for p := 1; p < c.Len(); p++ {
			if !(c.Tau[p] < c.Tau[p-1]) {
				t.Fatalf("thresholds not decreasing at %d", p)
			}
			if c.MeanCost[p] > c.MeanCost[p-1] {
				t.Fatalf("mean cost increased at %d", p)
			}
		}
		if tc.K > 1 && c.Hist[(c.Len()-1)*tc.K] != int64(tc.n) {
			t.Fatalf("last point does not send everyone to exit 0: %v", c.Point(c.Len()-1).Hist)
		}
	}
}

func TestDescKeyOrder(t *testing.T) {
	v := []float32{float32(math.Inf(-1)), -3, -1e-30, 0, 1e-30, 0.5, 1, float32(math.Inf(1))}
	for i := 1; i < len(v); i++ {
		if !(descKey(v[i]) < descKey(v[i-1])) {
			t.Fatalf("descKey order broken at %v", v[i])
		}
	}
	for _, x := range v {
		if fromDescKey(descKey(x)) != x {
			t.Fatalf("round trip %v", x)
		}
	}
	if descKey(float32(math.Copysign(0, -1))) != descKey(0) {
		t.Fatal("-0 and +0 differ")
	}
}

func TestAssignAndEvaluate(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	s, _ := ComputeScores(randLogits(rng, 3, 100, 4, true), MaxSoftmax, []float32{1, 2, 0.5})
	y := randLabels(rng, 100, 4)
	tau := []float32{0.6, 0.5, 7}
	a, err := Assign(s, tau)
	if err != nil {
		t.Fatal(err)
	}
	cost, _ := NewCostModel([]float64{10, 20, 30}, []float64{1, 1, 1})
	if !slices.Equal(cost.Cum, []float64{11, 32, 63}) {
		t.Fatalf("cum %v", cost.Cum)
	}
	pt, err := Evaluate(s, a, y, cost)
	if err != nil {
		t.Fatal(err)
	}
	wc, wh, wm := bruteEval(s, y, tau, cost.Cum)
	if pt.Correct != wc || !slices.Equal(pt.Hist, wh) || pt.MeanCost != wm {
		t.Fatalf("evaluate %+v, brute %d %v %v", pt, wc, wh, wm)
	}
	for i := range a.Exit {
		k := bruteExit(s, i, tau)
		if int(a.Exit[i]) != k || a.Pred[i] != s.Pred[k][i] || a.Conf[i] != s.Conf[k][i] {
			t.Fatalf("row %d", i)
		}
	}
}

// The radix sort against slices.Sort on ragged lengths and key spreads: one
// shared top digit (scatter passes skipped), every digit varying, all keys
// equal, and signed/infinite values (the key order is the float order).
func TestSortKeysRagged(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	gens := map[string]func(i int) float32{
		"narrow": func(int) float32 { return 0.5 + 0.25*rng.Float32() },
		"wide":   func(int) float32 { return float32(rng.NormFloat64() * math.Exp(20*rng.NormFloat64())) },
		"equal":  func(int) float32 { return 0.75 },
		"inf": func(i int) float32 {
			switch i % 7 {
			case 0:
				return float32(math.Inf(1))
			case 1:
				return float32(math.Inf(-1))
			}
			return float32(rng.NormFloat64())
		},
	}
	for name, g := range gens {
		for _, n := range []int{0, 1, 1023, 1024, 1025, 4099, 1<<14 - 1, 1 << 14, 70001} {
			a := make([]uint64, n)
			for i := range a {
				a[i] = uint64(descKey(g(i)))<<32 | uint64(i)
			}
			b := slices.Clone(a)
			a = sortKeys(a, make([]uint64, n), new([3 << 13]uint32))
			for i := 1; i < n; i++ {
				if a[i]>>32 < a[i-1]>>32 {
					t.Fatalf("%s n=%d: keys out of order at %d", name, n, i)
				}
			}
			slices.Sort(a)
			slices.Sort(b)
			if !slices.Equal(a, b) {
				t.Fatalf("%s n=%d: sort lost or changed keys", name, n)
			}
		}
	}
}

// Own confidences with ±Inf, ties, ragged N (small and radix-sorted) and K
// covering every sweep state width (uint16, uint32, uint64, lookup beyond 58);
// against the brute force at every distinct threshold.
func TestExactCurveInfAndRagged(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	// narrow: confidences in [0.01, 1] (26 varying key bits: the sort's two 13-bit
	// passes once there are 2^14 events), checked at every 50th point.
	for _, tc := range []struct {
		K, n   int
		narrow bool
	}{{2, 1, false}, {3, 7, false}, {4, 1025, false}, {6, 1500, false}, {13, 300, false}, {30, 200, false}, {60, 40, false},
		{4, 9000, true}} {
		conf := make([][]float32, tc.K)
		pred := make([][]int32, tc.K)
		for k := range conf {
			conf[k] = make([]float32, tc.n)
			pred[k] = make([]int32, tc.n)
			for i := range conf[k] {
				switch r := rng.IntN(10); {
				case tc.narrow && r < 3:
					conf[k][i] = float32(rng.IntN(50)+1) / 50 // ties
				case tc.narrow:
					conf[k][i] = 0.01 + 0.99*rng.Float32()
				case r == 0:
					conf[k][i] = float32(math.Inf(1))
				case r == 1:
					conf[k][i] = float32(math.Inf(-1))
				case r == 2:
					conf[k][i] = float32(rng.IntN(3)) // ties
				default:
					conf[k][i] = float32(rng.NormFloat64() * 100)
				}
				pred[k][i] = int32(rng.IntN(3))
			}
		}
		s, err := NewScores(conf, pred, 3)
		if err != nil {
			t.Fatal(err)
		}
		y := randLabels(rng, tc.n, 3)
		cum := make([]float64, tc.K)
		for k := range cum {
			cum[k] = float64(2*k + 1)
		}
		cost, _ := CostFromCumulative(cum)
		c, err := ExactCurve(s, y, cost)
		if err != nil {
			t.Fatal(err)
		}
		for q := 0; q < c.Len(); q += 1 + 49*int(min(1, tc.n/5000)) {
			// τ = Tau[q] is served by the last point whose threshold is ≥ τ (point 0,
			// "above every value", is shadowed when some confidence is +Inf)
			p := q
			for p+1 < c.Len() && c.Tau[p+1] >= c.Tau[q] {
				p++
			}
			wc, wh, wm := bruteEval(s, y, fill(tc.K, c.Tau[q]), cum)
			pt := c.Point(p)
			if pt.Correct != wc || !slices.Equal(pt.Hist, wh) || pt.MeanCost != wm || pt.Accuracy != float64(wc)/float64(tc.n) {
				t.Fatalf("%+v point %d τ=%v: %d %v %v; brute %d %v %v", tc, p, c.Tau[p], pt.Correct, pt.Hist, pt.MeanCost, wc, wh, wm)
			}
		}
	}
}

// More exits than an event can name is a clear error, not a wrong curve.
func TestExactCurveRefusesTooManyExits(t *testing.T) {
	K := MaxCurveExits + 1
	conf, pred := make([][]float32, K), make([][]int32, K)
	for k := range conf {
		conf[k], pred[k] = []float32{0.5}, []int32{0}
	}
	s, err := NewScores(conf, pred, 2)
	if err != nil {
		t.Fatal(err)
	}
	cum := make([]float64, K)
	for k := range cum {
		cum[k] = float64(k + 1)
	}
	cost, _ := CostFromCumulative(cum)
	if _, err := ExactCurve(s, []int32{0}, cost); err == nil || !strings.Contains(err.Error(), "at most 32768") {
		t.Fatalf("want the exit bound, got %v", err)
	}
}
