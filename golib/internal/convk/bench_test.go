package convk

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"

	"github.com/exitnet/exitnet/golib/par"
)

// smallCNN is bench/bench_runtime.py's small_cnn_28 convolution stack
// (each conv + ReLU + 2×2 max-pool fused).
var smallCNN = []Shape{
	{Cin: 1, H: 28, W: 28, Cout: 32, KH: 3, KW: 3, SH: 1, SW: 1, PH: 1, PW: 1, DH: 1, DW: 1, Groups: 1, Act: ActReLU, Pool: true},
	{Cin: 32, H: 14, W: 14, Cout: 64, KH: 3, KW: 3, SH: 1, SW: 1, PH: 1, PW: 1, DH: 1, DW: 1, Groups: 1, Act: ActReLU, Pool: true},
	{Cin: 64, H: 7, W: 7, Cout: 128, KH: 3, KW: 3, SH: 1, SW: 1, PH: 1, PW: 1, DH: 1, DW: 1, Groups: 1, Act: ActReLU, Pool: true},
}

// BenchmarkSmallCNNConv reports GFLOP/s (2 flops per multiply-add) per layer
// and for the three layers chained, 1 and 2 threads, batch 1 and 256.
func BenchmarkSmallCNNConv(b *testing.B) {
	defer par.SetThreads(par.Threads())
	r := rand.New(rand.NewPCG(5, 6))
	convs := make([]*Conv, len(smallCNN))
	for i, s := range smallCNN {
		c, err := NewConv(s, randSlice(r, s.Cout*s.Cin*s.KH*s.KW), randSlice(r, s.Cout))
		if err != nil {
			b.Fatal(err)
		}
		convs[i] = c
	}
	for _, threads := range []int{1, 2} {
		for _, rows := range []int{1, 256} {
			for li := -1; li < len(convs); li++ {
				layers := convs
				name := "all"
				if li >= 0 {
					layers = convs[li : li+1]
					name = fmt.Sprintf("conv%d", li+1)
				}
				var macs int64
				bufs := [][]float32{randSlice(r, rows*layers[0].InSize())}
				scratch := 0
				for _, c := range layers {
					macs += c.MACs()
					bufs = append(bufs, make([]float32, rows*c.OutSize()))
					scratch = max(scratch, c.ScratchSize(rows))
				}
				sc := make([]float32, scratch)
				b.Run(fmt.Sprintf("%s/threads=%d/batch=%d", name, threads, rows), func(b *testing.B) {
					par.SetThreads(threads)
					cpu0 := cpuSeconds()
					for i := 0; i < b.N; i++ {
						for j, c := range layers {
							c.Forward(bufs[j], bufs[j+1], sc, rows)
						}
					}
					cpu := (cpuSeconds() - cpu0) / float64(b.N)
					sec := b.Elapsed().Seconds() / float64(b.N)
					b.ReportMetric(2*float64(macs)*float64(rows)/sec/1e9, "GFLOP/s")
					b.ReportMetric(2*float64(macs)*float64(rows)/cpu/1e9, "GFLOP/cpu-s")
					b.ReportMetric(cpu/float64(rows)*1e9, "cpu-ns/sample")
				})
			}
		}
	}
}

// cpuSeconds is this process's user+system CPU time: on a shared machine it
// counts only the time the benchmark really ran (wall time includes waiting
// for a core).
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// BenchmarkPeakFMA is the ceiling: 12 independent FMA chains, no loads.
func BenchmarkPeakFMA(b *testing.B) {
	if !useAsm {
		b.Skip("no AVX2+FMA assembly in this build")
	}
	const rounds = 1 << 20
	cpu0 := cpuSeconds()
	for i := 0; i < b.N; i++ {
		fmaPeak(rounds)
	}
	cpu := cpuSeconds() - cpu0
	b.ReportMetric(192*rounds*float64(b.N)/cpu/1e9, "GFLOP/cpu-s")
}

// BenchmarkMLP is bench_runtime.py's MLP 784-512-512-10 (ReLU) on the dense kernel.
func BenchmarkMLP(b *testing.B) {
	defer par.SetThreads(par.Threads())
	r := rand.New(rand.NewPCG(9, 10))
	dims := []int{784, 512, 512, 10}
	var layers []*Dense
	var macs int64
	for i := 0; i+1 < len(dims); i++ {
		act := ActReLU
		if i+2 == len(dims) {
			act = ActNone
		}
		d, err := NewDense(dims[i], dims[i+1], randSlice(r, dims[i]*dims[i+1]), randSlice(r, dims[i+1]), act)
		if err != nil {
			b.Fatal(err)
		}
		layers = append(layers, d)
		macs += int64(dims[i] * dims[i+1])
	}
	for _, threads := range []int{1, 2} {
		for _, rows := range []int{1, 64, 256, 1024} {
			bufs := [][]float32{randSlice(r, rows*784)}
			for _, d := range layers {
				bufs = append(bufs, make([]float32, rows*d.Out))
			}
			b.Run(fmt.Sprintf("threads=%d/batch=%d", threads, rows), func(b *testing.B) {
				par.SetThreads(threads)
				cpu0 := cpuSeconds()
				for i := 0; i < b.N; i++ {
					for j, d := range layers {
						d.Forward(bufs[j], bufs[j+1], rows)
					}
				}
				cpu := (cpuSeconds() - cpu0) / float64(b.N)
				b.ReportMetric(2*float64(macs)*float64(rows)/cpu/1e9, "GFLOP/cpu-s")
				b.ReportMetric(cpu/float64(rows)*1e9, "cpu-ns/sample")
			})
		}
	}
}
