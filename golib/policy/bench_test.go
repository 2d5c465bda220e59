package policy

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/exitnet/exitnet/golib/par"
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

// BenchmarkConfidence: ComputeScores (ExitStep at every exit, no temperature)
// for K = 4, N = 10,000, C = 100, seed 1, one thread, per measure.
func BenchmarkConfidence(b *testing.B) {
	saved := par.Threads()
	defer par.SetThreads(saved)
	par.SetThreads(1)
	const K, n, c = 4, 10000, 100
	rng := rand.New(rand.NewPCG(1, 1))
	l := randLogits(rng, K, n, c, false)
	for _, m := range []Measure{MaxSoftmax, NegEntropy, Margin} {
		b.Run(fmt.Sprintf("%v/K=%d/N=%d/C=%d", m, K, n, c), func(b *testing.B) {
			for b.Loop() {
				if _, err := ComputeScores(l, m, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(K*n*c), "ns/elem")
		})
	}
}

// BenchmarkExitStep: one ExitStep call (max softmax, T = 1.5) on runtime-sized
// batches, seed 1, one thread.
func BenchmarkExitStep(b *testing.B) {
	saved := par.Threads()
	defer par.SetThreads(saved)
	par.SetThreads(1)
	for _, sz := range []struct{ rows, c int }{{1, 10}, {64, 10}, {64, 100}, {256, 1000}} {
		rng := rand.New(rand.NewPCG(1, 1))
		l := randLogits(rng, 1, sz.rows, sz.c, false)[0]
		conf, pred, ex := make([]float32, sz.rows), make([]int32, sz.rows), make([]bool, sz.rows)
		b.Run(fmt.Sprintf("rows=%d/C=%d", sz.rows, sz.c), func(b *testing.B) {
			for b.Loop() {
				if err := ExitStep(0, 4, l.Data, sz.rows, sz.c, MaxSoftmax, 0.5, 1.5, nil, nil, conf, pred, ex); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(sz.rows*sz.c), "ns/elem")
		})
	}
}
