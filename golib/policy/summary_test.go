package policy

import (
	"math"
	"strings"
	"testing"
)

// A hand-built curve (K = 2, N = 4, costs 1 and 4): values worked out on paper.
func TestSummariesHand(t *testing.T) {
	// exit-0 confidences 0.9, 0.8, 0.7, 0.6; exit 1 right for everyone, exit 0
	// right for samples 0 and 2.
	s, err := NewScores([][]float32{{0.9, 0.8, 0.7, 0.6}, {1, 1, 1, 1}}, [][]int32{{0, 1, 0, 1}, {0, 0, 0, 0}}, 2)
	if err != nil {
		t.Fatal(err)
	}
	y := []int32{0, 0, 0, 0}
	cost, _ := CostFromCumulative([]float64{1, 4})
	c, err := ExactCurve(s, y, cost)
	if err != nil {
		t.Fatal(err)
	}
	// points: τ=+Inf (4 correct, cost 4), 0.9 (4, 3.25), 0.8 (3, 2.5), 0.7 (3, 1.75), 0.6 (2, 1)
	wantC := []int64{4, 4, 3, 3, 2}
	wantM := []float64{4, 3.25, 2.5, 1.75, 1}
	if c.Len() != 5 {
		t.Fatalf("%d points", c.Len())
	}
	for p := range wantC {
		if c.Correct[p] != wantC[p] || c.MeanCost[p] != wantM[p] {
			t.Fatalf("point %d: %d %v", p, c.Correct[p], c.MeanCost[p])
		}
	}
	acc, idx, err := AccuracyAtBudgets(c, []float64{0.25, 0.5, 0.85, 1})
	if err != nil {
		t.Fatal(err)
	}
	wantA := []float64{0.5, 0.75, 1, 1}
	wantI := []int{4, 3, 1, 1}
	for j := range wantA {
		if acc[j] != wantA[j] || idx[j] != wantI[j] {
			t.Fatalf("budget %d: %v at %d", j, acc[j], idx[j])
		}
	}
	sp, p, _ := SpeedupAtIsoAccuracy(c, 0)
	if sp != 4/3.25 || p != 1 {
		t.Fatalf("iso δ=0: %v at %d", sp, p)
	}
	sp, p, _ = SpeedupAtIsoAccuracy(c, 0.25)
	if sp != 4/1.75 || p != 3 {
		t.Fatalf("iso δ=0.25: %v at %d", sp, p)
	}
	// trapezoids in x = cost/4: (0.1875)(1) + (0.1875)(0.875) + (0.1875)(0.75) + (0.1875)(0.625)
	want := 0.1875 * (1 + 0.875 + 0.75 + 0.625)
	if math.Abs(AUC(c)-want) > 1e-15 {
		t.Fatalf("AUC %v want %v", AUC(c), want)
	}
	for _, b := range [][]float64{{0.2}, {1.5}, {math.NaN()}, {}} {
		if _, _, err := AccuracyAtBudgets(c, b); err == nil || !strings.HasPrefix(err.Error(), "budgets:") {
			t.Errorf("budgets %v: %v", b, err)
		}
	}
	if _, _, err := SpeedupAtIsoAccuracy(c, -0.1); err == nil {
		t.Error("negative delta accepted")
	}
}

func TestInputErrors(t *testing.T) {
	ok := Matrix{Data: make([]float32, 6), Rows: 2, Cols: 3}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"empty", func() error { _, e := ComputeScores(nil, MaxSoftmax, nil); return e }(), "logits: no exits"},
		{"N", func() error {
			_, e := ComputeScores([]Matrix{ok, {Data: make([]float32, 9), Rows: 3, Cols: 3}}, MaxSoftmax, nil)
			return e
		}(), "logits: exit 1 is 3×3"},
		{"C", func() error {
			_, e := ComputeScores([]Matrix{ok, {Data: make([]float32, 8), Rows: 2, Cols: 4}}, MaxSoftmax, nil)
			return e
		}(), "logits: exit 1 is 2×4"},
		{"rows0", func() error { _, e := ComputeScores([]Matrix{{Rows: 0, Cols: 3}}, MaxSoftmax, nil); return e }(), "logits: no samples"},
		{"nan", func() error {
			d := make([]float32, 6)
			d[4] = float32(math.NaN())
			_, e := ComputeScores([]Matrix{ok, {Data: d, Rows: 2, Cols: 3}}, MaxSoftmax, nil)
			return e
		}(), "exit 1: logits: row 1"},
		{"temps", func() error { _, e := ComputeScores([]Matrix{ok}, MaxSoftmax, []float32{1, 2}); return e }(), "temperature: 2 values"},
		{"temp0", func() error { _, e := ComputeScores([]Matrix{ok}, MaxSoftmax, []float32{-1}); return e }(), "temperature: exit 0"},
		{"negcost", func() error { _, e := NewCostModel([]float64{1, -1}, []float64{0, 0}); return e }(), "stage_macs: exit 1"},
		{"neghead", func() error { _, e := NewCostModel([]float64{1, 1}, []float64{0, -2}); return e }(), "head_macs: exit 1"},
		{"headlen", func() error { _, e := NewCostModel([]float64{1, 1}, []float64{0}); return e }(), "head_macs: 1 values"},
		{"decreasing", func() error { _, e := CostFromCumulative([]float64{1, 3, 2}); return e }(), "costs: exit 2 costs 2"},
		{"zero", func() error { _, e := CostFromCumulative([]float64{0, 0}); return e }(), "costs: total cost is 0"},
		{"taulen", func() error {
			s, _ := ComputeScores([]Matrix{ok, ok, ok}, MaxSoftmax, nil)
			_, e := Assign(s, []float32{1, 2})
			return e
		}(), "thresholds: 2 values"},
		{"taunan", func() error {
			s, _ := ComputeScores([]Matrix{ok, ok}, MaxSoftmax, nil)
			_, e := Assign(s, []float32{float32(math.NaN())})
			return e
		}(), "thresholds: NaN"},
		{"labels", func() error {
			s, _ := ComputeScores([]Matrix{ok, ok}, MaxSoftmax, nil)
			_, e := ExactCurve(s, []int32{0, -1}, UniformCost(2))
			return e
		}(), "labels: -1 at row 1"},
		{"labellen", func() error {
			s, _ := ComputeScores([]Matrix{ok, ok}, MaxSoftmax, nil)
			_, e := ExactCurve(s, []int32{0}, UniformCost(2))
			return e
		}(), "labels: 1 values"},
		{"confnan", func() error {
			_, e := NewScores([][]float32{{0, float32(math.NaN())}}, [][]int32{{0, 0}}, 2)
			return e
		}(), "conf: NaN at exit 0, row 1"},
	} {
		if tc.err == nil || !strings.HasPrefix(tc.err.Error(), tc.want) {
			t.Errorf("%s: got %v, want prefix %q", tc.name, tc.err, tc.want)
		}
	}
}
