package convk

import (
	"fmt"
	"unsafe"

	"github.com/exitnet/exitnet/golib/par"
)

// Act is the activation fused into a kernel's epilogue.
type Act uint8

const (
	ActNone Act = iota
	ActReLU
	ActReLU6
)

func (a Act) flags() int {
	switch a {
	case ActReLU:
		return flagReLU
	case ActReLU6:
		return flagReLU | flagReLU6
	}
	return 0
}

func (a Act) String() string {
	return [...]string{"", "relu", "relu6"}[a]
}

// Shape is a 2-D convolution on samples of [Cin, H, W] (NCHW, float32).
type Shape struct {
	Cin, H, W, Cout        int
	KH, KW, SH, SW, PH, PW int
	DH, DW, Groups         int
	Act                    Act
	Pool                   bool // 2×2 stride-2 max-pool (floor) after the activation
}

// Conv is a convolution with its weights packed for the micro-kernel.
type Conv struct {
	Shape
	Ho, Wo      int // convolution output
	OutH, OutW  int // what Forward writes (pooled when Pool)
	cinG, coutG int
	cb, hp, wp  int  // input channel block, padded height and width
	inPlace     bool // no padding: the NCHW input is already the packed layout with cb = 1
	plane       int  // packed floats per sample and group
	offs        []int32
	bgs         []blockGroup
	w, bias     []float32
	wPerGroup   int
}

// MinChunk is the least work (multiply-adds) worth a separate par.For chunk;
// waking a worker costs tens of µs on a busy virtual machine.
var MinChunk = 1 << 18

// NewConv checks s and packs w ([Cout][Cin/G][KH][KW]) and b ([Cout] or nil).
func NewConv(s Shape, w, b []float32) (*Conv, error) {
	if s.Groups < 1 || s.Cin < 1 || s.Cout < 1 || s.Cin%s.Groups != 0 || s.Cout%s.Groups != 0 {
		return nil, fmt.Errorf("convk: channels %d→%d do not split into %d groups", s.Cin, s.Cout, s.Groups)
	}
	if s.KH < 1 || s.KW < 1 || s.SH < 1 || s.SW < 1 || s.DH < 1 || s.DW < 1 || s.PH < 0 || s.PW < 0 {
		return nil, fmt.Errorf("convk: bad kernel %dx%d stride %dx%d dilation %dx%d padding %dx%d",
			s.KH, s.KW, s.SH, s.SW, s.DH, s.DW, s.PH, s.PW)
	}
	c := &Conv{Shape: s, cinG: s.Cin / s.Groups, coutG: s.Cout / s.Groups}
	c.Ho = outLen(s.H, s.KH, s.SH, s.PH, s.DH)
	c.Wo = outLen(s.W, s.KW, s.SW, s.PW, s.DW)
	c.OutH, c.OutW = c.Ho, c.Wo
	if s.Pool {
		c.OutH, c.OutW = c.Ho/2, c.Wo/2
	}
	if c.OutH < 1 || c.OutW < 1 {
		return nil, fmt.Errorf("convk: empty output for input %dx%d, kernel %dx%d", s.H, s.W, s.KH, s.KW)
	}
	k := c.cinG * s.KH * s.KW
	if len(w) != s.Cout*k {
		return nil, fmt.Errorf("convk: weight has %d values, want %d", len(w), s.Cout*k)
	}
	if b != nil && len(b) != s.Cout {
		return nil, fmt.Errorf("convk: bias has %d values, want %d", len(b), s.Cout)
	}
	// largest channel block ≤ 8 dividing Cin/G: no padded channels. Without
	// padding the packed layout with cb = 1 is NCHW itself: the kernel reads
	// the input in place (no pack; one offset load per step instead of per 8)
	for c.cb = min(8, c.cinG); c.cinG%c.cb != 0; c.cb-- {
	}
	if s.PH == 0 && s.PW == 0 {
		c.cb, c.inPlace = 1, true
	}
	c.hp, c.wp = s.H+2*s.PH, s.W+2*s.PW
	c.plane = c.cinG * c.hp * c.wp
	if c.plane*4 > 1<<31-1 {
		return nil, fmt.Errorf("convk: input plane of %d floats too large", c.plane)
	}
	// step (block q, tap i, j, channel r) ↔ input channel q·cb + r, byte offset in the packed input
	c.offs = make([]int32, 0, k)
	order := make([]int, 0, k) // step → index c·KH·KW + i·KW + j in a weight row
	for q := 0; q < c.cinG/c.cb; q++ {
		for i := 0; i < s.KH; i++ {
			for j := 0; j < s.KW; j++ {
				for r := 0; r < c.cb; r++ {
					off := ((q*c.hp+i*s.DH)*c.wp+j*s.DW)*c.cb + r
					c.offs = append(c.offs, int32(4*off))
					order = append(order, ((q*c.cb+r)*s.KH+i)*s.KW+j)
				}
			}
		}
	}
	var bias func(int) float32
	if b != nil {
		bias = func(o int) float32 { return b[o] }
	}
	c.bgs, c.w, c.bias = packWeights(s.Groups, c.coutG, k,
		func(g, o, st int) float32 { return w[(g*c.coutG+o)*k+order[st]] }, bias)
	c.wPerGroup = len(c.w) / s.Groups
	return c, nil
}

func outLen(in, k, s, p, d int) int {
	span := in + 2*p - d*(k-1) - 1
	if span < 0 {
		return 0
	}
	return span/s + 1
}

// ScratchSize is the number of floats Forward needs for rows samples.
func (c *Conv) ScratchSize(rows int) int {
	if c.inPlace {
		return 0
	}
	return rows * c.Groups * c.plane
}

// InSize and OutSize are the per-sample input and output lengths.
func (c *Conv) InSize() int  { return c.Cin * c.H * c.W }
func (c *Conv) OutSize() int { return c.Cout * c.OutH * c.OutW }

// MACs per sample.
func (c *Conv) MACs() int64 {
	return int64(c.Cout) * int64(c.Ho*c.Wo) * int64(c.cinG*c.KH*c.KW)
}

// Describe says which kernel the layer runs, for debug and profile output.
func (c *Conv) Describe() string {
	nbs := make([]int, len(c.bgs))
	for i, bg := range c.bgs {
		nbs[i] = bg.nb
	}
	layout := fmt.Sprintf("NCHW→[C/%d][%dx%d][%d] padded", c.cb, c.hp, c.wp, c.cb)
	if c.inPlace {
		layout = "NCHW read in place"
	}
	s := fmt.Sprintf("direct %dx%d/s%d,%d/p%d,%d/d%d,%d g%d %d→%d: %s, %s 4px×%v×8ch tiles",
		c.KH, c.KW, c.SH, c.SW, c.PH, c.PW, c.DH, c.DW, c.Groups, c.Cin, c.Cout, layout, Kernel(), nbs)
	if c.Act != ActNone {
		s += " +" + c.Act.String()
	}
	if c.Pool {
		s += " +maxpool2x2"
	}
	return s
}

// Forward computes rows samples: in is rows·InSize() floats (NCHW), out
// rows·OutSize() (NCHW), scratch at least ScratchSize(rows) (any contents).
// Work (packing included) is proportional to rows.
//
// With enough samples each worker packs a few samples and convolves them at
// once, while their packed input is still in L2 (no barrier between the two);
// with few samples (batch 1) packing and the tiles are split separately, so
// one sample still uses every thread.
func (c *Conv) Forward(in, out, scratch []float32, rows int) {
	if rows <= 0 {
		return
	}
	in = in[:rows*c.InSize()]
	out = out[:rows*c.OutSize()]
	scratch = scratch[:c.ScratchSize(rows)]
	perSample := c.Groups * c.plane
	qs := c.OutH * c.OutW // output pixels per sample
	if c.Pool {
		qs = c.OutH * c.OutW
	} else {
		qs = c.Ho * c.Wo
	}
	if rows >= 2*par.Threads() && !c.inPlace {
		chunk := max(1, l2Budget/(4*perSample)) // samples packed at a time
		grain := max(1, int(int64(MinChunk)/max(1, c.MACs())))
		par.For(rows, grain, func(lo, hi int) {
			for s0 := lo; s0 < hi; s0 += chunk {
				s1 := min(s0+chunk, hi)
				for it := s0 * c.Groups; it < s1*c.Groups; it++ {
					c.packOne(in, scratch, it)
				}
				c.run(scratch, out, s0*qs, s1*qs)
			}
		})
		return
	}
	src := in
	if !c.inPlace {
		src = scratch
		par.For(rows*c.Groups, max(1, MinChunk/max(1, 16*c.plane)), func(lo, hi int) {
			for it := lo; it < hi; it++ {
				c.packOne(in, scratch, it)
			}
		})
	}
	unit := 4 // output pixels per tile
	if c.Pool {
		unit = 1
	}
	total := rows * qs
	ntiles := (total + unit - 1) / unit
	grain := max(1, int(int64(MinChunk)/max(1, int64(4*c.Cout*len(c.offs)))))
	par.For(ntiles, grain, func(lo, hi int) {
		c.run(src, out, lo*unit, min(hi*unit, total))
	})
}

// l2Budget is the packed input (bytes) a worker prepares before convolving it
// (a variable so that tests can make chunks small).
var l2Budget = 128 << 10

// packOne packs sample·group it as [Cin/G/cb][hp][wp][cb] with zero borders.
func (c *Conv) packOne(in, dst []float32, it int) {
	hw := c.H * c.W
	packPlane(dst[it*c.plane:(it+1)*c.plane], in[it*c.cinG*hw:(it+1)*c.cinG*hw],
		c.cinG/c.cb, c.cb, c.H, c.W, c.PH, c.PW)
}

// packPlane writes nq blocks of cb channels of src ([nq·cb][h][w]) into d as
// [nq][h+2ph][w+2pw][cb] with zero borders.
func packPlane(d, src []float32, nq, cb, h, w, ph, pw int) {
	hw := h * w
	rowLen := (w + 2*pw) * cb
	hp := h + 2*ph
	for q := 0; q < nq; q++ {
		blk := d[q*hp*rowLen : (q+1)*hp*rowLen]
		clear(blk[:ph*rowLen])
		clear(blk[(hp-ph)*rowLen:])
		s := src[q*cb*hw : (q+1)*cb*hw]
		if cb == 8 && pw == 0 {
			// unpadded rows are contiguous on both sides: the whole plane at once
			n8 := hw / 8
			pack8(&blk[ph*rowLen], &s[0], 4*hw, n8)
			packRest8(blk[ph*rowLen:], s, hw, 8*n8, hw)
			continue
		}
		for y := 0; y < h; y++ {
			row := blk[(y+ph)*rowLen : (y+ph+1)*rowLen]
			clear(row[:pw*cb])
			clear(row[(pw+w)*cb:])
			row = row[pw*cb : (pw+w)*cb]
			switch cb {
			case 1:
				copy(row, s[y*w:][:w])
			case 8:
				n8 := w / 8
				pack8(&row[0], &s[y*w], 4*hw, n8)
				packRest8(row, s[y*w:], hw, 8*n8, w)
			default:
				for r := 0; r < cb; r++ {
					sr := s[r*hw+y*w:][:w]
					for x, v := range sr {
						row[x*cb+r] = v
					}
				}
			}
		}
	}
}

// pack8 moves n groups of 8 positions of 8 channel planes (stride bytes
// apart) into [8n][8]: the AVX2 transpose when available, else pack8Go.
var pack8 = pack8Go

func pack8Go(dst, src *float32, stride, n int) {
	if n <= 0 {
		return
	}
	d := unsafe.Slice(dst, 64*n)
	for r := 0; r < 8; r++ {
		s := unsafe.Slice((*float32)(unsafe.Add(unsafe.Pointer(src), r*stride)), 8*n)
		for x, v := range s {
			d[8*x+r] = v
		}
	}
}

// packRest8 packs positions [x0, x1) left over by pack8's groups of 8. With
// at least 8 positions in the row it transposes the last 8 as one more group,
// overlapping positions already packed (they are rewritten with the same
// values): a 14-wide row then takes two transposes instead of one and 48
// scalar strided loads, which made packing a third of a small conv's time.
func packRest8(dst, src []float32, hw, x0, x1 int) {
	if x0 >= x1 {
		return
	}
	if x1 >= 8 {
		pack8(&dst[8*(x1-8)], &src[x1-8], 4*hw, 1)
		return
	}
	packTail8(dst, src, hw, x0, x1)
}

// packTail8 packs positions [x0, x1) of 8 channel planes (hw floats apart)
// from src into dst[8x+r], one float at a time (what pack8's groups of 8
// leave over).
func packTail8(dst, src []float32, hw, x0, x1 int) {
	for x := x0; x < x1; x++ {
		o := dst[8*x : 8*x+8 : 8*x+8]
		_ = src[7*hw+x]
		o[0], o[1], o[2], o[3] = src[x], src[hw+x], src[2*hw+x], src[3*hw+x]
		o[4], o[5], o[6], o[7] = src[4*hw+x], src[5*hw+x], src[6*hw+x], src[7*hw+x]
	}
}

// tileBatch is how many tiles one pass over a block group's weights covers
// (their inputs stay in L1/L2 while each block group's weights stream through).
const tileBatch = 32

// run computes output pixels [q0, q1) counted over all samples: pooled
// outputs (one 2×2 window per tile) with Pool, else convolution outputs (4
// consecutive ones per tile, which may span rows and samples; a short last
// tile repeats its last pixel, computed but not stored).
func (c *Conv) run(src, out []float32, q0, q1 int) {
	hwo := c.Ho * c.Wo
	ohw := c.OutH * c.OutW
	flags := c.Act.flags()
	unit := 4
	if c.Pool {
		flags |= flagPool
		unit = 1
	}
	gPlane := c.plane
	var inOff, outOff [tileBatch][4]int
	var a tileArgs
	a.offs = &c.offs[0]
	a.k = len(c.offs)
	a.cs = 4 * ohw
	a.flags = flags
	if c.cb == 8 {
		a.blocked = 1
	}
	for b0 := q0; b0 < q1; b0 += unit * tileBatch {
		b1 := min(b0+unit*tileBatch, q1)
		nt := (b1 - b0 + unit - 1) / unit
		if c.Pool {
			// pooled output r of sample n: walk (n, py, px)
			n, r := b0/ohw, b0%ohw
			py, px := r/c.OutW, r%c.OutW
			for t := 0; t < nt; t++ {
				base := n * c.Groups * gPlane
				for p := 0; p < 4; p++ {
					oy, ox := 2*py+p/2, 2*px+p%2
					inOff[t][p] = 4 * (base + (oy*c.SH*c.wp+ox*c.SW)*c.cb)
				}
				outOff[t][0] = 4 * (n*c.Cout*ohw + py*c.OutW + px)
				if px++; px == c.OutW {
					px = 0
					if py++; py == c.OutH {
						py, n = 0, n+1
					}
				}
			}
		} else {
			n, r := b0/hwo, b0%hwo
			oy, ox := r/c.Wo, r%c.Wo
			for q := b0; q < b0+4*nt; q++ {
				t, p := (q-b0)/4, (q-b0)%4
				inOff[t][p] = 4 * (n*c.Groups*gPlane + (oy*c.SH*c.wp+ox*c.SW)*c.cb)
				outOff[t][p] = 4 * (n*c.Cout*ohw + oy*c.Wo + ox)
				if q+1 < b1 { // past b1 - 1: repeat it
					if ox++; ox == c.Wo {
						ox = 0
						if oy++; oy == c.Ho {
							oy, n = 0, n+1
						}
					}
				}
			}
		}
		// a short last tile is its own call with fewer pixels stored
		full, tail := nt, 0
		if !c.Pool && b0+4*nt > b1 {
			full, tail = nt-1, b1-(b0+4*(nt-1))
		}
		for g := 0; g < c.Groups; g++ {
			a.inBase = unsafe.Pointer(&src[g*gPlane])
			for _, bg := range c.bgs {
				a.w = &c.w[g*c.wPerGroup+bg.wOff]
				a.bias = &c.bias[(g*len(c.bgs))*24+bg.bOff]
				a.nb, a.nch = bg.nb, bg.nch
				a.outBase = unsafe.Pointer(&out[(g*c.coutG+bg.c0)*ohw])
				tiles(&a, &inOff, &outOff, full, tail)
			}
		}
	}
}
