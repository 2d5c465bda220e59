package fisher

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/exitnet/exitnet/golib/par"
	"github.com/exitnet/exitnet/golib/xerr"
)

// Expected values: explicit per-sample gradients g_n a_nᵀ squared in float64.
func TestUpdateLinear(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, tc := range []struct{ n, in, out int }{{1, 1, 1}, {5, 3, 4}, {64, 33, 17}, {7, 130, 65}} {
		l := mustLayout(t, Param{"fc.weight", []int{tc.out, tc.in}}, Param{"fc.bias", []int{tc.out}})
		a := mustAcc(t, l, LabelExact)
		A := randSlice(rng, tc.n*tc.in)
		G := randSlice(rng, tc.n*tc.out)
		w := make([]float32, tc.n)
		for i := range w {
			w[i] = rng.Float32()
		}
		if err := a.UpdateLinear("fc.weight", "fc.bias", A, G, tc.n, tc.in, tc.out, w); err != nil {
			t.Fatal(err)
		}
		want := make([]float64, tc.out*tc.in+tc.out)
		for n := 0; n < tc.n; n++ {
			for o := 0; o < tc.out; o++ {
				g := float64(G[n*tc.out+o])
				for i := 0; i < tc.in; i++ {
					d := g * float64(A[n*tc.in+i])
					want[o*tc.in+i] += float64(w[n]) * d * d
				}
				want[tc.out*tc.in+o] += float64(w[n]) * g * g
			}
		}
		// tol: float32 GEMM over n terms
		closeRel(t, fmt.Sprintf("%+v", tc), a.Sums(), want, 2e-5, 1e-3)
	}
}

func TestUpdateLinearErrors(t *testing.T) {
	l := mustLayout(t, Param{"w", []int{2, 3}}, Param{"b", []int{2}}, Param{"v", []int{6}})
	a := mustAcc(t, l, LabelEmpirical)
	A := []float32{1, 2, 3}
	G := []float32{1, 2}
	wantCode(t, a.UpdateLinear("w", "", []float32{1, 2}, []float32{1, 2, 3}, 1, 2, 3, nil), xerr.StatusInvalidArgument, "weight")
	wantCode(t, a.UpdateLinear("w", "x", A, G, 1, 3, 2, nil), xerr.StatusNotFound, "\"x\"")
	wantCode(t, a.UpdateLinear("w", "v", A, G, 1, 3, 2, nil), xerr.StatusInvalidArgument, "bias")
	wantCode(t, a.UpdateLinear("w", "b", A, G, 2, 3, 2, nil), xerr.StatusInvalidArgument, "inputs")
	wantCode(t, a.UpdateLinear("w", "b", A, []float32{float32(math.NaN()), 1}, 1, 3, 2, nil), xerr.StatusInvalidArgument, "\"w\"")
	wantCode(t, a.UpdateLinear("w", "b", []float32{1, float32(math.Inf(-1)), 0}, G, 1, 3, 2, nil), xerr.StatusInvalidArgument, "inputs")
	for _, v := range a.Sums() {
		if v != 0 {
			t.Fatal("a failed update changed the sums")
		}
	}
	b := mustAcc(t, l, LabelBatched)
	wantCode(t, b.UpdateLinear("w", "b", A, G, 1, 3, 2, nil), xerr.StatusInvalidState, "batched")
}

// convRef computes per-sample conv2d weight/bias gradients by the definition
// (direct loops, float64) and returns Σ_n w_n grad_n².
func convRef(x []float32, xs [4]int, g []float32, gs [4]int, geo Conv2d, w []float32) []float64 {
	n, cin, h, wd := xs[0], xs[1], xs[2], xs[3]
	cout, ho, wo := gs[1], gs[2], gs[3]
	cig, cog := cin/geo.Groups, cout/geo.Groups
	kh, kw := geo.Kernel[0], geo.Kernel[1]
	out := make([]float64, cout*cig*kh*kw+cout)
	gw := make([]float64, cout*cig*kh*kw)
	for s := 0; s < n; s++ {
		clear(gw)
		var gb = make([]float64, cout)
		for o := 0; o < cout; o++ {
			grp := o / cog
			for oh := 0; oh < ho; oh++ {
				for ow := 0; ow < wo; ow++ {
					gv := float64(g[((s*cout+o)*ho+oh)*wo+ow])
					gb[o] += gv
					for c := 0; c < cig; c++ {
						for i := 0; i < kh; i++ {
							for j := 0; j < kw; j++ {
								ih := oh*geo.Stride[0] - geo.Padding[0] + i*geo.Dilation[0]
								iw := ow*geo.Stride[1] - geo.Padding[1] + j*geo.Dilation[1]
								if ih < 0 || ih >= h || iw < 0 || iw >= wd {
									continue
								}
								xv := float64(x[((s*cin+grp*cig+c)*h+ih)*wd+iw])
								gw[((o*cig+c)*kh+i)*kw+j] += gv * xv
							}
						}
					}
				}
			}
		}
		ws := 1.0
		if w != nil {
			ws = float64(w[s])
		}
		for i, v := range gw {
			out[i] += ws * v * v
		}
		for o, v := range gb {
			out[len(gw)+o] += ws * v * v
		}
	}
	return out
}

func TestUpdateConv2d(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	cases := []struct {
		name               string
		n, cin, cout, h, w int
		geo                Conv2d
	}{
		{"plain", 3, 2, 4, 6, 5, Conv2d{[2]int{1, 1}, [2]int{0, 0}, [2]int{1, 1}, 1, [2]int{3, 3}}},
		{"stride_pad", 4, 3, 5, 7, 8, Conv2d{[2]int{2, 1}, [2]int{1, 2}, [2]int{1, 1}, 1, [2]int{3, 2}}},
		{"dilation", 2, 2, 3, 9, 9, Conv2d{[2]int{1, 2}, [2]int{2, 1}, [2]int{2, 3}, 1, [2]int{3, 3}}},
		{"groups", 3, 4, 6, 6, 6, Conv2d{[2]int{1, 1}, [2]int{1, 1}, [2]int{1, 1}, 2, [2]int{3, 3}}},
		{"depthwise", 5, 4, 8, 5, 7, Conv2d{[2]int{2, 2}, [2]int{1, 1}, [2]int{1, 1}, 4, [2]int{3, 3}}},
	}
	for _, tc := range cases {
		for _, th := range []int{1, 2} {
			par.SetThreads(th)
			ho, wo := tc.geo.outSize(0, tc.h), tc.geo.outSize(1, tc.w)
			xs := [4]int{tc.n, tc.cin, tc.h, tc.w}
			gs := [4]int{tc.n, tc.cout, ho, wo}
			x := randSlice(rng, tc.n*tc.cin*tc.h*tc.w)
			g := randSlice(rng, tc.n*tc.cout*ho*wo)
			wts := make([]float32, tc.n)
			for i := range wts {
				wts[i] = rng.Float32() + 0.5
			}
			l := mustLayout(t, Param{"c.weight", []int{tc.cout, tc.cin / tc.geo.Groups, tc.geo.Kernel[0], tc.geo.Kernel[1]}}, Param{"c.bias", []int{tc.cout}})
			a := mustAcc(t, l, LabelSampled)
			if err := a.UpdateConv2d("c.weight", "c.bias", x, xs, g, gs, tc.geo, wts); err != nil {
				t.Fatal(tc.name, err)
			}
			closeRel(t, tc.name, a.Sums(), convRef(x, xs, g, gs, tc.geo, wts), 1e-5, 1e-3)
		}
	}
	par.SetThreads(2)
}

func TestUpdateConv2dErrors(t *testing.T) {
	geo := Conv2d{[2]int{1, 1}, [2]int{0, 0}, [2]int{1, 1}, 1, [2]int{3, 3}}
	l := mustLayout(t, Param{"w", []int{4, 2, 3, 3}}, Param{"b", []int{4}})
	a := mustAcc(t, l, LabelEmpirical)
	x := make([]float32, 1*2*5*5)
	g := make([]float32, 1*4*3*3)
	xs, gs := [4]int{1, 2, 5, 5}, [4]int{1, 4, 3, 3}
	if err := a.UpdateConv2d("w", "b", x, xs, g, gs, geo, nil); err != nil {
		t.Fatal(err)
	}
	wantCode(t, a.UpdateConv2d("w", "b", x, xs, g, [4]int{1, 4, 2, 2}, geo, nil), xerr.StatusInvalidArgument, "grad_outputs")
	bad := geo
	bad.Stride = [2]int{0, 1}
	wantCode(t, a.UpdateConv2d("w", "b", x, xs, g, gs, bad, nil), xerr.StatusInvalidArgument, "stride")
	bad = geo
	bad.Groups = 3
	wantCode(t, a.UpdateConv2d("w", "b", x, xs, g, gs, bad, nil), xerr.StatusInvalidArgument, "groups")
	bad = geo
	bad.Kernel = [2]int{2, 2}
	wantCode(t, a.UpdateConv2d("w", "b", x, xs, make([]float32, 64), [4]int{1, 4, 4, 4}, bad, nil), xerr.StatusInvalidArgument, "weight")
	wantCode(t, a.UpdateConv2d("w", "b", x, [4]int{2, 2, 5, 5}, g, gs, geo, nil), xerr.StatusInvalidArgument, "grad_outputs")
	x[7] = float32(math.NaN())
	wantCode(t, a.UpdateConv2d("w", "b", x, xs, g, gs, geo, nil), xerr.StatusInvalidArgument, "\"w\"")
}

func TestUpdateSquaredAndBatched(t *testing.T) {
	l := mustLayout(t, Param{"bn.weight", []int{3}})
	a := mustAcc(t, l, LabelArgmax)
	if err := a.UpdateSquared("bn.weight", []float32{1, 2, 3}, 4); err != nil {
		t.Fatal(err)
	}
	closeRel(t, "per_sample", a.Sums(), []float64{1, 2, 3}, 0, 1)
	wantCode(t, a.UpdateSquared("bn.weight", []float32{1, -2, 3}, 4), xerr.StatusInvalidArgument, "bn.weight")
	wantCode(t, a.UpdateSquared("bn.weight", []float32{1, 2}, 4), xerr.StatusInvalidArgument, "param")
	wantCode(t, a.UpdateSquared("bn.weight", []float32{1, 2, 3}, 0), xerr.StatusInvalidArgument, "n")

	// batched: two minibatches of 4 and 2 samples with mean gradients m1, m2:
	// F = (4 m1² + 2 m2²) / 6.
	b := mustAcc(t, l, LabelBatched)
	if b.Granularity() != GranularityBatched {
		t.Fatal(b.Granularity())
	}
	m1 := []float32{0.5, 1, 2}
	m2 := []float32{1, 0, 4}
	sq := func(m []float32) []float32 {
		o := make([]float32, len(m))
		for i, v := range m {
			o[i] = v * v
		}
		return o
	}
	_ = b.UpdateSquared("bn.weight", sq(m1), 4)
	_ = b.AddSamples(4)
	_ = b.UpdateSquared("bn.weight", sq(m2), 2)
	_ = b.AddSamples(2)
	f := make([]float32, 3)
	if err := b.Compute(f); err != nil {
		t.Fatal(err)
	}
	for i := range f {
		want := (4*float64(m1[i]*m1[i]) + 2*float64(m2[i]*m2[i])) / 6
		if math.Abs(float64(f[i])-want) > 1e-6 {
			t.Fatalf("batched F[%d] = %v want %v", i, f[i], want)
		}
	}
	wantCode(t, b.UpdateRows([]float32{1, 2, 3}, 1, 3, nil), xerr.StatusInvalidState, "batched")
}

func TestComputeMergeReset(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	l := mustLayout(t, Param{"a", []int{3, 4}}, Param{"b", []int{5}})
	p := l.Size()
	rows := randSlice(rng, 10*p)
	one := mustAcc(t, l, LabelExact)
	_ = one.UpdateRows(rows, 10, p, nil)
	_ = one.AddSamples(10)
	x := mustAcc(t, l, LabelExact)
	y := mustAcc(t, l, LabelExact)
	_ = x.UpdateRows(rows[:4*p], 4, p, nil)
	_ = x.AddSamples(4)
	_ = y.UpdateRows(rows[4*p:], 6, p, nil)
	_ = y.AddSamples(6)
	if err := x.Merge(y); err != nil {
		t.Fatal(err)
	}
	if x.NumSamples() != 10 {
		t.Fatal(x.NumSamples())
	}
	closeRel(t, "merge", x.Sums(), one.Sums(), 1e-14, 1e-30)
	f := make([]float32, p)
	if err := x.Compute(f); err != nil {
		t.Fatal(err)
	}
	for i := range f {
		if math.Abs(float64(f[i])-one.Sums()[i]/10) > 1e-6*one.Sums()[i] {
			t.Fatal("compute")
		}
	}
	wantCode(t, x.Compute(make([]float32, p-1)), xerr.StatusInvalidArgument, "dst")
	other := mustAcc(t, l, LabelSampled)
	wantCode(t, x.Merge(other), xerr.StatusInvalidArgument, "label mode")
	l2 := mustLayout(t, Param{"a", []int{4, 3}}, Param{"b", []int{5}})
	wantCode(t, x.Merge(mustAcc(t, l2, LabelExact)), xerr.StatusInvalidArgument, "layout")
	x.Reset()
	wantCode(t, x.Compute(f), xerr.StatusInvalidState, "no samples")
	wantCode(t, x.AddSamples(-1), xerr.StatusInvalidArgument, "n")
	_, err := New(l, "fancy")
	wantCode(t, err, xerr.StatusInvalidArgument, "label_mode")
	_, err = NewLayout([]Param{{"a", []int{1}}, {"a", []int{2}}})
	wantCode(t, err, xerr.StatusInvalidArgument, "twice")
	wantCode(t, x.SetState(make([]float64, p), -1), xerr.StatusInvalidArgument, "count")
	s := make([]float64, p)
	s[13] = math.NaN()
	wantCode(t, x.SetState(s, 3), xerr.StatusInvalidArgument, "\"b\"")
}

func BenchmarkUpdateLinear(b *testing.B) {
	// MLP 784-512-512-10 layer sizes at batch 256 (pure-Go gonum GEMM here;
	// the shared library routes blas32 to OpenBLAS).
	for _, sz := range []struct{ n, in, out int }{{256, 784, 512}, {256, 512, 512}, {256, 512, 10}} {
		b.Run(fmt.Sprintf("N%d_%dx%d", sz.n, sz.in, sz.out), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			l := mustLayout(b, Param{"w", []int{sz.out, sz.in}}, Param{"b", []int{sz.out}})
			a := mustAcc(b, l, LabelEmpirical)
			A, G := randSlice(rng, sz.n*sz.in), randSlice(rng, sz.n*sz.out)
			for i := 0; i < b.N; i++ {
				_ = a.UpdateLinear("w", "b", A, G, sz.n, sz.in, sz.out, nil)
			}
		})
	}
}

func BenchmarkUpdateConv2d(b *testing.B) {
	// The small CNN's layers (3×3, padding 1, 28×28) at batch 16.
	for _, sz := range []struct{ cin, cout int }{{1, 32}, {32, 64}, {64, 128}} {
		b.Run(fmt.Sprintf("%dto%d", sz.cin, sz.cout), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			const n = 16
			geo := Conv2d{[2]int{1, 1}, [2]int{1, 1}, [2]int{1, 1}, 1, [2]int{3, 3}}
			l := mustLayout(b, Param{"w", []int{sz.cout, sz.cin, 3, 3}}, Param{"b", []int{sz.cout}})
			a := mustAcc(b, l, LabelEmpirical)
			x, g := randSlice(rng, n*sz.cin*784), randSlice(rng, n*sz.cout*784)
			for i := 0; i < b.N; i++ {
				_ = a.UpdateConv2d("w", "b", x, [4]int{n, sz.cin, 28, 28}, g, [4]int{n, sz.cout, 28, 28}, geo, nil)
			}
		})
	}
}
