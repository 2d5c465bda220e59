package vexp

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// withImpls runs f once per implementation this CPU can run.
func withImpls(t *testing.T, f func(t *testing.T, k Impl)) {
	for _, k := range Impls() {
		t.Run(k.Name, func(t *testing.T) { f(t, k) })
	}
}

// expErrOK checks got = exp(z) (computed at scale 1 as 2^(z·log2 e)) against
// math.Exp in float64: relative error ≤ 4 ulp plus the rounding of u = z·log2 e
// (|z|·1.25e−7: c = log2 e and u each carry a float32 rounding) where exp(z) is a normal float32, absolute error ≤ 1.2e-38
// below that, saturation near 2^127 above z = 88.
func expErrOK(z float64, got float32) bool {
	want := math.Exp(z)
	switch {
	case z > 88:
		return float64(got) >= math.Exp(88) && !math.IsInf(float64(got), 0)
	case want < 1.1754944e-38:
		return math.Abs(float64(got)-want) <= 1.2e-38
	default:
		return math.Abs(float64(got)-want) <= (2.4e-7+math.Abs(z)*1.25e-7)*want
	}
}

func TestExpKernelsVsMathExp(t *testing.T) {
	// Inputs: a dense sweep of [-100, 90], extremes, and values near the clamp
	// and denormal boundaries. Reference: math.Exp in float64 on the same float32 input.
	var zs []float32
	for z := -100.0; z <= 90; z += 0.0137 {
		zs = append(zs, float32(z))
	}
	zs = append(zs, 0, -0, 1e-30, -1e-30, -87.33, -87.34, -87.68, -87.7, -88, -88.1, -103, -104,
		-1e30, float32(math.Inf(-1)), -math.MaxFloat32, 88, 88.5, 1e30, 88.72, 89,
		-math.SmallestNonzeroFloat32, 0.5*math.Ln2, -0.5*math.Ln2)
	withImpls(t, func(t *testing.T, k Impl) {
		// Ragged lengths 0..67 at every offset, so every tail length and alignment is exercised.
		rng := rand.New(rand.NewPCG(1, 2))
		for n := 0; n <= 67; n++ {
			x := make([]float32, n)
			for i := range x {
				x[i] = zs[rng.IntN(len(zs))]
			}
			dst := make([]float32, n+1)
			dst[n] = 42 // sentinel: kernels must not write past len(x)
			s := k.ExpSum(dst[:n], x, 0, 1)
			if dst[n] != 42 {
				t.Fatalf("n=%d: wrote past the end", n)
			}
			var ref float64
			for i, z := range x {
				if !expErrOK(float64(z), dst[i]) {
					t.Fatalf("n=%d i=%d: exp(%g) = %g, want %g", n, i, z, dst[i], math.Exp(float64(z)))
				}
				ref += float64(dst[i])
			}
			if ref < math.MaxFloat32 && math.Abs(float64(s)-ref) > 1e-6*math.Abs(ref)+1e-30 {
				t.Fatalf("n=%d: sum %g, want %g", n, s, ref)
			}
		}
		// The full sweep in one call.
		dst := make([]float32, len(zs))
		k.ExpSum(dst, zs, 0, 1)
		for i, z := range zs {
			if !expErrOK(float64(z), dst[i]) {
				t.Fatalf("exp(%g) = %g, want %g", z, dst[i], math.Exp(float64(z)))
			}
		}
	})
}

func TestExpKernelShiftScale(t *testing.T) {
	// dst = exp((x-m)*scale) and its sum, and scale, against float64 arithmetic.
	withImpls(t, func(t *testing.T, k Impl) {
		rng := rand.New(rand.NewPCG(3, 4))
		for n := 1; n <= 45; n++ {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(rng.NormFloat64() * 5)
			}
			m, bad := k.MaxCheck(x)
			if bad != 0 {
				t.Fatalf("n=%d: finite input flagged bad (%g)", n, bad)
			}
			var wantM float32 = float32(math.Inf(-1))
			for _, v := range x {
				wantM = max(wantM, v)
			}
			if m != wantM {
				t.Fatalf("n=%d: max %g want %g", n, m, wantM)
			}
			const sc = 0.5
			dst := make([]float32, n)
			s := k.ExpSum(dst, x, m, sc)
			var ws float64
			for i := range x {
				// x−m is exact-ish in float32 as in the kernels; the kernels then round
				// u = (x−m)·c with c = sc·log2 e rounded (relative error ≤ |z|·1.25e−7 in exp).
				z := float64(x[i]-m) * sc
				e := math.Exp(z)
				if math.Abs(float64(dst[i])-e) > (2.4e-7+math.Abs(z)*1.25e-7)*e {
					t.Fatalf("n=%d i=%d: %g want %g", n, i, dst[i], e)
				}
				ws += e
			}
			if math.Abs(float64(s)-ws) > 2e-6*ws {
				t.Fatalf("n=%d: sum %g want %g", n, s, ws)
			}
			g := append([]float32(nil), dst...)
			k.Scale(g, 0.25)
			for i := range g {
				if g[i] != 0.25*dst[i] {
					t.Fatalf("scale n=%d i=%d: %g want %g", n, i, g[i], 0.25*dst[i])
				}
			}
		}
	})
}

func TestMaxCheckFlagsNonFinite(t *testing.T) {
	withImpls(t, func(t *testing.T, k Impl) {
		for n := 1; n <= 20; n++ {
			for pos := 0; pos < n; pos++ {
				for _, v := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
					x := make([]float32, n)
					for i := range x {
						x[i] = float32(i) - 3
					}
					x[pos] = v
					if _, bad := k.MaxCheck(x); bad == 0 {
						t.Fatalf("n=%d pos=%d v=%g: not flagged", n, pos, v)
					}
				}
			}
		}
		// Negative values only: the max must not be polluted by masked-off tail lanes (zeros).
		x := []float32{-5, -4, -3, -7, -9, -11, -2.5, -8, -1.5, -30, -6}
		for n := 1; n <= len(x); n++ {
			m, _ := k.MaxCheck(x[:n])
			want := float32(math.Inf(-1))
			for _, v := range x[:n] {
				want = max(want, v)
			}
			if m != want {
				t.Fatalf("n=%d: max %g want %g", n, m, want)
			}
		}
	})
}

// TestImplsAgree compares every implementation with Generic on ragged lengths
// 0..67 (every tail length) and checks that the package functions are Active's
// bit for bit. Reference: Generic; tolerance 2 ulp per exponential (the assembly
// fuses the polynomial's multiply-adds) and 1e-6 relative on the sums (another
// order of additions).
func TestImplsAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for n := 0; n <= 67; n++ {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64() * 10)
		}
		gm, gbad := Generic.MaxCheck(x)
		ge := make([]float32, n)
		gs := Generic.ExpSum(ge, x, gm, 0.7)
		for _, k := range Impls() {
			m, bad := k.MaxCheck(x)
			if m != gm || bad != gbad {
				t.Fatalf("%s n=%d: max %g bad %g, want %g %g", k.Name, n, m, bad, gm, gbad)
			}
			e := make([]float32, n)
			s := k.ExpSum(e, x, m, 0.7)
			for i := range e {
				if math.Abs(float64(e[i]-ge[i])) > 2.4e-7*float64(ge[i]) {
					t.Fatalf("%s n=%d i=%d: %g want %g", k.Name, n, i, e[i], ge[i])
				}
			}
			if math.Abs(float64(s-gs)) > 1e-6*float64(gs) {
				t.Fatalf("%s n=%d: sum %g want %g", k.Name, n, s, gs)
			}
		}
		a := Active()
		am, abad := a.MaxCheck(x)
		ae := make([]float32, n)
		as := a.ExpSum(ae, x, am, 0.7)
		m, bad := MaxCheck(x)
		e := make([]float32, n)
		s := ExpSum(e, x, m, 0.7)
		if m != am || math.Float32bits(bad) != math.Float32bits(abad) || s != as {
			t.Fatalf("n=%d: package functions differ from %s", n, a.Name)
		}
		for i := range e {
			if e[i] != ae[i] {
				t.Fatalf("n=%d i=%d: ExpSum %g, %s %g", n, i, e[i], a.Name, ae[i])
			}
		}
		Scale(e, 0.25)
		a.Scale(ae, 0.25)
		for i := range e {
			if e[i] != ae[i] {
				t.Fatalf("n=%d i=%d: Scale %g, %s %g", n, i, e[i], a.Name, ae[i])
			}
		}
	}
}

// TestDotShift: every implementation against a float64 loop on ragged lengths
// 0..67 (every tail length), and the package function against Active bit for
// bit. Tolerance 1e-14 relative to Σ|terms| (float64 sums in another order,
// FMA in the assembly).
func TestDotShift(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for n := 0; n <= 67; n++ {
		x := make([]float32, n+1)
		for i := range x {
			x[i] = float32(rng.NormFloat64() * 10)
		}
		m, _ := MaxCheck(x[:n])
		e := make([]float32, n+1)
		ExpSum(e, x[:n], m, 0.9)
		x[n], e[n] = 1e30, 1e30 // beyond len(x): must be ignored
		var want, abs float64
		for i := range n {
			d := float64(e[i]) * (float64(x[i]) - float64(m))
			want += d
			abs += math.Abs(d)
		}
		for _, k := range Impls() {
			got := k.DotShift(e, x[:n], m)
			if math.Abs(got-want) > 1e-14*abs {
				t.Fatalf("%s n=%d: %g want %g", k.Name, n, got, want)
			}
		}
		if DotShift(e, x[:n], m) != Active().DotShift(e, x[:n], m) {
			t.Fatalf("n=%d: DotShift differs from %s", n, Active().Name)
		}
	}
}

// BenchmarkRow: one row of the confidence pipeline per primitive and
// implementation, rows of 10, 100 and 1000 normal(0, 3) values, seed 1.
func BenchmarkRow(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		rng := rand.New(rand.NewPCG(1, 1))
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64() * 3)
		}
		e := make([]float32, n)
		for _, k := range Impls() {
			m, _ := k.MaxCheck(x)
			k.ExpSum(e, x, m, 1)
			b.Run(k.Name+"/MaxCheck/n="+strconv.Itoa(n), func(b *testing.B) {
				for b.Loop() {
					k.MaxCheck(x)
				}
			})
			b.Run(k.Name+"/ExpSum/n="+strconv.Itoa(n), func(b *testing.B) {
				for b.Loop() {
					k.ExpSum(e, x, m, 1)
				}
			})
			b.Run(k.Name+"/DotShift/n="+strconv.Itoa(n), func(b *testing.B) {
				for b.Loop() {
					k.DotShift(e, x, m)
				}
			})
		}
	}
}
