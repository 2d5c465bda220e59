package distill

// Row kernels shared by SoftTargets and KDLoss. Each has an AVX2+FMA assembly
// version (kernel_amd64.s, selected at init when the CPU has both) and a
// pure-Go version (kernel_generic.go) that is also the reference the assembly
// is tested against. All work on float32, accumulate in float32 lanes, and
// compute exp((x − m)·scale) in base 2, which keeps the FMA pipes free (the
// range reduction is one exact subtraction):
//
//	u = (x − m)·c,  c = scale·log2(e)       (c and u each rounded to float32)
//	n = round(u),   f = u − n ∈ [−½, ½]     (exact; rounding by adding M = 1.5·2²³ + 127)
//	2^f ≈ 1 + f·(c1 + f·(c2 + … + f·c5))    (near-minimax, relative error ≤ 2.8 ulp in float32)
//	exp = 2^f · 2^n,  2^n = the bits of u + M shifted left by 23 (a single multiply)
//
// u is clamped to [−127, 127]: u ≤ −126.5 (x−m < −87.7 at scale 1) gives 0
// (absolute error < 1.2e−38; 2^n's bits are 0 for n = −127) and u > 127 saturates. The
// relative error is at most about 2.8 ulp plus |x−m|·scale·1.2e−7 from rounding c and u
// (twice what rounding z = (x−m)/T costs any float32 softmax). Callers only pass
// x ≤ m (max-subtracted logits), so u ≤ 0.

// Constants of the exp approximation, shared with the assembly.
const (
	exp2Lo   = -127.0
	exp2Hi   = 127.0
	expMagic = 12583039.0 // 1.5·2^23 + 127
	expC1    = 0.6931469760544401
	expC2    = 0.24022242088278425
	expC3    = 0.055507357443578015
	expC4    = 0.009671512493949177
	expC5    = 0.001326415140957212
)

// kernels is the active implementation; tests swap it to compare both.
type kernels struct {
	name string
	// maxCheck returns max(x) and Σ x·0 (0 when every x is finite, NaN otherwise).
	maxCheck func(x []float32) (m, bad float32)
	// expSum writes dst[i] = exp((x[i]−m)·scale) and returns Σ dst[i].
	expSum func(dst, x []float32, m, scale float32) float32
	// scale writes dst[i] = a·dst[i].
	scale func(dst []float32, a float32)
	// kdRows computes rows consecutive KD rows of cols values (s and t at r·cols,
	// g at r·gstride with gstride ∈ {0, cols}, et a scratch row). For each row:
	// ms, mt = row maxima; g = exp((s−ms)·scale), et = exp((t−mt)·scale), zs, zt
	// their sums and dot = Σ et·(t−s); then, if gscale != 0,
	// g = (gscale/zs)·g − (gscale/zt)·et (the gradient row). ms, mt, zs, zt, dot
	// go to stats[5r:5r+5]. A non-finite input makes that row's dot non-finite.
	kdRows func(g, et, s, t []float32, rows, cols, gstride int, scale, gscale float32, stats []float32)
}

var genericKernels = kernels{
	name:     "generic",
	maxCheck: maxCheckGeneric,
	expSum:   expSumGeneric,
	scale:    scaleGeneric,
	kdRows:   kdRowsGeneric,
}

// kern is the implementation in use (set by init in kernel_amd64.go when possible).
var kern = genericKernels

// KernelName reports which row kernels are in use ("avx2" or "generic").
func KernelName() string { return kern.name }
