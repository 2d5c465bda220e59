package distill

// Row kernels shared by SoftTargets and KDLoss. Each has an AVX2+FMA assembly
// version (kernel_amd64.s, selected at init when the CPU has both) and a
// pure-Go version (kernel_generic.go) that is also the reference the assembly
// is tested against. All work on float32, accumulate in float32 lanes, and
// compute exp((x − m)·scale) in base 2, which keeps the FMA pipes free (the
// range reduction is one exact subtraction):
//
//	u = (x − m)·c,  c = scale·log2(e)       (c and u each rounded to float32)
//	n = round(u),   f = u − n ∈ [−½, ½]     (exact; rounding by adding M = 1.5·2²³)
//	2^f ≈ 1 + f·(c1 + f·(c2 + … + f·c6))    (near-minimax, relative error ≤ 1.3 ulp in float32)
//	exp = 2^f · 2^n,  by adding n·2²³ (the bits of u + M shifted left by 23) to the bits of 2^f
//
// u < −126 gives 0 (results below 2^−126, x−m < −87.3 at scale 1, flush to 0:
// absolute error < 1.2e−38) and u > 127 saturates at 2^127. The
// relative error is about 1.3 ulp plus |x−m|·scale·1.2e−7 from rounding c and u
// (twice what rounding z = (x−m)/T costs any float32 softmax). Callers only pass
// x ≤ m (max-subtracted logits), so u ≤ 0.

// Constants of the exp approximation, shared with the assembly.
const (
	exp2Lo   = -126.0
	exp2Hi   = 127.0
	expMagic = 12582912.0 // 1.5·2^23
	expC1    = 0.6931472028546121
	expC2    = 0.2402264791265092
	expC3    = 0.05550332471045455
	expC4    = 0.009618437457764827
	expC5    = 0.0013398874541434812
	expC6    = 0.00015353337223261362
)

// kernels is the active implementation; tests swap it to compare both.
type kernels struct {
	name string
	// maxCheck returns max(x) and Σ x·0 (0 when every x is finite, NaN otherwise).
	maxCheck func(x []float32) (m, bad float32)
	// expSum writes dst[i] = exp((x[i]−m)·scale) and returns Σ dst[i].
	expSum func(dst, x []float32, m, scale float32) float32
	// expSumDot writes dst[i] = exp((x[i]−m)·scale) and returns Σ dst[i] and Σ dst[i]·(x[i]−y[i]).
	expSumDot func(dst, x, y []float32, m, scale float32) (sum, dot float32)
	// axpby writes dst[i] = a·dst[i] − b·e[i].
	axpby func(dst, e []float32, a, b float32)
	// scale writes dst[i] = a·dst[i].
	scale func(dst []float32, a float32)
	// max2 returns max(s), max(t) and Σ (s·0 + t·0) (0 when all are finite); len(t) ≥ len(s).
	max2 func(s, t []float32) (ms, mt, bad float32)
	// kdExp writes es[i] = exp((s[i]−ms)·scale), et[i] = exp((t[i]−mt)·scale) and
	// returns Σ es, Σ et and Σ et[i]·(t[i]−s[i]): both exponential passes of one KD row.
	kdExp func(es, et, s, t []float32, ms, mt, scale float32) (zs, zt, dot float32)
	// kdRow is one whole KD row: ms, mt, bad as max2; if bad == 0, g and et and
	// zs, zt, dot as kdExp (g in place of es); then, if gscale != 0,
	// g = (gscale/zs)·g − (gscale/zt)·et (the gradient row).
	kdRow func(g, et, s, t []float32, scale, gscale float32) (ms, mt, zs, zt, dot, bad float32)
	// kdRows runs kdRow over rows consecutive rows of cols values (s and t at
	// r·cols, g at r·gstride, gstride ∈ {0, cols}), storing ms, mt, zs, zt, dot
	// of row r at stats[5r:5r+5]. It stops at the first row with a non-finite
	// value and returns its index, or −1.
	kdRows func(g, et, s, t []float32, rows, cols, gstride int, scale, gscale float32, stats []float32) int
}

var genericKernels = kernels{
	name:      "generic",
	maxCheck:  maxCheckGeneric,
	expSum:    expSumGeneric,
	expSumDot: expSumDotGeneric,
	axpby:     axpbyGeneric,
	scale:     scaleGeneric,
	max2:      max2Generic,
	kdExp:     kdExpGeneric,
	kdRow:     kdRowGeneric,
	kdRows:    kdRowsGeneric,
}

// kern is the implementation in use (set by init in kernel_amd64.go when possible).
var kern = genericKernels

// KernelName reports which row kernels are in use ("avx2" or "generic").
func KernelName() string { return kern.name }
