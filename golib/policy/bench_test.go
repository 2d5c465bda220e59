package policy

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkExactCurve: the sweep alone (scores precomputed), and the
// confidence computation alone, K = 4, C = 100, seed 1.
func BenchmarkExactCurve(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		rng := rand.New(rand.NewPCG(1, 1))
		l := randLogits(rng, 4, n, 100, false)
		y := randLabels(rng, n, 100)
		s, _ := ComputeScores(l, MaxSoftmax, nil)
		cost := UniformCost(4)
		b.Run(fmt.Sprintf("curve/N=%d", n), func(b *testing.B) {
			for b.Loop() {
				ExactCurve(s, y, cost)
			}
		})
		b.Run(fmt.Sprintf("scores/N=%d", n), func(b *testing.B) {
			for b.Loop() {
				ComputeScores(l, MaxSoftmax, nil)
			}
		})
	}
}
