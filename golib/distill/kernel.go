package distill

// Row kernels shared by SoftTargets and KDLoss. Each has an AVX2+FMA assembly
// version (kernel_amd64.s, selected at init when the CPU has both) and a
// pure-Go version (kernel_generic.go) that is also the reference the assembly
// is tested against. All work on float32, accumulate in float32 lanes, and use
// the same exp approximation:
//
//	exp(z) = 2^n · (1 + r + r²·P(r)),  n = round(z·log2 e),  r = z − n·ln2 (two-part ln2),
//	P a degree-5 minimax polynomial (Cephes expf), z clamped to [−88, 88].
//
// Accuracy: about 2 ulp for z in [−87.3, 88]; results below 2^−126 (z < −87.3)
// may flush to 0 (absolute error < 1.2e−38); z > 88 saturates at exp(88).
// Callers only pass z ≤ 0 (max-subtracted logits).

// Constants of the exp approximation (Cephes expf), shared with the assembly.
const (
	expLo    = -88.0
	expHi    = 88.0
	expLog2e = 1.44269504088896341
	expC1    = 0.693359375
	expC2    = -2.12194440e-4
	expP0    = 1.9875691500e-4
	expP1    = 1.3981999507e-3
	expP2    = 8.3334519073e-3
	expP3    = 4.1665795894e-2
	expP4    = 1.6666665459e-1
	expP5    = 5.0000001201e-1
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
}

var genericKernels = kernels{
	name:      "generic",
	maxCheck:  maxCheckGeneric,
	expSum:    expSumGeneric,
	expSumDot: expSumDotGeneric,
	axpby:     axpbyGeneric,
	scale:     scaleGeneric,
}

// kern is the implementation in use (set by init in kernel_amd64.go when possible).
var kern = genericKernels

// KernelName reports which row kernels are in use ("avx2" or "generic").
func KernelName() string { return kern.name }
