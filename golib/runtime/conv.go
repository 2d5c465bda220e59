package runtime

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"

	"github.com/exitnet/exitnet/golib/par"
)

// Convolution, for sample n, group g, output channel o (in group g), position (y, x):
//
//	out[n,o,y,x] = b[o] + Σ_{c<C_in/g} Σ_{i<kh} Σ_{j<kw} w[o,c,i,j] · in[n, g·C_in/g + c, y·s_h − p_h + i·d_h, x·s_w − p_w + j·d_w]
//
// (zero outside the input). General convolutions unfold the input of one group
// into a (C_in/g·kh·kw) × (H_out·W_out) matrix (im2col) and multiply it by the
// group's (C_out/g) × (C_in/g·kh·kw) weight matrix with blas32.Gemm; 1×1
// stride-1 unpadded convolutions use the input directly. Work is split over
// (sample, column block, row block) items so batch 1 still uses every thread.

// convKernel is a compiled convolution: built once at load by
// chooseConvKernel (a kernel may pack the weights its own way then), run on
// rows samples of [C_in, H, W] in, writing rows samples of ins.outS to out.
// The instruction's bias, fused activation (ins.act) and fused 2×2 max-pool
// (ins.pool2) belong to the kernel's epilogue. Run must scale with rows: a
// stage runs only on the samples still running (batch compaction).
type convKernel interface {
	Run(ws *workspace, in, out []float32, rows int)
	Name() string // for profiles and messages
}

// chooseConvKernel is the one place that picks the kernel of a conv2d node
// by its shape (ins is final: shapes, weights, act, pool2).
func chooseConvKernel(ins *instr) convKernel {
	if isDepthwise(ins) {
		if d := newDepthwise(ins); d != nil {
			return dwKernel{d}
		}
		return depthwiseKernel{ins}
	}
	if k := newConvAsLinear(ins); k != nil {
		return k
	}
	if c := newDirectConv(ins); c != nil {
		return directKernel{c, ins}
	}
	return im2colKernel{ins}
}

// convFusesPool reports whether the kernel chosen for ins can fuse a
// following 2×2 stride-2 max-pool into its epilogue (decided before the
// kernel is chosen, since the pool changes the instruction's output shape).
func convFusesPool(ins *instr) bool { return !isDepthwise(ins) }

// isDepthwise: one input channel per group (channel multiplier C_out/C_in ≥ 1).
func isDepthwise(ins *instr) bool { return ins.groups > 1 && ins.inS.C == ins.groups }

type im2colKernel struct{ ins *instr }

func (k im2colKernel) Run(ws *workspace, in, out []float32, rows int) { conv(ws, k.ins, in, out, rows) }
func (k im2colKernel) Name() string                                   { return "im2col+gemm" }

type depthwiseKernel struct{ ins *instr }

func (k depthwiseKernel) Run(_ *workspace, in, out []float32, rows int) {
	depthwise(k.ins, in, out, rows)
}
func (k depthwiseKernel) Name() string { return "depthwise-direct (scalar)" }

// conv runs a kConv instruction on rows samples. Samples are taken in
// sub-batches of nb whose im2col matrices sit side by side (K × nb·L, columns
// ordered sample-major), so each group needs one large GEMM, which the BLAS
// threads itself (OpenBLAS in the shared library, gonum's parallel Sgemm in pure
// Go); im2col and the scatter back to [n][C_out][L] (with bias and the fused
// activation) run on par.For. A single sample of a 1×1 unpadded stride-1
// convolution multiplies its input directly.
func conv(ws *workspace, ins *instr, in, out []float32, rows int) {
	is, os := ins.inS, ins.convS
	L := os.H * os.W
	g := ins.groups
	cinG, coutG := is.C/g, os.C/g
	K := ins.colRows
	inSize, outSize := is.size(), ins.outS.size()
	Lo := ins.outS.H * ins.outS.W // per-channel output size (pooled when pool2)
	const colBudget = 1 << 19     // floats in one im2col sub-batch (2 MiB)
	nb := max(1, min(rows, colBudget/max(1, K*L)))
	if ins.oneByOne && rows == 1 && !ins.pool2 {
		for gi := 0; gi < g; gi++ {
			b := blas32.General{Rows: cinG, Cols: L, Stride: L, Data: in[gi*cinG*L : (gi+1)*cinG*L]}
			a := blas32.General{Rows: coutG, Cols: K, Stride: K, Data: ins.w[gi*coutG*K : (gi+1)*coutG*K]}
			c := blas32.General{Rows: coutG, Cols: L, Stride: L, Data: out[gi*coutG*L : (gi+1)*coutG*L]}
			blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, a, b, 0, c)
		}
		addBias(ins, out, 1, L)
		return
	}
	col := ws.scratch(K * nb * L)
	defer ws.release(col)
	var tmp []float32
	if nb > 1 || ins.pool2 {
		tmp = ws.scratch(coutG * nb * L)
		defer ws.release(tmp)
	}
	for n0 := 0; n0 < rows; n0 += nb {
		cnt := min(nb, rows-n0)
		W := cnt * L // columns of this sub-batch
		for gi := 0; gi < g; gi++ {
			// im2col of every sample of the sub-batch, parallel over (sample, row block of col)
			const rowGrain = 8
			rblocks := (K + rowGrain - 1) / rowGrain
			par.For(cnt*rblocks, grainFor(rowGrain*L), func(lo, hi int) {
				for it := lo; it < hi; it++ {
					n, rb := it/rblocks, it%rblocks
					r0, r1 := rb*rowGrain, min(rb*rowGrain+rowGrain, K)
					x := in[(n0+n)*inSize+gi*cinG*is.H*is.W:]
					im2colRows(col[:K*W], W, n*L, x, ins, r0, r1)
				}
			})
			a := blas32.General{Rows: coutG, Cols: K, Stride: K, Data: ins.w[gi*coutG*K : (gi+1)*coutG*K]}
			b := blas32.General{Rows: K, Cols: W, Stride: W, Data: col[:K*W]}
			if cnt == 1 && !ins.pool2 {
				o := out[n0*outSize+gi*coutG*L:]
				blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, a, b, 0, blas32.General{Rows: coutG, Cols: L, Stride: L, Data: o[:coutG*L]})
				continue
			}
			c := blas32.General{Rows: coutG, Cols: W, Stride: W, Data: tmp[:coutG*W]}
			blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, a, b, 0, c)
			// scatter [o][n][L] → out[n0+n][gi·coutG + o][L], adding the bias and
			// applying the activation on the way (one pass over the output)
			par.For(cnt*coutG, grainFor(L), func(lo, hi int) {
				for it := lo; it < hi; it++ {
					n, o := it/coutG, it%coutG
					var bv float32
					if ins.b != nil {
						bv = ins.b[gi*coutG+o]
					}
					dst := out[(n0+n)*outSize+(gi*coutG+o)*Lo:][:Lo]
					if ins.pool2 {
						poolAct(dst, tmp[o*W+n*L:][:L], os.W, ins.outS.H, ins.outS.W, bv, ins.act)
					} else {
						scatterAct(dst, tmp[o*W+n*L:][:L], bv, ins.act)
					}
				}
			})
		}
		if cnt == 1 && !ins.pool2 {
			addBias(ins, out[n0*outSize:(n0+1)*outSize], 1, L)
		}
	}
}

// poolAct writes the 2×2 stride-2 max-pool of one W-wide plane of src with the
// bias and activation: dst[y,x] = act(max(src[2y..2y+1, 2x..2x+1]) + b), which
// equals pooling after the activation since it is monotonic (NaN propagates).
func poolAct(dst, src []float32, W, Ho, Wo int, b float32, a activation) {
	for y := 0; y < Ho; y++ {
		r0 := src[2*y*W:][:2*Wo]
		r1 := src[(2*y+1)*W:][:2*Wo]
		d := dst[y*Wo:][:Wo]
		for x := range d {
			d[x] = max(r0[2*x], r0[2*x+1], r1[2*x], r1[2*x+1]) + b
		}
		biasAct(d, 0, a)
	}
}

// addBias adds the per-channel bias and applies the fused activation to rows
// samples of [C_out][L] outputs, parallel over (sample, channel) planes.
func addBias(ins *instr, out []float32, rows, L int) {
	C := ins.outS.C
	par.For(rows*C, grainFor(L), func(lo, hi int) {
		for it := lo; it < hi; it++ {
			var bv float32
			if ins.b != nil {
				bv = ins.b[it%C]
			}
			biasAct(out[it*L:(it+1)*L], bv, ins.act)
		}
	})
}

// im2colRows writes rows [r0, r1) of one sample's unfolded input (one group)
// into col, whose rows have stride ld, starting at column c0:
//
//	col[r·ld + c0 + q] = in[c, y·s_h − p_h + i·d_h, x·s_w − p_w + j·d_w],  r = (c·kh + i)·kw + j,  q = y·W_out + x
func im2colRows(col []float32, ld, c0 int, x []float32, ins *instr, r0, r1 int) {
	is, os := ins.inS, ins.convS
	H, W := is.H, is.W
	kh, kw := ins.k[0], ins.k[1]
	sh, sw := ins.s[0], ins.s[1]
	ph, pw := ins.p[0], ins.p[1]
	dh, dw := ins.d[0], ins.d[1]
	L := os.H * os.W
	for r := r0; r < r1; r++ {
		c, i, j := r/(kh*kw), r/kw%kh, r%kw
		plane := x[c*H*W : (c+1)*H*W]
		dst := col[r*ld+c0 : r*ld+c0+L]
		ix0 := j*dw - pw // input column of output column 0
		// valid output columns: 0 <= x·sw + ix0 < W
		x0, x1 := 0, os.W
		if ix0 < 0 {
			x0 = min((-ix0+sw-1)/sw, os.W)
		}
		if lim := W - 1 - ix0; lim < 0 {
			x1 = 0
		} else {
			x1 = min(x1, lim/sw+1)
		}
		x1 = max(x1, x0)
		for y := 0; y < os.H; y++ {
			d := dst[y*os.W : (y+1)*os.W]
			iy := y*sh - ph + i*dh
			if iy < 0 || iy >= H {
				clear(d)
				continue
			}
			src := plane[iy*W : (iy+1)*W]
			clear(d[:x0])
			clear(d[x1:])
			if x0 == x1 {
				// no output column reads this tap (src[x0+ix0:] may be out of range)
			} else if sw == 1 {
				copy(d[x0:x1], src[x0+ix0:x1+ix0])
			} else {
				for x := x0; x < x1; x++ {
					d[x] = src[x*sw+ix0]
				}
			}
		}
	}
}

// depthwise runs a depthwise conv2d instruction (one input channel per group; each
// output channel o reads input channel o / (C_out/C_in)) with a direct loop.
func depthwise(ins *instr, in, out []float32, rows int) {
	is, os := ins.inS, ins.outS
	mult := os.C / is.C
	kh, kw := ins.k[0], ins.k[1]
	sh, sw := ins.s[0], ins.s[1]
	ph, pw := ins.p[0], ins.p[1]
	dh, dw := ins.d[0], ins.d[1]
	H, W := is.H, is.W
	planes := rows * os.C
	grain := grainFor(os.H * os.W * kh * kw)
	par.For(planes, grain, func(lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			n, o := pl/os.C, pl%os.C
			src := in[(n*is.C+o/mult)*H*W:][:H*W]
			dst := out[pl*os.H*os.W:][:os.H*os.W]
			w := ins.w[o*kh*kw : (o+1)*kh*kw]
			var bv float32
			if ins.b != nil {
				bv = ins.b[o]
			}
			for y := 0; y < os.H; y++ {
				drow := dst[y*os.W : (y+1)*os.W]
				for x := range drow {
					drow[x] = 0
				}
				for i := 0; i < kh; i++ {
					iy := y*sh - ph + i*dh
					if iy < 0 || iy >= H {
						continue
					}
					srow := src[iy*W : (iy+1)*W]
					for j := 0; j < kw; j++ {
						wv := w[i*kw+j]
						off := j*dw - pw
						// valid x range: 0 <= x*sw + off < W
						x0 := 0
						if off < 0 {
							x0 = (-off + sw - 1) / sw
						}
						x1 := os.W
						if lim := (W - 1 - off); lim < 0 {
							x1 = 0
						} else if lim/sw+1 < x1 {
							x1 = lim/sw + 1
						}
						if x0 >= x1 {
							continue
						}
						if sw == 1 {
							s := srow[x0+off : x1+off]
							d := drow[x0:x1]
							for t := range d {
								d[t] += wv * s[t]
							}
						} else {
							for x := x0; x < x1; x++ {
								drow[x] += wv * srow[x*sw+off]
							}
						}
					}
				}
				biasAct(drow, bv, ins.act)
			}
		}
	})
}

// linear runs y = x·Wᵀ + b for rows samples: one GEMM (threaded by the BLAS),
// then bias and the fused activation on par.For.
func linear(ins *instr, in, out []float32, rows int) {
	if ins.dense != nil && rows >= denseMinRows {
		ins.dense.Forward(in, out, rows)
		return
	}
	F, O := ins.inS.C, ins.outS.C
	w := blas32.General{Rows: O, Cols: F, Stride: F, Data: ins.w}
	if rows <= 2 {
		// y = W·x per row: GEMV streams W once; a GEMM would pack all of W first
		for r := 0; r < rows; r++ {
			x := blas32.Vector{N: F, Inc: 1, Data: in[r*F : (r+1)*F]}
			y := blas32.Vector{N: O, Inc: 1, Data: out[r*O : (r+1)*O]}
			blas32.Gemv(blas.NoTrans, 1, w, x, 0, y)
		}
	} else {
		a := blas32.General{Rows: rows, Cols: F, Stride: F, Data: in[:rows*F]}
		c := blas32.General{Rows: rows, Cols: O, Stride: O, Data: out[:rows*O]}
		blas32.Gemm(blas.NoTrans, blas.Trans, 1, a, w, 0, c)
	}
	par.For(rows, grainFor(O), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := out[r*O : (r+1)*O]
			if ins.b != nil {
				for j, bv := range ins.b {
					row[j] += bv
				}
			}
			biasAct(row, 0, ins.act)
		}
	})
}
