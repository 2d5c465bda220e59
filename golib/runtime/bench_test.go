package runtime

import (
	"fmt"
	"syscall"
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

// BenchmarkConvKernels runs convolution shapes (the small CNN's, ResNet-18's
// and MobileNet-v2's pointwise layers at 32×32 input) through the direct
// kernel and through im2col + GEMM: the evidence for newDirectConv's choice.
// GFLOP/cpu-s counts 2 flops per multiply-add over process CPU time.
func BenchmarkConvKernels(b *testing.B) {
	defer par.SetThreads(par.Threads())
	par.SetThreads(1)
	shapes := []struct {
		name                   string
		cin, hw, cout, k, s, p int
		pool                   bool
	}{
		{"cnn1_1x28-32", 1, 28, 32, 3, 1, 1, true},
		{"cnn2_32x14-64", 32, 14, 64, 3, 1, 1, true},
		{"cnn3_64x7-128", 64, 7, 128, 3, 1, 1, true},
		{"r18_64x32-64", 64, 32, 64, 3, 1, 1, false},
		{"r18_128x16-128", 128, 16, 128, 3, 1, 1, false},
		{"r18_256x8-256", 256, 8, 256, 3, 1, 1, false},
		{"r18_512x4-512", 512, 4, 512, 3, 1, 1, false},
		{"r18_64x32-128_s2", 64, 32, 128, 3, 2, 1, false},
		{"pw_32x16-96", 32, 16, 96, 1, 1, 0, false},
		{"pw_320x4-1280", 320, 4, 1280, 1, 1, 0, false},
	}
	for _, sh := range shapes {
		ins := directCase(9, sh.cin, sh.hw, sh.hw, sh.cout, sh.k, sh.k, sh.s, sh.s, sh.p, sh.p, 1, 1, 1, actReLU, sh.pool, true)
		c := newDirectConv(ins)
		for _, rows := range []int{1, 64} {
			x := randInput(1, rows, ins.inS.size())
			out := make([]float32, rows*ins.outS.size())
			flops := 2 * float64(ins.macsOf()) * float64(rows)
			for _, kern := range []string{"direct", "im2col"} {
				if kern == "direct" && c == nil {
					continue
				}
				b.Run(fmt.Sprintf("%s/batch=%d/%s", sh.name, rows, kern), func(b *testing.B) {
					ws := &workspace{}
					cpu0 := cpuSeconds()
					for i := 0; i < b.N; i++ {
						if kern == "direct" {
							runDirectConv(ws, c, x, out, rows)
						} else {
							conv(ws, ins, x, out, rows)
						}
					}
					b.ReportMetric(flops*float64(b.N)/(cpuSeconds()-cpu0)/1e9, "GFLOP/cpu-s")
				})
			}
		}
	}
}

// macsOf is the instruction's multiply-adds per sample (conv2d).
func (ins *instr) macsOf() int64 {
	return int64(ins.convS.C) * int64(ins.convS.H*ins.convS.W) * int64(ins.colRows)
}

// cpuSeconds is this process's user+system CPU time (a shared machine's
// waiting time does not count).
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
