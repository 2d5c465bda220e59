package fisher

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/exitnet/exitnet/golib/par"
	"github.com/exitnet/exitnet/golib/xerr"
)

// Expected values: a float64 double loop over the same float32 inputs.
func rowsRef(rows []float32, n, p int, w []float32) []float64 {
	out := make([]float64, p)
	for r := 0; r < n; r++ {
		wr := 1.0
		if w != nil {
			wr = float64(w[r])
		}
		for j := 0; j < p; j++ {
			g := float64(rows[r*p+j])
			out[j] += wr * g * g
		}
	}
	return out
}

func TestSqAcc4KernelRagged(t *testing.T) {
	// The assembly kernel against the pure-Go one on ragged lengths.
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 3, 4, 5, 15, 16, 17, 31, 33, 64, 100, 1027} {
		r := [4][]float32{randSlice(rng, n), randSlice(rng, n), randSlice(rng, n), randSlice(rng, n)}
		w := [4]float64{0.5, 1, 2, 0}
		init := make([]float64, n)
		for i := range init {
			init[i] = rng.Float64()
		}
		a := append([]float64(nil), init...)
		b := append([]float64(nil), init...)
		sqAcc4(a, r[0], r[1], r[2], r[3], &w)
		sqAcc4Generic(b, r[0], r[1], r[2], r[3], &w)
		closeRel(t, fmt.Sprintf("n=%d", n), a, b, 1e-14, 1)
	}
}

func TestSqAcc4PfKernelRagged(t *testing.T) {
	// The prefetching kernels (weighted, and all-ones weights) against the pure-Go one.
	rng := rand.New(rand.NewPCG(21, 22))
	for _, n := range []int{1, 3, 4, 5, 16, 17, 35, 64, 1027} {
		for _, w := range [][4]float64{{1, 1, 1, 1}, {0.25, 1, 3, 1}} {
			r := [4][]float32{randSlice(rng, 2*n), randSlice(rng, n), randSlice(rng, n), randSlice(rng, n)}
			init := make([]float64, n)
			for i := range init {
				init[i] = rng.Float64()
			}
			a := append([]float64(nil), init...)
			b := append([]float64(nil), init...)
			sqAcc4Pf(a, r[0][:n], r[1], r[2], r[3], &w, 4*n)
			sqAcc4Generic(b, r[0][:n], r[1], r[2], r[3], &w)
			closeRel(t, fmt.Sprintf("n=%d w=%v", n, w), a, b, 1e-14, 1)
		}
	}
}

func TestUpdateRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct{ n, p int }{{1, 1}, {3, 7}, {5, 2049}, {8, 4096}, {13, 70001}, {2, 0}} {
		l := mustLayout(t, Param{"w", []int{tc.p}})
		for _, weighted := range []bool{false, true} {
			for _, threads := range []int{1, 2} {
				par.SetThreads(threads)
				a := mustAcc(t, l, LabelEmpirical)
				rows := randSlice(rng, tc.n*tc.p)
				var w []float32
				if weighted {
					w = make([]float32, tc.n)
					for i := range w {
						w[i] = rng.Float32()
					}
				}
				if err := a.UpdateRows(rows, tc.n, tc.p, w); err != nil {
					t.Fatal(err)
				}
				// tol: float64 accumulation, rounding only, relative 1e-12
				closeRel(t, fmt.Sprintf("%d×%d w=%v", tc.n, tc.p, weighted), a.Sums(), rowsRef(rows, tc.n, tc.p, w), 1e-12, 1e-30)
			}
		}
	}
	par.SetThreads(2)
}

func TestUpdateRowsParamAndErrors(t *testing.T) {
	l := mustLayout(t, Param{"a", []int{2, 3}}, Param{"b", []int{4}})
	a := mustAcc(t, l, LabelExact)
	rows := []float32{1, 2, 3, 4, -1, -2, -3, -4}
	if err := a.UpdateRowsParam("b", rows, 2, 4, []float32{1, 0.5}); err != nil {
		t.Fatal(err)
	}
	closeRel(t, "b", a.Sums(), []float64{0, 0, 0, 0, 0, 0, 1.5, 6, 13.5, 24}, 1e-15, 1)
	wantCode(t, a.UpdateRowsParam("c", rows, 2, 4, nil), xerr.StatusNotFound, "\"c\"")
	wantCode(t, a.UpdateRowsParam("a", rows, 2, 4, nil), xerr.StatusInvalidArgument, "\"a\"")
	wantCode(t, a.UpdateRows(rows, 2, 4, nil), xerr.StatusInvalidArgument, "10")
	wantCode(t, a.UpdateRowsParam("b", rows, 3, 4, nil), xerr.StatusInvalidArgument, "rows")
	wantCode(t, a.UpdateRowsParam("b", rows, 2, 4, []float32{1}), xerr.StatusInvalidArgument, "weights")
	wantCode(t, a.UpdateRowsParam("b", rows, 2, 4, []float32{1, -1}), xerr.StatusInvalidArgument, "weights")
	bad := append([]float32(nil), rows...)
	bad[5] = float32(math.NaN())
	wantCode(t, a.UpdateRowsParam("b", bad, 2, 4, nil), xerr.StatusInvalidArgument, "\"b\"")
	wantCode(t, a.AddSamples(1), xerr.StatusInvalidState, "Reset")
	a.Reset()
	bad[5] = float32(math.Inf(1))
	wantCode(t, a.UpdateRowsParam("b", bad, 2, 4, []float32{1, 0}), xerr.StatusInvalidArgument, "\"b\"")
}

func TestMillionSamplesPrecision(t *testing.T) {
	// 10⁶ samples against a float64 reference computed from the same inputs.
	const n, p = 1 << 20, 8
	rng := rand.New(rand.NewPCG(5, 6))
	l := mustLayout(t, Param{"x", []int{p}})
	a := mustAcc(t, l, LabelSampled)
	ref := make([]float64, p)
	const batch = 4096
	for b := 0; b < n/batch; b++ {
		rows := make([]float32, batch*p)
		for i := range rows {
			rows[i] = float32(rng.NormFloat64() * (1 + float64(i%p)))
			g := float64(rows[i])
			ref[i%p] += g * g
		}
		if err := a.UpdateRows(rows, batch, p, nil); err != nil {
			t.Fatal(err)
		}
		if err := a.AddSamples(batch); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]float32, p)
	if err := a.Compute(got); err != nil {
		t.Fatal(err)
	}
	for j := range ref {
		want := ref[j] / n
		if d := math.Abs(float64(got[j])-want) / want; d > 1e-7 {
			t.Fatalf("F[%d] = %v, want %v (rel %g)", j, got[j], want, d)
		}
		if d := math.Abs(a.Sums()[j]-ref[j]) / ref[j]; d > 1e-12 {
			t.Fatalf("S[%d] rel error %g", j, d)
		}
	}
}

func BenchmarkUpdateRows(b *testing.B) {
	for _, sz := range []struct{ n, p int }{{256, 1 << 16}, {256, 1 << 20}, {64, 11_000_000}} {
		for _, th := range []int{1, 2} {
			b.Run(fmt.Sprintf("N%d_P%d_t%d", sz.n, sz.p, th), func(b *testing.B) {
				par.SetThreads(th)
				rng := rand.New(rand.NewPCG(1, 1))
				rows := randSlice(rng, sz.n*sz.p)
				l := mustLayout(b, Param{"w", []int{sz.p}})
				a := mustAcc(b, l, LabelEmpirical)
				b.SetBytes(int64(4 * sz.n * sz.p))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					_ = a.UpdateRows(rows, sz.n, sz.p, nil)
				}
			})
		}
	}
}
