//go:build amd64 && !purego

package distill

import (
	"golang.org/x/sys/cpu"

	"github.com/exitnet/exitnet/golib/internal/vexp"
)

//go:noescape
func kdRowsAVX2(g, et, s, t []float32, rows, cols, gstride int, scale, gscale float32, stats []float32)

// avx2Kernels: vexp's AVX2 row primitives and the fused KD assembly, which takes
// c = scale·log2 e (see vexp) and trusts its lengths: the wrapper checks them.
var avx2Kernels = kernels{
	name: "avx2",
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
		kdRowsAVX2(g, et, s, t, rows, cols, gstride, vexp.Log2Scale(scale), gscale, stats)
	},
}

var haveAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

func init() {
	// vexp makes the same CPU check; its active primitives are then the AVX2 ones.
	if a := vexp.Active(); haveAVX2 && a.Name == "avx2" {
		avx2Kernels.maxCheck, avx2Kernels.expSum, avx2Kernels.scale = a.MaxCheck, a.ExpSum, a.Scale
		kern = avx2Kernels
	}
}
