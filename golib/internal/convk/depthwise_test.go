package convk

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/exitnet/exitnet/golib/par"
)

// dwCases: odd and multiple-of-8 channels, channel multipliers, odd sizes,
// stride 2, padding, dilation, 5×5 and rectangular kernels, planes of 1×1,
// 2×2 and 4×4 (tiles span rows), planes that are not a multiple of 8.
var dwCases = []Shape{
	{Cin: 32, H: 16, W: 16, KH: 3, KW: 3, SH: 1, SW: 1, PH: 1, PW: 1, DH: 1, DW: 1, Act: ActReLU6},
	{Cin: 96, H: 16, W: 16, KH: 3, KW: 3, SH: 2, SW: 2, PH: 1, PW: 1, DH: 1, DW: 1, Act: ActReLU6},
	{Cin: 5, H: 7, W: 9, KH: 3, KW: 3, SH: 1, SW: 1, PH: 1, PW: 1, DH: 1, DW: 1},
	{Cin: 13, H: 11, W: 7, KH: 3, KW: 3, SH: 2, SW: 2, PH: 1, PW: 1, DH: 1, DW: 1, Act: ActReLU},
	{Cin: 9, H: 10, W: 9, KH: 3, KW: 3, SH: 1, SW: 1, PH: 2, PW: 2, DH: 2, DW: 2, Act: ActReLU},
	{Cin: 3, Cout: 6, H: 9, W: 8, KH: 3, KW: 3, SH: 1, SW: 1, PH: 1, PW: 1, DH: 1, DW: 1},        // multiplier 2
	{Cin: 4, Cout: 12, H: 6, W: 5, KH: 5, KW: 5, SH: 2, SW: 1, PH: 2, PW: 2, DH: 1, DW: 1},       // multiplier 3, 5×5
	{Cin: 16, H: 2, W: 2, KH: 3, KW: 3, SH: 1, SW: 1, PH: 1, PW: 1, DH: 1, DW: 1, Act: ActReLU6}, // 2×2 plane
	{Cin: 24, H: 1, W: 1, KH: 3, KW: 3, SH: 1, SW: 1, PH: 1, PW: 1, DH: 1, DW: 1},                // 1×1 plane
	{Cin: 11, H: 4, W: 4, KH: 3, KW: 1, SH: 1, SW: 2, PH: 1, PW: 0, DH: 1, DW: 1, Act: ActReLU},  // rectangular
	{Cin: 8, H: 5, W: 6, KH: 1, KW: 1, SH: 1, SW: 1, PH: 0, PW: 0, DH: 1, DW: 1},                 // 1×1 kernel
	{Cin: 7, H: 3, W: 3, KH: 3, KW: 3, SH: 2, SW: 2, PH: 0, PW: 0, DH: 1, DW: 1, Act: ActReLU6},  // 1×1 output, no padding
}

func dwKernels() []struct {
	name string
	f    func(*dwArgs)
} {
	ks := []struct {
		name string
		f    func(*dwArgs)
	}{{"go", dwGo}}
	if useAsm {
		ks = append(ks, struct {
			name string
			f    func(*dwArgs)
		}{"avx2", dwAVX2})
	}
	return ks
}

func dwShape(s Shape) Shape {
	s.Groups = s.Cin
	if s.Cout == 0 {
		s.Cout = s.Cin
	}
	return s
}

// TestDepthwiseMatchesReference: both micro-kernels against the float64
// definition (refConv with groups = channels) and against the general
// direct kernel (Conv, one channel per group), batch 1, 3 and 257, 1 and 2
// threads, scratch full of stale values.
func TestDepthwiseMatchesReference(t *testing.T) {
	defer func(m int) { MinChunk = m }(MinChunk)
	defer par.SetThreads(par.Threads())
	defer func(f func(*dwArgs)) { dwTile = f }(dwTile)
	r := rand.New(rand.NewPCG(11, 12))
	for ci, s := range dwCases {
		s = dwShape(s)
		w := randSlice(r, s.Cout*s.KH*s.KW)
		b := randSlice(r, s.Cout)
		if ci%3 == 2 {
			b = nil
		}
		d, err := NewDepthwise(s, w, b)
		if err != nil {
			t.Fatal(err)
		}
		general, err := NewConv(s, w, b)
		if err != nil {
			t.Fatal(err)
		}
		for _, rows := range []int{1, 3, 257} {
			in := randSlice(r, rows*d.InSize())
			want := refConv(s, w, b, in, rows)
			gen := make([]float32, rows*general.OutSize())
			general.Forward(in, gen, make([]float32, general.ScratchSize(rows)), rows)
			for _, k := range dwKernels() {
				dwTile = k.f
				for _, threads := range []int{1, 2} {
					par.SetThreads(threads)
					MinChunk = 1 << 8 // exercise the parallel split
					out := make([]float32, rows*d.OutSize())
					for i := range out {
						out[i] = float32(math.NaN())
					}
					scratch := make([]float32, d.ScratchSize(threads))
					for i := range scratch {
						scratch[i] = 1e30 // stale contents must not leak into padding
					}
					d.Forward(in, out, scratch, rows)
					name := fmt.Sprintf("case %d rows %d %s threads %d (%s)", ci, rows, k.name, threads, d.Describe())
					checkClose(t, name, out, want, s.KH*s.KW)
					g64 := make([]float64, len(gen))
					for i, v := range gen {
						g64[i] = float64(v)
					}
					checkClose(t, name+" vs the general kernel", out, g64, s.KH*s.KW)
				}
			}
		}
	}
}

// TestDepthwiseSubsetEqualsFullRows: compaction, a subset of rows gives
// exactly those rows of the full run (both kernels).
func TestDepthwiseSubsetEqualsFullRows(t *testing.T) {
	defer func(f func(*dwArgs)) { dwTile = f }(dwTile)
	r := rand.New(rand.NewPCG(5, 6))
	for _, s := range []Shape{dwShape(dwCases[1]), dwShape(dwCases[3])} {
		w, b := randSlice(r, s.Cout*s.KH*s.KW), randSlice(r, s.Cout)
		d, err := NewDepthwise(s, w, b)
		if err != nil {
			t.Fatal(err)
		}
		rows := 9
		in := randSlice(r, rows*d.InSize())
		for _, k := range dwKernels() {
			dwTile = k.f
			full := make([]float32, rows*d.OutSize())
			d.Forward(in, full, make([]float32, d.ScratchSize(2)), rows)
			got := make([]float32, 3*d.OutSize())
			d.Forward(in[2*d.InSize():5*d.InSize()], got, make([]float32, d.ScratchSize(1)), 3)
			for i, v := range got {
				if v != full[2*d.OutSize()+i] {
					t.Fatalf("%s: row subset differs at %d: %v vs %v", k.name, i, v, full[2*d.OutSize()+i])
				}
			}
		}
	}
}

// TestDepthwiseNaN: a NaN input reaches only its own channel's outputs that
// read it, through ReLU6 (torch's relu6(NaN) is NaN).
func TestDepthwiseNaN(t *testing.T) {
	defer func(f func(*dwArgs)) { dwTile = f }(dwTile)
	s := dwShape(Shape{Cin: 9, H: 3, W: 4, KH: 1, KW: 1, SH: 1, SW: 1, DH: 1, DW: 1, Act: ActReLU6})
	w := make([]float32, 9)
	for i := range w {
		w[i] = 1
	}
	d, err := NewDepthwise(s, w, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := make([]float32, d.InSize())
	in[2*12+5] = float32(math.NaN())
	in[8*12+11] = float32(math.NaN())
	for _, k := range dwKernels() {
		dwTile = k.f
		out := make([]float32, d.OutSize())
		d.Forward(in, out, make([]float32, d.ScratchSize(1)), 1)
		for i, v := range out {
			if math.IsNaN(float64(v)) != (i == 2*12+5 || i == 8*12+11) {
				t.Errorf("%s: out[%d] = %v", k.name, i, v)
			}
		}
	}
}

func TestNewDepthwiseErrors(t *testing.T) {
	ok := dwShape(dwCases[0])
	for _, c := range []struct {
		s    Shape
		wlen int
	}{
		{func() Shape { s := ok; s.Groups = 1; return s }(), 32 * 9},
		{func() Shape { s := ok; s.Cout = 40; return s }(), 40 * 9},
		{func() Shape { s := ok; s.Pool = true; return s }(), 32 * 9},
		{func() Shape { s := ok; s.SH = 0; return s }(), 32 * 9},
		{func() Shape { s := ok; s.H, s.PH = 1, 0; return s }(), 32 * 9},
		{ok, 31 * 9},
	} {
		if _, err := NewDepthwise(c.s, make([]float32, c.wlen), nil); err == nil {
			t.Errorf("%+v with %d weights: no error", c.s, c.wlen)
		}
	}
}
