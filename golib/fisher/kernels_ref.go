package fisher

import "math"

// sqAcc4Generic is the pure-Go form of sqAcc4: acc[j] += Σ_k w[k]·r_k[j]².
func sqAcc4Generic(acc []float64, r0, r1, r2, r3 []float32, w *[4]float64) {
	n := len(acc)
	r0, r1, r2, r3 = r0[:n], r1[:n], r2[:n], r3[:n]
	w0, w1, w2, w3 := w[0], w[1], w[2], w[3]
	for j := range acc {
		x0, x1, x2, x3 := float64(r0[j]), float64(r1[j]), float64(r2[j]), float64(r3[j])
		acc[j] += w0*(x0*x0) + w1*(x1*x1) + w2*(x2*x2) + w3*(x3*x3)
	}
}

// penaltyGeneric is the pure-Go form of the penalty kernel:
//
//	q = F_i (θ_i − a_i); grad_i (+)= λ q; value += q (θ_i − a_i)
func penaltyGeneric(grad, theta, anchor, fisher []float32, lam float32, accumulate bool) float64 {
	n := len(theta)
	grad, anchor, fisher = grad[:n], anchor[:n], fisher[:n]
	var v float64
	for i, t := range theta {
		d := t - anchor[i]
		q := fisher[i] * d
		g := lam * q
		if accumulate {
			g += grad[i]
		}
		grad[i] = g
		v += float64(q * d)
	}
	return v
}

// sqScaleMaxGeneric is the pure-Go form of sqScaleMax: dst[i] = w·src[i]²; it
// returns the largest dst[i] and whether some dst[i] is NaN or +Inf (a
// non-finite src[i], or a square that overflows float32).
func sqScaleMaxGeneric(dst, src []float32, w float32) (float32, bool) {
	dst = dst[:len(src)]
	var m float32
	bad := false
	inf := float32(math.Inf(1))
	for i, v := range src {
		s := w * (v * v)
		dst[i] = s
		m = max(m, s)
		bad = bad || !(s < inf)
	}
	return m, bad
}

// addF32Generic is the pure-Go form of addF32: dst[i] += float64(src[i]).
func addF32Generic(dst []float64, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] += float64(v)
	}
}
