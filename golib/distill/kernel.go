package distill

import "github.com/exitnet/exitnet/golib/internal/vexp"

// Row kernels of SoftTargets and KDLoss. The row primitives (maximum with a
// finiteness check, exp with its sum, scale) are golib/internal/vexp's, whose
// package doc has the base-2 exponential and its error bound (≤ 2.8 ulp plus
// |x−m|·scale·1.2e−7). The fused KD kernel kdRows is distill's own: an AVX2+FMA
// version (kernel_amd64.s, inlining vexp's exponential with the same constants,
// selected at init when the CPU has both) and a pure-Go one (kernel_generic.go,
// on vexp.Exp2) that is also the reference the assembly is tested against.

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
	maxCheck: vexp.Generic.MaxCheck,
	expSum:   vexp.Generic.ExpSum,
	scale:    vexp.Generic.Scale,
	kdRows:   kdRowsGeneric,
}

// kern is the implementation in use (set by init in kernel_amd64.go when possible).
var kern = genericKernels

// KernelName reports which row kernels are in use ("avx2" or "generic").
func KernelName() string { return kern.name }
