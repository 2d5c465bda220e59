package runtime

import (
	"fmt"
	"testing"

	"github.com/exitnet/exitnet/golib/par"
)

// benchModels are the bench/bench_runtime.py models: the small CNN (conv
// 1→32→64→128 3×3 pad 1, ReLU, 2×2 max-pool each; Linear) and the MLP
// 784-512-512-10, as one-exit models on 1×28×28 inputs (fixed seeds).
func benchModels(tb testing.TB) map[string]*Model {
	out := map[string]*Model{}
	b := newBuilder(11)
	pool := OpSpec{Op: "maxpool2d", Kernel: []int{2, 2}, Stride: []int{2, 2}, Padding: []int{0, 0}}
	cnn := &GraphV1{FormatVersion: 1, InputShape: []int{1, 28, 28}, NumClasses: 10,
		Stages: [][]OpSpec{{
			b.conv("c1", 1, 32, 3, 1, 1, 1, 1, true), {Op: "relu"}, pool,
			b.conv("c2", 32, 64, 3, 1, 1, 1, 1, true), {Op: "relu"}, pool,
			b.conv("c3", 64, 128, 3, 1, 1, 1, 1, true), {Op: "relu"}, pool,
		}},
		Heads: [][]OpSpec{{{Op: "flatten"}, b.linear("l", 128*9, 10)}}}
	m, err := Decode(b.encode(cnn))
	if err != nil {
		tb.Fatal(err)
	}
	out["cnn"] = m
	b = newBuilder(12)
	mlp := &GraphV1{FormatVersion: 1, InputShape: []int{1, 28, 28}, NumClasses: 10,
		Stages: [][]OpSpec{{{Op: "flatten"}, b.linear("l1", 784, 512), {Op: "relu"}, b.linear("l2", 512, 512), {Op: "relu"}}},
		Heads:  [][]OpSpec{{b.linear("l3", 512, 10)}}}
	if m, err = Decode(b.encode(mlp)); err != nil {
		tb.Fatal(err)
	}
	out["mlp"] = m
	return out
}

func BenchmarkPredict(b *testing.B) {
	defer par.SetThreads(par.Threads())
	for _, name := range []string{"cnn", "mlp"} {
		m := benchModels(b)[name]
		for _, threads := range []int{1, 2} {
			for _, n := range []int{1, 256} {
				b.Run(fmt.Sprintf("%s/threads=%d/batch=%d", name, threads, n), func(b *testing.B) {
					par.SetThreads(threads)
					x := randInput(1, n, 784)
					var res Result
					for i := 0; i < b.N; i++ {
						if err := m.Predict(&res, x, n, Options{Temperature: 1}); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/sample")
				})
			}
		}
	}
}
