package convk

import "unsafe"

// Flags of a tile call.
const (
	flagReLU  = 1 // acc = max(acc, 0)
	flagReLU6 = 2 // acc = min(max(acc, 0), 6)
	flagPool  = 4 // reduce the 4 pixels by max (a 2×2 pool window) into pixel 0
)

// tileArgs is one micro-kernel call over nt tiles; the assembly reads it by
// byte offset (keep the field order and the offsets in the comments).
type tileArgs struct {
	inBase  unsafe.Pointer // 0
	outBase unsafe.Pointer // 8
	inOff   *[4]int        // 16: per tile, byte offsets of its 4 pixels' inputs from inBase
	outOff  *[4]int        // 24: per tile, byte offsets of its stored pixels' outputs from outBase
	nt      int            // 32: tiles
	offs    *int32         // 40: k byte offsets of the steps, added to each pixel's input address
	k       int            // 48: steps
	w       *float32       // 56: packed weights [k][nb·8]
	bias    *float32       // 64: 24 floats (zero past nb·8)
	nb      int            // 72: output-channel blocks of 8: 1, 2 or 3
	npix    int            // 80: pixels stored per tile (1..4; ignored with flagPool: 1)
	nch     int            // 88: channels stored per pixel (1..nb·8)
	cs      int            // 96: output channel stride in bytes
	flags   int            // 104
	blocked int            // 112: 1 when k%8 == 0 and offs[8j+r] = offs[8j] + 4r (8-channel blocks)
}

// tile is the micro-kernel: the AVX2 assembly when the CPU has it (and the
// build allows it), else tileGo.
var tile = tileGo

// tiles runs full tiles of 4 pixels (offsets inOff[0:full]), then one tile of
// the tail pixels (offsets inOff[full]), for the block group set in a.
func tiles(a *tileArgs, inOff, outOff *[tileBatch][4]int, full, tail int) {
	if full > 0 {
		a.inOff, a.outOff = &inOff[0], &outOff[0]
		a.nt, a.npix = full, 4
		tile(a)
	}
	if tail > 0 {
		a.inOff, a.outOff = &inOff[full], &outOff[full]
		a.nt, a.npix = 1, tail
		tile(a)
	}
}

// Kernel names the micro-kernel in use ("avx2+fma" or "go").
func Kernel() string {
	if useAsm {
		return "avx2+fma"
	}
	return "go"
}

// tileGo is the portable micro-kernel, the same computation as the assembly
// (sums in the same order, so results agree up to FMA rounding).
func tileGo(a *tileArgs) {
	nw := a.nb * 8
	offs := unsafe.Slice(a.offs, a.k)
	w := unsafe.Slice(a.w, a.k*nw)
	bias := unsafe.Slice(a.bias, 24)
	inOff := unsafe.Slice(a.inOff, a.nt)
	outOff := unsafe.Slice(a.outOff, a.nt)
	for t := 0; t < a.nt; t++ {
		var acc [4][24]float32
		for p := 0; p < 4; p++ {
			base := unsafe.Add(a.inBase, inOff[t][p])
			ap := acc[p][:nw]
			for k, off := range offs {
				x := *(*float32)(unsafe.Add(base, off))
				wk := w[k*nw : k*nw+nw]
				for o := range ap {
					ap[o] += x * wk[o]
				}
			}
		}
		npix := a.npix
		if a.flags&flagPool != 0 {
			for o := 0; o < nw; o++ {
				acc[0][o] = max(acc[0][o], acc[1][o], acc[2][o], acc[3][o]) // NaN propagates
			}
			npix = 1
		}
		for p := 0; p < npix; p++ {
			dst := unsafe.Add(a.outBase, outOff[t][p])
			for o := 0; o < a.nch; o++ {
				v := acc[p][o] + bias[o]
				switch {
				case a.flags&flagReLU6 != 0:
					v = min(max(v, 0), 6)
				case a.flags&flagReLU != 0:
					v = max(v, 0)
				}
				*(*float32)(unsafe.Add(dst, o*a.cs)) = v
			}
		}
	}
}
