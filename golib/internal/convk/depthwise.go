package convk

import (
	"fmt"
	"unsafe"

	"github.com/exitnet/exitnet/golib/par"
)

// Depthwise convolution (groups = Cin, Cout = m·Cin), for sample n, output
// channel o, position (y, x):
//
//	out[n,o,y,x] = act(b[o] + Σ_{i<kh} Σ_{j<kw} w[o,i,j] · in[n, ⌊o/m⌋, y·sh − ph + i·dh, x·sw − pw + j·dw])
//
// One input channel per output channel leaves the general micro-kernel 7 of
// its 8 lanes idle, so depthwise layers vectorise over channels instead (as
// MLAS's NCHWc and XNNPACK's depthwise kernels do): per (sample, block of 8
// output channels) the 8 input planes are packed as [H+2ph][W+2pw][8] with
// zero borders (lane r holds input channel ⌊(8q+r)/m⌋, zeros past Cout), and
// a tile of 8 consecutive output positions of the flattened Ho·Wo plane (so
// narrow planes, 2×2 or 1×1, waste no lanes) is 8 accumulators of 8
// channels: per tap one weight vector and 8 FMAs whose inputs are the
// positions' packed vectors at the tap's offset. The epilogue adds the bias,
// applies the activation and transposes the 8×8 block in registers, so each
// channel's 8 positions are one contiguous NCHW store.

// dwArgs is one call of the depthwise micro-kernel over nt tiles of one
// channel block; the assembly reads it by byte offset (keep the order).
type dwArgs struct {
	in    unsafe.Pointer // 0: packed block [hp][wp][8]
	out   unsafe.Pointer // 8: output plane of the block's first channel; tile t writes positions 8t..8t+7
	inOff *[8]int        // 16: per tile, byte offsets of its 8 positions' first tap from in
	nt    int            // 24: tiles
	offs  *int32         // 32: ntap byte offsets of the taps
	ntap  int            // 40
	w     *float32       // 48: packed weights [ntap][8]
	bias  *float32       // 56: 8 floats
	cs    int            // 64: output channel plane stride in bytes
	nch   int            // 72: channels stored (1..8)
	flags int            // 80: flagReLU, flagReLU6
	npos  int            // 88: positions stored by the last tile (1..8; the others store 8)
}

// dwTile is the depthwise micro-kernel: the AVX2 assembly when available,
// else dwGo.
var dwTile = dwGo

// dwGo is the portable depthwise micro-kernel (same sums in the same order).
func dwGo(a *dwArgs) {
	offs := unsafe.Slice(a.offs, a.ntap)
	w := unsafe.Slice(a.w, 8*a.ntap)
	bias := unsafe.Slice(a.bias, 8)
	inOff := unsafe.Slice(a.inOff, a.nt)
	for t := 0; t < a.nt; t++ {
		var acc [8][8]float32 // [position][channel]
		for k, off := range offs {
			wk := w[8*k : 8*k+8]
			for p := 0; p < 8; p++ {
				x := (*[8]float32)(unsafe.Add(a.in, inOff[t][p]+int(off)))
				for r := range wk {
					acc[p][r] += wk[r] * x[r]
				}
			}
		}
		npos := 8
		if t == a.nt-1 {
			npos = a.npos
		}
		for r := 0; r < a.nch; r++ {
			dst := unsafe.Slice((*float32)(unsafe.Add(a.out, r*a.cs+32*t)), npos)
			for p := range dst {
				v := acc[p][r] + bias[r]
				switch {
				case a.flags&flagReLU6 != 0:
					v = min(max(v, 0), 6)
				case a.flags&flagReLU != 0:
					v = max(v, 0)
				}
				dst[p] = v
			}
		}
	}
}

// Depthwise is a depthwise convolution with its weights packed by blocks of 8
// output channels.
type Depthwise struct {
	Shape
	Ho, Wo int
	mult   int // Cout / Cin
	hp, wp int
	plane  int      // floats of one packed block
	offs   []int32  // per tap, byte offset in a packed block
	posOff [][8]int // per tile of 8 output positions, byte offsets of their first tap
	w      []float32
	bias   []float32
}

// NewDepthwise checks s (Groups = Cin, Cout a multiple of Cin, no pool) and
// packs w ([Cout][1][KH][KW]) and b ([Cout] or nil).
func NewDepthwise(s Shape, w, b []float32) (*Depthwise, error) {
	if s.Cin < 1 || s.Groups != s.Cin || s.Cout < s.Cin || s.Cout%s.Cin != 0 || s.Pool {
		return nil, fmt.Errorf("convk: %d→%d channels in %d groups (pool %v) is not a depthwise convolution", s.Cin, s.Cout, s.Groups, s.Pool)
	}
	if s.KH < 1 || s.KW < 1 || s.SH < 1 || s.SW < 1 || s.DH < 1 || s.DW < 1 || s.PH < 0 || s.PW < 0 {
		return nil, fmt.Errorf("convk: bad kernel %dx%d stride %dx%d dilation %dx%d padding %dx%d",
			s.KH, s.KW, s.SH, s.SW, s.DH, s.DW, s.PH, s.PW)
	}
	d := &Depthwise{Shape: s, mult: s.Cout / s.Cin}
	d.Ho = outLen(s.H, s.KH, s.SH, s.PH, s.DH)
	d.Wo = outLen(s.W, s.KW, s.SW, s.PW, s.DW)
	if d.Ho < 1 || d.Wo < 1 {
		return nil, fmt.Errorf("convk: empty output for input %dx%d, kernel %dx%d", s.H, s.W, s.KH, s.KW)
	}
	ntap := s.KH * s.KW
	if len(w) != s.Cout*ntap || (b != nil && len(b) != s.Cout) {
		return nil, fmt.Errorf("convk: depthwise weight has %d values and bias %d, want %d and %d", len(w), len(b), s.Cout*ntap, s.Cout)
	}
	d.hp, d.wp = s.H+2*s.PH, s.W+2*s.PW
	d.plane = d.hp * d.wp * 8
	if 4*d.plane > 1<<31-1 {
		return nil, fmt.Errorf("convk: input plane of %d floats too large", d.plane)
	}
	for i := 0; i < s.KH; i++ {
		for j := 0; j < s.KW; j++ {
			d.offs = append(d.offs, int32(32*(i*s.DH*d.wp+j*s.DW)))
		}
	}
	npos := d.Ho * d.Wo
	d.posOff = make([][8]int, (npos+7)/8)
	for q := range d.posOff {
		for p := 0; p < 8; p++ {
			pos := min(8*q+p, npos-1) // past the plane: repeat the last position (not stored)
			y, x := pos/d.Wo, pos%d.Wo
			d.posOff[q][p] = 32 * (y*s.SH*d.wp + x*s.SW)
		}
	}
	nblk := (s.Cout + 7) / 8
	d.w = make([]float32, nblk*ntap*8)
	d.bias = make([]float32, nblk*8)
	for o := 0; o < s.Cout; o++ {
		q, r := o/8, o%8
		for k := 0; k < ntap; k++ {
			d.w[(q*ntap+k)*8+r] = w[o*ntap+k]
		}
		if b != nil {
			d.bias[q*8+r] = b[o]
		}
	}
	return d, nil
}

// InSize and OutSize are the per-sample input and output lengths.
func (d *Depthwise) InSize() int  { return d.Cin * d.H * d.W }
func (d *Depthwise) OutSize() int { return d.Cout * d.Ho * d.Wo }

// MACs per sample.
func (d *Depthwise) MACs() int64 { return int64(d.Cout) * int64(d.Ho*d.Wo) * int64(d.KH*d.KW) }

// ScratchSize is the number of floats Forward needs to run on up to workers
// threads (one packed block per worker).
func (d *Depthwise) ScratchSize(workers int) int { return max(1, workers) * d.bufLen() }

// bufLen is one worker's scratch: the packed block, then the unpadded block
// that pack transposes first.
func (d *Depthwise) bufLen() int { return d.plane + 8*d.H*d.W }

// Describe says which kernel the layer runs.
func (d *Depthwise) Describe() string {
	s := fmt.Sprintf("depthwise %dx%d/s%d,%d/p%d,%d/d%d,%d %d→%d: NCHW→[%dx%d][8] padded per 8 channels, %s 8px×8ch tiles",
		d.KH, d.KW, d.SH, d.SW, d.PH, d.PW, d.DH, d.DW, d.Cin, d.Cout, d.hp, d.wp, Kernel())
	if d.Act != ActNone {
		s += " +" + d.Act.String()
	}
	return s
}

// Forward computes rows samples: in is rows·InSize() floats (NCHW), out
// rows·OutSize() (NCHW), scratch at least ScratchSize(1) floats (any
// contents); it uses min(len(scratch)/ScratchSize(1), par.Threads()) workers.
// Work is proportional to rows; each (sample, channel block) is packed and
// convolved at once, while its packed block is in L1/L2.
func (d *Depthwise) Forward(in, out, scratch []float32, rows int) {
	if rows <= 0 {
		return
	}
	in = in[:rows*d.InSize()]
	out = out[:rows*d.OutSize()]
	nblk := (d.Cout + 7) / 8
	items := rows * nblk
	perItem := max(1, int(d.MACs()/int64(nblk)))
	nw := min(len(scratch)/d.bufLen(), par.Threads(), items, max(1, int(int64(items)*int64(perItem)/int64(MinChunk))))
	if nw < 1 {
		panic("convk: depthwise scratch smaller than one packed block")
	}
	par.For(nw, 1, func(lo, hi int) {
		var a dwArgs
		a.inOff = &d.posOff[0]
		a.nt = len(d.posOff)
		a.offs = &d.offs[0]
		a.ntap = len(d.offs)
		a.cs = 4 * d.Ho * d.Wo
		a.flags = d.Act.flags()
		a.npos = d.Ho*d.Wo - 8*(len(d.posOff)-1)
		for wk := lo; wk < hi; wk++ {
			buf := scratch[wk*d.bufLen() : (wk+1)*d.bufLen()]
			a.in = unsafe.Pointer(&buf[0])
			for it := wk * items / nw; it < (wk+1)*items/nw; it++ {
				n, q := it/nblk, it%nblk
				d.pack(buf, in[n*d.InSize():(n+1)*d.InSize()], q)
				a.nch = min(8, d.Cout-8*q)
				a.w = &d.w[q*len(d.offs)*8]
				a.bias = &d.bias[q*8]
				a.out = unsafe.Pointer(&out[n*d.OutSize()+8*q*d.Ho*d.Wo])
				dwTile(&a)
			}
		}
	})
}

// pack writes output-channel block q of one sample (src: [Cin][H][W]) into
// buf[:plane] as [hp][wp][8]: lane r is input channel ⌊(8q+r)/mult⌋, zero
// borders, zero lanes past Cout. A full block of a multiplier-1 layer is
// transposed as one unpadded plane (pack8's groups of 8 positions span rows,
// so 4×4 and 2×2 planes are vectorised too) into buf[plane:], then its rows
// are copied into place.
func (d *Depthwise) pack(buf, src []float32, q int) {
	hw := d.H * d.W
	dst := buf[:d.plane]
	if d.mult == 1 && 8*q+8 <= d.Cout {
		s := src[8*q*hw : (8*q+8)*hw]
		tmp := buf[d.plane : d.plane+8*hw]
		pack8(&tmp[0], &s[0], 4*hw, hw/8)
		packRest8(tmp, s, hw, 8*(hw/8), hw)
		rowLen := 8 * d.wp
		clear(dst[:d.PH*rowLen])
		clear(dst[(d.PH+d.H)*rowLen:])
		for y := 0; y < d.H; y++ {
			row := dst[(d.PH+y)*rowLen : (d.PH+y+1)*rowLen]
			clear(row[:8*d.PW])
			copy(row[8*d.PW:], tmp[8*y*d.W:8*(y+1)*d.W])
			clear(row[8*(d.PW+d.W):])
		}
		return
	}
	clear(dst)
	for r := 0; r < 8 && 8*q+r < d.Cout; r++ {
		s := src[(8*q+r)/d.mult*hw:][:hw]
		for y := 0; y < d.H; y++ {
			row := dst[((y+d.PH)*d.wp+d.PW)*8:]
			for x, v := range s[y*d.W : (y+1)*d.W] {
				row[8*x+r] = v
			}
		}
	}
}
