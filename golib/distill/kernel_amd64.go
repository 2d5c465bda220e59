//go:build amd64 && !purego

package distill

import "golang.org/x/sys/cpu"

//go:noescape
func maxCheckAVX2(x []float32) (m, bad float32)

//go:noescape
func expSumAVX2(dst, x []float32, m, scale float32) float32

//go:noescape
func scaleAVX2(dst []float32, a float32)

//go:noescape
func kdRowsAVX2(g, et, s, t []float32, rows, cols, gstride int, scale, gscale float32, stats []float32)

// avx2Kernels wraps the assembly, which takes c = scale·log2 e (see kernel.go)
// and trusts its lengths: the wrappers check them.
var avx2Kernels = kernels{
	name:     "avx2",
	maxCheck: maxCheckAVX2,
	expSum: func(dst, x []float32, m, scale float32) float32 {
		return expSumAVX2(dst[:len(x)], x, m, log2Scale(scale))
	},
	scale: scaleAVX2,
	kdRows: func(g, et, s, t []float32, rows, cols, gstride int, scale, gscale float32, stats []float32) {
		if rows <= 0 || cols <= 0 {
			return
		}
		if gstride != 0 && gstride != cols {
			panic("distill: kdRows gstride must be 0 or cols")
		}
		n := rows * cols
		_ = s[n-1]
		_ = t[n-1]
		_ = et[cols-1]
		_ = g[(rows-1)*gstride+cols-1]
		_ = stats[5*rows-1]
		kdRowsAVX2(g, et, s, t, rows, cols, gstride, log2Scale(scale), gscale, stats)
	},
}

var haveAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

func init() {
	if haveAVX2 {
		kern = avx2Kernels
	}
}
