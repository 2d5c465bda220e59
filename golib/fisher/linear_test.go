package fisher

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/exitnet/exitnet/golib/xerr"
)

// The fused square/max/finiteness kernel and the float32→float64 add against
// plain float64 loops, on ragged lengths, with NaN/±Inf placed in the vector
// body and in the tail (also run under -tags purego, where both are pure Go).
func TestLinearKernelsRagged(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, n := range []int{0, 1, 7, 15, 16, 17, 31, 32, 33, 100, 1027} {
		for _, w := range []float32{1, 0.375, 0} {
			src := randSlice(rng, n)
			dst := make([]float32, n)
			m, bad := sqScaleMax(dst, src, w)
			var want float32
			for i, v := range src {
				s := w * (v * v)
				if dst[i] != s {
					t.Fatalf("n=%d w=%v: dst[%d] = %v, want %v", n, w, i, dst[i], s)
				}
				want = max(want, s)
			}
			if m != want || bad {
				t.Fatalf("n=%d w=%v: max %v bad %v, want %v false", n, w, m, bad, want)
			}
			for _, pos := range []int{0, n / 2, n - 1} {
				for _, v := range []float32{nan, inf, -inf, 3e19} { // 3e19² overflows float32
					if n == 0 {
						continue
					}
					s := append([]float32(nil), src...)
					s[pos] = v
					_, bad := sqScaleMax(dst, s, w)
					wantBad := !(w*(v*v) < inf)
					if bad != wantBad {
						t.Fatalf("n=%d w=%v: %v at %d: bad = %v, want %v", n, w, v, pos, bad, wantBad)
					}
				}
			}
			acc := make([]float64, n)
			ref := make([]float64, n)
			for i := range acc {
				acc[i] = rng.Float64()
				ref[i] = acc[i] + float64(src[i])
			}
			addF32(acc, src)
			closeRel(t, fmt.Sprintf("add n=%d", n), acc, ref, 0, 1)
		}
	}
}

// linearRef is the per-sample definition in float64: Σ_n w_n (g_n a_nᵀ)² and Σ_n w_n g_n².
func linearRef(A, G, w []float32, n, in, out int) []float64 {
	want := make([]float64, out*in+out)
	for s := 0; s < n; s++ {
		ws := 1.0
		if w != nil {
			ws = float64(w[s])
		}
		for o := 0; o < out; o++ {
			g := float64(G[s*out+o])
			for i := 0; i < in; i++ {
				d := g * float64(A[s*in+i])
				want[o*in+i] += ws * d * d
			}
			want[out*in+o] += ws * g * g
		}
	}
	return want
}

// Ragged shapes through one accumulator in growing and shrinking order (the
// scratch is reused), each against the float64 per-sample loops.
func TestUpdateLinearRaggedScratchReuse(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	for _, tc := range []struct{ n, in, out int }{{3, 17, 5}, {40, 129, 33}, {2, 1, 1}, {17, 15, 16}, {9, 31, 2}} {
		l := mustLayout(t, Param{"w", []int{tc.out, tc.in}}, Param{"b", []int{tc.out}})
		a := mustAcc(t, l, LabelExact)
		want := make([]float64, tc.out*tc.in+tc.out)
		for rep := 0; rep < 2; rep++ {
			A, G := randSlice(rng, tc.n*tc.in), randSlice(rng, tc.n*tc.out)
			var w []float32
			if rep == 1 {
				w = make([]float32, tc.n)
				for i := range w {
					w[i] = rng.Float32()
				}
			}
			if err := a.UpdateLinear("w", "b", A, G, tc.n, tc.in, tc.out, w); err != nil {
				t.Fatal(err)
			}
			for i, v := range linearRef(A, G, w, tc.n, tc.in, tc.out) {
				want[i] += v
			}
		}
		closeRel(t, fmt.Sprintf("%+v", tc), a.Sums(), want, 2e-5, 1e-3)
	}
}

// Non-finite values anywhere in A or G (vector body or tail), squares that
// overflow float32, and a GEMM whose sums overflow while every square is finite:
// each is an INVALID_ARGUMENT naming the argument, and nothing is added.
func TestUpdateLinearNonFinite(t *testing.T) {
	const n, in, out = 5, 37, 19
	rng := rand.New(rand.NewPCG(51, 52))
	l := mustLayout(t, Param{"w", []int{out, in}}, Param{"b", []int{out}})
	a := mustAcc(t, l, LabelEmpirical)
	A0, G0 := randSlice(rng, n*in), randSlice(rng, n*out)
	if err := a.UpdateLinear("w", "b", A0, G0, n, in, out, nil); err != nil {
		t.Fatal(err)
	}
	before := append([]float64(nil), a.Sums()...)
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	type bad struct {
		which string
		pos   int
		v     float32
		want  string
	}
	var cases []bad
	for _, pos := range []int{0, 20, in - 1, n*in - 1} {
		cases = append(cases, bad{"A", pos, nan, "inputs: non-finite"}, bad{"A", pos, -inf, "inputs: non-finite"},
			bad{"A", pos, 2e19, "inputs: squared inputs"})
	}
	for _, pos := range []int{0, 17, out, n*out - 1} {
		cases = append(cases, bad{"G", pos, inf, "grad_outputs: non-finite"}, bad{"G", pos, nan, "grad_outputs: non-finite"},
			bad{"G", pos, 2e19, "overflow"})
	}
	for _, c := range cases {
		A, G := append([]float32(nil), A0...), append([]float32(nil), G0...)
		if c.which == "A" {
			A[c.pos] = c.v
		} else {
			G[c.pos] = c.v
		}
		wantCode(t, a.UpdateLinear("w", "b", A, G, n, in, out, nil), xerr.StatusInvalidArgument, c.want)
	}
	// finite squares (9e18 each), products 8.1e37 < MaxFloat32, sums over 5 samples 4e38 > MaxFloat32
	A, G := make([]float32, n*in), make([]float32, n*out)
	for i := range A {
		A[i] = 3e9
	}
	for i := range G {
		G[i] = 3e9
	}
	wantCode(t, a.UpdateLinear("w", "b", A, G, n, in, out, nil), xerr.StatusInvalidArgument, "overflow")
	// a weight of 0 on a row holding Inf is still an error (0·Inf), not a silent 0
	G = append([]float32(nil), G0...)
	G[out+3] = inf
	w := []float32{1, 0, 1, 1, 1}
	wantCode(t, a.UpdateLinear("w", "b", A0, G, n, in, out, w), xerr.StatusInvalidArgument, "grad_outputs")
	for i, v := range a.Sums() {
		if v != before[i] {
			t.Fatalf("a failed update changed sums[%d]: %v -> %v", i, before[i], v)
		}
	}
	// the accumulator still works afterwards
	if err := a.UpdateLinear("w", "b", A0, G0, n, in, out, nil); err != nil {
		t.Fatal(err)
	}
}

// The overflow bound is conservative: it never claims safety when the float32
// sum could overflow.
func TestGemmCannotOverflow(t *testing.T) {
	if !gemmCannotOverflow(256, 1e4, 1e4) {
		t.Fatal("small values flagged")
	}
	if gemmCannotOverflow(4, 1e19, 1e19) || gemmCannotOverflow(2, math.MaxFloat32, 1) || gemmCannotOverflow(1<<22, 1, 1) {
		t.Fatal("overflowing bound accepted")
	}
}
