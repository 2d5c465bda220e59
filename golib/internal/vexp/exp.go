// Package vexp holds exitnet's vectorised row primitives around one float32
// exponential: the row maximum with a finiteness check, exp((x − m)·scale) with
// its sum, an in-place scale, and the float64 dot product Σ e·(x − m) of a
// softmax's entropy. distill (soft targets, KD) and policy (exit
// confidences) use them. Each has an AVX2+FMA assembly version (exp_amd64.s,
// selected at init when the CPU has both, see golang.org/x/sys/cpu) and a pure-Go
// version (exp_generic.go) that is also the reference the assembly is tested
// against (the only one with -tags purego or off amd64). All work on float32,
// accumulate in float32 lanes, and compute exp((x − m)·scale) in base 2, which
// keeps the FMA pipes free (the range reduction is one exact subtraction):
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
//
// Results depend only on a row's values and their positions in the row (lane
// j mod 8), not on memory alignment: identical rows give bit-identical results.
// The AVX2 and generic sums differ in the order of additions.
//
// distill's fused KD kernel (kdRows) inlines the same exponential with the same
// constants; its tests check it against ExpSum bit for bit.
package vexp

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

// Impl is one implementation of the row primitives (same contracts as the
// package functions); tests and benchmarks use it to compare them.
type Impl struct {
	Name     string
	MaxCheck func(x []float32) (m, bad float32)
	ExpSum   func(dst, x []float32, m, scale float32) float32
	Scale    func(dst []float32, a float32)
	DotShift func(e, x []float32, m float32) float64
}

// Generic is the pure-Go implementation, the reference for the assembly.
var Generic = Impl{
	Name:     "generic",
	MaxCheck: maxCheckGeneric,
	ExpSum:   expSumGeneric,
	Scale:    scaleGeneric,
	DotShift: dotShiftGeneric,
}

// Impls lists the implementations this CPU can run: Generic first, then the one
// in use when it is another.
func Impls() []Impl {
	if useAVX2 {
		return []Impl{Generic, avx2Impl}
	}
	return []Impl{Generic}
}

// Active is the implementation the package functions use.
func Active() Impl {
	if useAVX2 {
		return avx2Impl
	}
	return Generic
}

// Name reports which implementation is in use ("avx2" or "generic").
func Name() string { return Active().Name }

// MaxCheck returns max(x) (−Inf when x is empty) and Σ x·0, which is 0 when every
// x is finite and NaN otherwise. With a NaN in x, m is unspecified.
func MaxCheck(x []float32) (m, bad float32) {
	if useAVX2 {
		return maxCheckAVX2(x)
	}
	return maxCheckGeneric(x)
}

// ExpSum writes dst[i] = exp((x[i]−m)·scale) for i < len(x) and returns their
// float32 sum. len(dst) must be at least len(x); x ≤ m is expected (see the
// package doc for the error bounds).
func ExpSum(dst, x []float32, m, scale float32) float32 {
	if useAVX2 {
		return expSumAVX2Checked(dst, x, m, scale)
	}
	return expSumGeneric(dst, x, m, scale)
}

// Scale writes dst[i] = a·dst[i].
func Scale(dst []float32, a float32) {
	if useAVX2 {
		scaleAVX2(dst, a)
		return
	}
	scaleGeneric(dst, a)
}

// DotShift returns Σ_i e[i]·(x[i] − m) for i < len(x), with x[i] − m, the
// products and the sum in float64; len(e) must be at least len(x). With e = exp((x − m)·scale) this is the entropy's Σ p·log p times
// Z/scale.
func DotShift(e, x []float32, m float32) float64 {
	if useAVX2 {
		return dotShiftAVX2Checked(e, x, m)
	}
	return dotShiftGeneric(e, x, m)
}
