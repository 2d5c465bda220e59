package convk

import (
	"fmt"
	"unsafe"

	"github.com/exitnet/exitnet/golib/par"
)

// Dense is y = act(x·Wᵀ + b) on rows of In features: the convolution
// micro-kernel with pixels = samples (a 1×1 convolution of a 1×1 image), so
// the input needs no packing: tile pixel p reads row 4t+p directly.
type Dense struct {
	In, Out int
	Act     Act
	offs    []int32
	bgs     []blockGroup
	w, bias []float32
}

// NewDense packs w ([Out][In], row-major) and b ([Out] or nil).
func NewDense(in, out int, w, b []float32, act Act) (*Dense, error) {
	if in < 1 || out < 1 || len(w) != in*out || (b != nil && len(b) != out) {
		return nil, fmt.Errorf("convk: dense %d→%d with %d weights and %d biases", in, out, len(w), len(b))
	}
	if 4*in > 1<<31-1 {
		return nil, fmt.Errorf("convk: dense input of %d features too large", in)
	}
	d := &Dense{In: in, Out: out, Act: act, offs: make([]int32, in)}
	for i := range d.offs {
		d.offs[i] = int32(4 * i)
	}
	var bias func(int) float32
	if b != nil {
		bias = func(o int) float32 { return b[o] }
	}
	d.bgs, d.w, d.bias = packWeights(1, out, in, func(_, o, k int) float32 { return w[o*in+k] }, bias)
	return d, nil
}

// Describe says which kernel the layer runs.
func (d *Dense) Describe() string {
	s := fmt.Sprintf("dense %d→%d: %s 4 rows×%d blocks of 8", d.In, d.Out, Kernel(), len(d.bgs))
	if d.Act != ActNone {
		s += " +" + d.Act.String()
	}
	return s
}

// Forward computes rows samples: in is rows·In floats, out rows·Out.
//
// Loops: batches of tileBatch tiles (4·tileBatch rows, whose inputs stay in
// L2), then block groups of 24 output features, whose K·96-byte weight
// panel streams from L2 for each tile. K is not blocked: splitting it into
// L1-sized chunks (partial sums saved and reloaded between chunks, as
// GotoBLAS and MLAS do) measured 3–6 % slower here (docs/design.md).
func (d *Dense) Forward(in, out []float32, rows int) {
	if rows <= 0 {
		return
	}
	in = in[:rows*d.In]
	out = out[:rows*d.Out]
	ntiles := (rows + 3) / 4
	grain := max(1, MinChunk/max(1, 4*d.In*d.Out))
	par.For(ntiles, grain, func(lo, hi int) {
		var inOff, outOff [tileBatch][4]int
		var a tileArgs
		a.offs = &d.offs[0]
		a.k = d.In
		a.cs = 4 // a row's features are contiguous: whole-vector stores
		a.flags = d.Act.flags()
		if d.In%8 == 0 {
			a.blocked = 1 // steps read consecutive floats: one offset load per 8 steps
		}
		a.inBase = unsafe.Pointer(&in[0])
		for t0 := lo; t0 < hi; t0 += tileBatch {
			nt := min(tileBatch, hi-t0)
			for t := 0; t < nt; t++ {
				for p := 0; p < 4; p++ {
					r := 4*(t0+t) + p
					inOff[t][p] = 4 * min(r, rows-1) * d.In // past the last row: repeat it (not stored)
					outOff[t][p] = 4 * r * d.Out
				}
			}
			full, tail := nt, 0
			if 4*(t0+nt) > rows {
				full, tail = nt-1, rows-4*(t0+nt-1)
			}
			for _, bg := range d.bgs {
				a.w = &d.w[bg.wOff]
				a.bias = &d.bias[bg.bOff]
				a.nb, a.nch = bg.nb, bg.nch
				a.outBase = unsafe.Pointer(&out[bg.c0])
				tiles(&a, &inOff, &outOff, full, tail)
			}
		}
	})
}
