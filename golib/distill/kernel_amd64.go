//go:build amd64 && !purego

package distill

import "golang.org/x/sys/cpu"

//go:noescape
func maxCheckAVX2(x []float32) (m, bad float32)

//go:noescape
func expSumAVX2(dst, x []float32, m, scale float32) float32

//go:noescape
func expSumDotAVX2(dst, x, y []float32, m, scale float32) (sum, dot float32)

//go:noescape
func axpbyAVX2(dst, e []float32, a, b float32)

//go:noescape
func scaleAVX2(dst []float32, a float32)

//go:noescape
func max2AVX2(s, t []float32) (ms, mt, bad float32)

//go:noescape
func kdRowsAVX2(g, et, s, t []float32, rows, cols, gstride int, scale, gscale float32, stats []float32) (badRow int)

//go:noescape
func kdRowAVX2(g, et, s, t []float32, scale, gscale float32) (ms, mt, zs, zt, dot, bad float32)

//go:noescape
func kdExpAVX2(es, et, s, t []float32, ms, mt, scale float32) (zs, zt, dot float32)

// avx2Kernels wraps the assembly (which takes c = scale·log2 e, see kernel.go). The assembly assumes len(dst) >= len(x) (and
// len(y) >= len(x)); the wrappers enforce it with a bounds-checked reslice.
var avx2Kernels = kernels{
	name:     "avx2",
	maxCheck: maxCheckAVX2,
	expSum: func(dst, x []float32, m, scale float32) float32 {
		return expSumAVX2(dst[:len(x)], x, m, log2Scale(scale))
	},
	expSumDot: func(dst, x, y []float32, m, scale float32) (float32, float32) {
		return expSumDotAVX2(dst[:len(x)], x, y[:len(x)], m, log2Scale(scale))
	},
	axpby: func(dst, e []float32, a, b float32) { axpbyAVX2(dst, e[:len(dst)], a, b) },
	scale: scaleAVX2,
	max2:  func(s, t []float32) (float32, float32, float32) { return max2AVX2(s, t[:len(s)]) },
	kdExp: func(es, et, s, t []float32, ms, mt, scale float32) (float32, float32, float32) {
		n := len(s)
		return kdExpAVX2(es[:n], et[:n], s, t[:n], ms, mt, log2Scale(scale))
	},
	kdRow: func(g, et, s, t []float32, scale, gscale float32) (float32, float32, float32, float32, float32, float32) {
		n := len(s)
		return kdRowAVX2(g[:n], et[:n], s, t[:n], log2Scale(scale), gscale)
	},
	kdRows: func(g, et, s, t []float32, rows, cols, gstride int, scale, gscale float32, stats []float32) int {
		// Bounds the assembly relies on, checked once per call.
		if rows <= 0 {
			return -1
		}
		n := rows * cols
		_ = s[n-1]
		_ = t[n-1]
		_ = et[cols-1]
		_ = g[(rows-1)*gstride+cols-1]
		_ = stats[5*rows-1]
		if gstride != 0 && gstride != cols {
			panic("distill: kdRows gstride must be 0 or cols")
		}
		return kdRowsAVX2(g, et, s, t, rows, cols, gstride, log2Scale(scale), gscale, stats)
	},
}

var haveAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

func init() {
	if haveAVX2 {
		kern = avx2Kernels
	}
}
