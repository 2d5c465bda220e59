//go:build !amd64 || purego

package fisher

const useAVX2 = false

func sqAcc4(acc []float64, r0, r1, r2, r3 []float32, w *[4]float64) {
	sqAcc4Generic(acc, r0, r1, r2, r3, w)
}

func penaltyKernel(grad, theta, anchor, fisher []float32, lam float32, accumulate bool) float64 {
	return penaltyGeneric(grad, theta, anchor, fisher, lam, accumulate)
}

func sqAcc4Pf(acc []float64, r0, r1, r2, r3 []float32, w *[4]float64, pf int) {
	sqAcc4Generic(acc, r0, r1, r2, r3, w)
}

func sqScaleMax(dst, src []float32, w float32) (float32, bool) { return sqScaleMaxGeneric(dst, src, w) }

func addF32(dst []float64, src []float32) { addF32Generic(dst, src) }
