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

// convSplit chooses how many column and row blocks each sample is cut into so
// that there are about Threads() work items, each worth at least minWork MACs.
func convSplit(n, cols, rows int, macsPerSample int64) (cb, rb int) {
	t := par.Threads()
	cb, rb = 1, 1
	if n >= t || t == 1 {
		return
	}
	want := (t + n - 1) / n
	const minWork = 1 << 16
	if maxItems := int(macsPerSample / minWork); maxItems < want {
		want = max(maxItems, 1)
	}
	if cols >= 64*want {
		return want, 1
	}
	cb = max(1, min(want, cols/64))
	rb = max(1, min((want+cb-1)/cb, rows/16))
	return cb, rb
}

// conv runs a kConv instruction on rows samples.
func conv(ws *workspace, ins *instr, in, out []float32, rows int) {
	is, os := ins.inS, ins.outS
	L := os.H * os.W
	g := ins.groups
	cinG, coutG := is.C/g, os.C/g
	K := ins.colRows
	inSize, outSize := is.size(), os.size()
	cb, rb := convSplit(rows, L, coutG, ins.macs)
	colBlock := (L + cb - 1) / cb
	rowBlock := (coutG + rb - 1) / rb
	items := rows * cb * rb
	par.For(items, 1, func(lo, hi int) {
		var col []float32
		if !ins.oneByOne {
			col = ws.scratch(K * colBlock)
			defer ws.release(col)
		}
		for it := lo; it < hi; it++ {
			n := it / (cb * rb)
			c0 := (it / rb % cb) * colBlock
			c1 := min(c0+colBlock, L)
			r0 := (it % rb) * rowBlock
			r1 := min(r0+rowBlock, coutG)
			if c0 >= c1 || r0 >= r1 {
				continue
			}
			nc := c1 - c0
			x := in[n*inSize : (n+1)*inSize]
			y := out[n*outSize : (n+1)*outSize]
			for gi := 0; gi < g; gi++ {
				var b blas32.General
				if ins.oneByOne {
					off := gi*cinG*L + c0
					b = blas32.General{Rows: cinG, Cols: nc, Stride: L, Data: x[off : off+(cinG-1)*L+nc]}
				} else {
					im2col(col[:K*nc], x[gi*cinG*is.H*is.W:], ins, c0, c1)
					b = blas32.General{Rows: K, Cols: nc, Stride: nc, Data: col[:K*nc]}
				}
				o0 := gi*coutG + r0
				a := blas32.General{Rows: r1 - r0, Cols: K, Stride: K, Data: ins.w[o0*K : (o0+r1-r0)*K]}
				coff := o0*L + c0
				cm := blas32.General{Rows: r1 - r0, Cols: nc, Stride: L, Data: y[coff : coff+(r1-r0-1)*L+nc]}
				blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, a, b, 0, cm)
				for o := o0; o < o0+r1-r0; o++ {
					row := y[o*L+c0 : o*L+c1]
					var bv float32
					if ins.b != nil {
						bv = ins.b[o]
					}
					biasAct(row, bv, ins.act)
				}
			}
		}
	})
}

// im2col writes the unfolded input of one group for output positions [c0, c1):
//
//	col[((c·kh + i)·kw + j)·(c1−c0) + (q − c0)] = in[c, y·s_h − p_h + i·d_h, x·s_w − p_w + j·d_w],  q = y·W_out + x
func im2col(col, x []float32, ins *instr, c0, c1 int) {
	is, os := ins.inS, ins.outS
	H, W := is.H, is.W
	cinG := is.C / ins.groups
	kh, kw := ins.k[0], ins.k[1]
	sh, sw := ins.s[0], ins.s[1]
	ph, pw := ins.p[0], ins.p[1]
	dh, dw := ins.d[0], ins.d[1]
	nc := c1 - c0
	r := 0
	for c := 0; c < cinG; c++ {
		plane := x[c*H*W : (c+1)*H*W]
		for i := 0; i < kh; i++ {
			for j := 0; j < kw; j++ {
				dst := col[r*nc : (r+1)*nc]
				r++
				oy, ox := c0/os.W, c0%os.W
				for q := 0; q < nc; {
					iy := oy*sh - ph + i*dh
					// one output row segment
					seg := min(os.W-ox, nc-q)
					d := dst[q : q+seg]
					if iy < 0 || iy >= H {
						for t := range d {
							d[t] = 0
						}
					} else {
						src := plane[iy*W : (iy+1)*W]
						ix := ox*sw - pw + j*dw
						if sw == 1 && ix >= 0 && ix+seg <= W {
							copy(d, src[ix:ix+seg])
						} else {
							for t := range d {
								if ix >= 0 && ix < W {
									d[t] = src[ix]
								} else {
									d[t] = 0
								}
								ix += sw
							}
						}
					}
					q += seg
					ox = 0
					oy++
				}
			}
		}
	}
}

// biasAct adds a bias to a row and applies the fused activation.
func biasAct(row []float32, b float32, a activation) {
	switch a {
	case actReLU:
		for i, v := range row {
			v += b
			if !(v > 0) && v == v {
				v = 0
			}
			row[i] = v
		}
	case actReLU6:
		for i, v := range row {
			v += b
			if v < 0 {
				v = 0
			} else if v > 6 {
				v = 6
			}
			row[i] = v
		}
	default:
		if b != 0 {
			for i := range row {
				row[i] += b
			}
		}
	}
}

// depthwise runs a kDepthwise instruction (one input channel per group; each
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
	grain := max(1, (1<<14)/max(1, os.H*os.W*kh*kw))
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

// linear runs y = x·Wᵀ + b for rows samples, split over row blocks (or over
// output-feature blocks when there are fewer rows than threads).
func linear(ins *instr, in, out []float32, rows int) {
	F, O := ins.inS.C, ins.outS.C
	t := par.Threads()
	rb, ob := rows, O
	if rows >= 2*t {
		rb = (rows + t - 1) / t
	} else if int64(rows)*ins.macs >= 1<<17 && O >= 64 {
		ob = max(32, (O+t-1)/t)
	}
	nr, no := (rows+rb-1)/rb, (O+ob-1)/ob
	par.For(nr*no, 1, func(lo, hi int) {
		for it := lo; it < hi; it++ {
			r0 := (it / no) * rb
			r1 := min(r0+rb, rows)
			o0 := (it % no) * ob
			o1 := min(o0+ob, O)
			if r0 >= r1 || o0 >= o1 {
				continue
			}
			a := blas32.General{Rows: r1 - r0, Cols: F, Stride: F, Data: in[r0*F : r1*F]}
			b := blas32.General{Rows: o1 - o0, Cols: F, Stride: F, Data: ins.w[o0*F : o1*F]}
			coff := r0*O + o0
			c := blas32.General{Rows: r1 - r0, Cols: o1 - o0, Stride: O, Data: out[coff : coff+(r1-r0-1)*O+(o1-o0)]}
			blas32.Gemm(blas.NoTrans, blas.Trans, 1, a, b, 0, c)
			for r := r0; r < r1; r++ {
				row := out[r*O+o0 : r*O+o1]
				if ins.b != nil {
					bb := ins.b[o0:o1]
					for j := range row {
						row[j] += bb[j]
					}
				}
				biasAct(row, 0, ins.act)
			}
		}
	})
}
