//go:build amd64 && !purego

package fisher

import "golang.org/x/sys/cpu"

// sqAcc4AVX2 adds Σ_k w[k]·float64(r_k[j])² to acc[j] for j < n; n must be a
// multiple of 4 (rows_amd64.s).
//
//go:noescape
func sqAcc4AVX2(acc *float64, r0, r1, r2, r3 *float32, w *[4]float64, n int)

// penaltyAVX2 computes, for i < n (a multiple of 8),
//
//	d = θ_i − a_i; q = F_i·d; grad_i = λ·q (+ grad_i if acc != 0); value += q·d
//
// returning value accumulated in float64 (penalty_amd64.s).
//
//go:noescape
func penaltyAVX2(grad, theta, anchor, fisher *float32, n int, lam float32, acc int) float64

// sqAcc4PfAVX2 is sqAcc4AVX2 that also prefetches each row pointer + pf bytes.
//
//go:noescape
func sqAcc4PfAVX2(acc *float64, r0, r1, r2, r3 *float32, w *[4]float64, n int, pf int)

// sqAcc4OnesPfAVX2 is sqAcc4PfAVX2 with all weights 1 (w unused): one FMA per vector.
//
//go:noescape
func sqAcc4OnesPfAVX2(acc *float64, r0, r1, r2, r3 *float32, w *[4]float64, n int, pf int)

// useAVX2: the CPU has AVX2 and FMA and the OS saves YMM state (x/sys/cpu checks XCR0).
var useAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// sqAcc4Pf is sqAcc4 with a software prefetch of the rows pf bytes ahead.
func sqAcc4Pf(acc []float64, r0, r1, r2, r3 []float32, w *[4]float64, pf int) {
	n := len(acc)
	m := n &^ 3
	if useAVX2 && m > 0 {
		if w[0] == 1 && w[1] == 1 && w[2] == 1 && w[3] == 1 {
			sqAcc4OnesPfAVX2(&acc[0], &r0[0], &r1[0], &r2[0], &r3[0], w, m, pf)
		} else {
			sqAcc4PfAVX2(&acc[0], &r0[0], &r1[0], &r2[0], &r3[0], w, m, pf)
		}
	} else {
		m = 0
	}
	sqAcc4Generic(acc[m:], r0[m:n], r1[m:n], r2[m:n], r3[m:n], w)
}

func sqAcc4(acc []float64, r0, r1, r2, r3 []float32, w *[4]float64) {
	n := len(acc)
	m := n &^ 3
	if useAVX2 && m > 0 {
		sqAcc4AVX2(&acc[0], &r0[0], &r1[0], &r2[0], &r3[0], w, m)
	} else {
		m = 0
	}
	sqAcc4Generic(acc[m:], r0[m:n], r1[m:n], r2[m:n], r3[m:n], w)
}

func penaltyKernel(grad, theta, anchor, fisher []float32, lam float32, accumulate bool) float64 {
	n := len(theta)
	m := n &^ 7
	var v float64
	if useAVX2 && m > 0 {
		acc := 0
		if accumulate {
			acc = 1
		}
		v = penaltyAVX2(&grad[0], &theta[0], &anchor[0], &fisher[0], m, lam, acc)
	} else {
		m = 0
	}
	return v + penaltyGeneric(grad[m:n], theta[m:n], anchor[m:n], fisher[m:n], lam, accumulate)
}

// sqScaleMaxAVX2: dst = w·src², m = max dst, bad != 0 if any dst is NaN/+Inf; n % 16 == 0 (linear_amd64.s).
//
//go:noescape
func sqScaleMaxAVX2(dst, src *float32, n int, w float32) (m float32, bad int)

// addF32AVX2: dst[i] += float64(src[i]); n % 16 == 0 (linear_amd64.s).
//
//go:noescape
func addF32AVX2(dst *float64, src *float32, n int)

func sqScaleMax(dst, src []float32, w float32) (float32, bool) {
	n := len(src)
	m := n &^ 15
	var mx float32
	bad := false
	if useAVX2 && m > 0 {
		var b int
		mx, b = sqScaleMaxAVX2(&dst[0], &src[0], m, w)
		bad = b != 0
	} else {
		m = 0
	}
	tm, tb := sqScaleMaxGeneric(dst[m:n], src[m:n], w)
	return max(mx, tm), bad || tb
}

func addF32(dst []float64, src []float32) {
	n := len(src)
	m := n &^ 15
	if useAVX2 && m > 0 {
		addF32AVX2(&dst[0], &src[0], m)
	} else {
		m = 0
	}
	addF32Generic(dst[m:n], src[m:n])
}
