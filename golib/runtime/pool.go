package runtime

import (
	"math"

	"github.com/exitnet/exitnet/golib/par"
)

// Pooling over windows of kh×kw with stride s and padding p (torch semantics;
// ceil_mode only changes the output size, compile time):
//
//	max: out[y,x] = max over the window of in (padding never wins: −∞)
//	avg: out[y,x] = Σ window in / #(window ∩ padded input)  count_include_pad=True
//	     out[y,x] = Σ window in / #(window ∩ input)         count_include_pad=False
//	gap: out[c]   = Σ_{y,x} in[c,y,x] / (H·W)
//	adaptive: bin (i, j) of an oh×ow output covers rows ⌊i·H/oh⌋ .. ⌈(i+1)·H/oh⌉−1
//	     and columns ⌊j·W/ow⌋ .. ⌈(j+1)·W/ow⌉−1; out = mean over the bin
func pool2d(ins *instr, in, out []float32, rows int) {
	is, os := ins.inS, ins.outS
	H, W := is.H, is.W
	kh, kw := ins.k[0], ins.k[1]
	sh, sw := ins.s[0], ins.s[1]
	ph, pw := ins.p[0], ins.p[1]
	isMax := ins.kind == kMaxPool
	planes := rows * is.C
	grain := grainFor(os.H * os.W * kh * kw)
	if isMax && kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0 && 2*os.H <= H && 2*os.W <= W {
		maxPool2x2(in, out, planes, H, W, os.H, os.W)
		return
	}
	par.For(planes, grain, func(lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			src := in[pl*H*W:][:H*W]
			dst := out[pl*os.H*os.W:][:os.H*os.W]
			for y := 0; y < os.H; y++ {
				y0 := y*sh - ph
				ya, yb := max(y0, 0), min(y0+kh, H)
				for x := 0; x < os.W; x++ {
					x0 := x*sw - pw
					xa, xb := max(x0, 0), min(x0+kw, W)
					if isMax {
						m := float32(math.Inf(-1))
						for iy := ya; iy < yb; iy++ {
							for _, v := range src[iy*W+xa : iy*W+xb] {
								m = max(m, v) // NaN propagates
							}
						}
						dst[y*os.W+x] = m
					} else {
						var s float32
						for iy := ya; iy < yb; iy++ {
							for _, v := range src[iy*W+xa : iy*W+xb] {
								s += v
							}
						}
						// torch: with count_include_pad the window is clipped to the
						// padded input (only ceil_mode windows reach beyond it)
						div := float32((min(y0+kh, H+ph) - y0) * (min(x0+kw, W+pw) - x0))
						if !ins.countPad {
							div = float32((yb - ya) * (xb - xa))
						}
						dst[y*os.W+x] = s / div
					}
				}
			}
		}
	})
}

func gap(ins *instr, in, out []float32, rows int) {
	hw := ins.inS.H * ins.inS.W
	planes := rows * ins.inS.C
	par.For(planes, grainFor(hw), func(lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			var s float32
			for _, v := range in[pl*hw : (pl+1)*hw] {
				s += v
			}
			out[pl] = s / float32(hw)
		}
	})
}

// adaptiveAvg runs kAdaptive (torch's AdaptiveAvgPool2d bins).
func adaptiveAvg(ins *instr, in, out []float32, rows int) {
	H, W := ins.inS.H, ins.inS.W
	oh, ow := ins.outS.H, ins.outS.W
	planes := rows * ins.inS.C
	par.For(planes, grainFor(H*W), func(lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			src := in[pl*H*W:][:H*W]
			dst := out[pl*oh*ow:][:oh*ow]
			for i := 0; i < oh; i++ {
				y0, y1 := i*H/oh, ((i+1)*H+oh-1)/oh
				for j := 0; j < ow; j++ {
					x0, x1 := j*W/ow, ((j+1)*W+ow-1)/ow
					var s float32
					for y := y0; y < y1; y++ {
						for _, v := range src[y*W+x0 : y*W+x1] {
							s += v
						}
					}
					dst[i*ow+j] = s / float32((y1-y0)*(x1-x0))
				}
			}
		}
	})
}

// minChunk is the least work (elements touched) worth handing to another
// thread: waking a parked worker costs tens of µs on a virtual machine (measured
// here: two small par.For calls added ~100 µs to a 230 µs batch-1 CNN call), so
// loops below it run on the calling thread.
var minChunk = 1 << 17 // tests lower it to exercise the parallel paths on small models

// grainFor returns the par.For grain (items per chunk) for items of size
// elements each, so that every chunk has at least minChunk elements.
func grainFor(size int) int { return max(1, minChunk/max(1, size)) }

// maxPool2x2 is the common 2×2 stride-2 unpadded max-pool (NaN propagates, as in torch).
func maxPool2x2(in, out []float32, planes, H, W, Ho, Wo int) {
	par.For(planes, grainFor(H*W), func(lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			src := in[pl*H*W:][:H*W]
			dst := out[pl*Ho*Wo:][:Ho*Wo]
			for y := 0; y < Ho; y++ {
				r0 := src[2*y*W:][:2*Wo]
				r1 := src[(2*y+1)*W:][:2*Wo]
				d := dst[y*Wo:][:Wo]
				for x := range d {
					d[x] = max(r0[2*x], r0[2*x+1], r1[2*x], r1[2*x+1]) // builtin max: NaN if any is NaN
				}
			}
		}
	})
}
