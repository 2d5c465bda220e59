package policy_test

import (
	"fmt"

	"github.com/exitnet/exitnet/golib/policy"
)

// Two exits, four samples: exit 0 is right for samples 0 and 2, exit 1 for all.
// Leaving at exit 0 costs 1, at exit 1 costs 4.
func ExampleExactCurve() {
	s, _ := policy.NewScores(
		[][]float32{{0.9, 0.8, 0.7, 0.6}, {1, 1, 1, 1}},
		[][]int32{{0, 1, 0, 1}, {0, 0, 0, 0}}, 2)
	cost, _ := policy.CostFromCumulative([]float64{1, 4})
	c, _ := policy.ExactCurve(s, []int32{0, 0, 0, 0}, cost)
	for p := 0; p < c.Len(); p++ {
		fmt.Printf("tau=%v accuracy=%.2f mean_cost=%.2f speedup=%.2f exits=%v\n",
			c.Tau[p], c.Accuracy[p], c.MeanCost[p], c.Speedup[p], c.Point(p).Hist)
	}
	// Output:
	// tau=+Inf accuracy=1.00 mean_cost=4.00 speedup=1.00 exits=[0 4]
	// tau=0.9 accuracy=1.00 mean_cost=3.25 speedup=1.23 exits=[1 3]
	// tau=0.8 accuracy=0.75 mean_cost=2.50 speedup=1.60 exits=[2 2]
	// tau=0.7 accuracy=0.75 mean_cost=1.75 speedup=2.29 exits=[3 1]
	// tau=0.6 accuracy=0.50 mean_cost=1.00 speedup=4.00 exits=[4 0]
}
