package convk

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/exitnet/exitnet/golib/par"
)

// refConv is the float64 definition (doc.go), pool and activation included.
func refConv(s Shape, w, b, in []float32, rows int) []float64 {
	ho := outLen(s.H, s.KH, s.SH, s.PH, s.DH)
	wo := outLen(s.W, s.KW, s.SW, s.PW, s.DW)
	cinG, coutG := s.Cin/s.Groups, s.Cout/s.Groups
	conv := make([]float64, rows*s.Cout*ho*wo)
	for n := 0; n < rows; n++ {
		for o := 0; o < s.Cout; o++ {
			g := o / coutG
			for y := 0; y < ho; y++ {
				for x := 0; x < wo; x++ {
					var acc float64
					if b != nil {
						acc = float64(b[o])
					}
					for c := 0; c < cinG; c++ {
						for i := 0; i < s.KH; i++ {
							iy := y*s.SH - s.PH + i*s.DH
							if iy < 0 || iy >= s.H {
								continue
							}
							for j := 0; j < s.KW; j++ {
								ix := x*s.SW - s.PW + j*s.DW
								if ix < 0 || ix >= s.W {
									continue
								}
								acc += float64(w[((o*cinG+c)*s.KH+i)*s.KW+j]) *
									float64(in[((n*s.Cin+g*cinG+c)*s.H+iy)*s.W+ix])
							}
						}
					}
					conv[((n*s.Cout+o)*ho+y)*wo+x] = act64(acc, s.Act)
				}
			}
		}
	}
	if !s.Pool {
		return conv
	}
	ph, pw := ho/2, wo/2
	out := make([]float64, rows*s.Cout*ph*pw)
	for pl := 0; pl < rows*s.Cout; pl++ {
		for y := 0; y < ph; y++ {
			for x := 0; x < pw; x++ {
				m := math.Inf(-1)
				for u := 0; u < 2; u++ {
					for v := 0; v < 2; v++ {
						m = math.Max(m, conv[(pl*ho+2*y+u)*wo+2*x+v])
					}
				}
				out[(pl*ph+y)*pw+x] = m
			}
		}
	}
	return out
}

func act64(v float64, a Act) float64 {
	switch a {
	case ActReLU:
		return math.Max(v, 0)
	case ActReLU6:
		return math.Min(math.Max(v, 0), 6)
	}
	return v
}

func randSlice(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

// checkClose compares got with the float64 reference: |Δ| ≤ 1e-5·(1 + Σ|terms|)
// is what float32 accumulation of k terms allows; we use a scale of the
// typical term magnitude √k.
func checkClose(t *testing.T, name string, got []float32, want []float64, k int) {
	t.Helper()
	tol := 2e-6 * float64(k)
	bad := 0
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= tol*(1+math.Abs(want[i]))) {
			if bad < 3 {
				t.Errorf("%s: [%d] got %v want %v", name, i, got[i], want[i])
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d values off", name, bad, len(want))
	}
}

var convCases = []Shape{
	{Cin: 1, H: 28, W: 28, Cout: 32, KH: 3, KW: 3, SH: 1, SW: 1, PH: 1, PW: 1, DH: 1, DW: 1, Groups: 1, Act: ActReLU, Pool: true},
	{Cin: 32, H: 14, W: 14, Cout: 64, KH: 3, KW: 3, SH: 1, SW: 1, PH: 1, PW: 1, DH: 1, DW: 1, Groups: 1, Act: ActReLU, Pool: true},
	{Cin: 5, H: 9, W: 7, Cout: 13, KH: 3, KW: 3, SH: 1, SW: 1, PH: 1, PW: 1, DH: 1, DW: 1, Groups: 1},
	{Cin: 7, H: 11, W: 13, Cout: 17, KH: 3, KW: 3, SH: 2, SW: 2, PH: 1, PW: 1, DH: 1, DW: 1, Groups: 1, Act: ActReLU6},
	{Cin: 12, H: 10, W: 9, Cout: 20, KH: 3, KW: 2, SH: 1, SW: 2, PH: 2, PW: 0, DH: 2, DW: 1, Groups: 1, Act: ActReLU},
	{Cin: 12, H: 9, W: 9, Cout: 18, KH: 3, KW: 3, SH: 1, SW: 1, PH: 1, PW: 1, DH: 1, DW: 1, Groups: 3, Act: ActReLU, Pool: true},
	{Cin: 16, H: 7, W: 7, Cout: 40, KH: 1, KW: 1, SH: 1, SW: 1, PH: 0, PW: 0, DH: 1, DW: 1, Groups: 1},
	{Cin: 9, H: 8, W: 8, Cout: 9, KH: 3, KW: 3, SH: 1, SW: 1, PH: 1, PW: 1, DH: 1, DW: 1, Groups: 9}, // depthwise through the general kernel
	{Cin: 3, H: 15, W: 15, Cout: 24, KH: 5, KW: 5, SH: 2, SW: 2, PH: 2, PW: 2, DH: 1, DW: 1, Groups: 1, Pool: true},
	{Cin: 11, H: 5, W: 6, Cout: 7, KH: 1, KW: 1, SH: 2, SW: 1, PH: 0, PW: 1, DH: 1, DW: 1, Groups: 1, Act: ActReLU},
	// unpadded: the input is read in place (NCHW), strided, grouped, dilated, pooled
	{Cin: 12, H: 9, W: 8, Cout: 10, KH: 1, KW: 1, SH: 2, SW: 2, PH: 0, PW: 0, DH: 1, DW: 1, Groups: 2, Act: ActReLU6},
	{Cin: 6, H: 10, W: 11, Cout: 9, KH: 3, KW: 2, SH: 1, SW: 2, PH: 0, PW: 0, DH: 2, DW: 1, Groups: 3, Pool: true},
	// 1×1 outputs: a pixel's channels are contiguous (the whole-vector store path)
	{Cin: 8, H: 3, W: 3, Cout: 16, KH: 3, KW: 3, SH: 1, SW: 1, PH: 0, PW: 0, DH: 1, DW: 1, Groups: 1, Act: ActReLU},
	{Cin: 3, H: 2, W: 2, Cout: 24, KH: 3, KW: 3, SH: 1, SW: 1, PH: 1, PW: 1, DH: 1, DW: 1, Groups: 1, Pool: true},
}

func TestConvMatchesReference(t *testing.T) {
	defer func(m, l int) { MinChunk, l2Budget = m, l }(MinChunk, l2Budget)
	l2Budget = 1 // one sample per chunk: chunk boundaries inside every worker
	defer par.SetThreads(par.Threads())
	r := rand.New(rand.NewPCG(1, 2))
	kernels := []struct {
		name string
		f    func(*tileArgs)
	}{{"go", tileGo}}
	if useAsm {
		kernels = append(kernels, struct {
			name string
			f    func(*tileArgs)
		}{"avx2", tileAVX2})
	}
	defer func(f func(*tileArgs)) { tile = f }(tile)
	for ci, s := range convCases {
		cinG := s.Cin / s.Groups
		w := randSlice(r, s.Cout*cinG*s.KH*s.KW)
		b := randSlice(r, s.Cout)
		if ci%3 == 2 {
			b = nil
		}
		c, err := NewConv(s, w, b)
		if err != nil {
			t.Fatal(err)
		}
		for _, rows := range []int{1, 3, 257} {
			if rows == 257 && s.H*s.W*s.Cin*s.Cout > 100000 {
				continue // keep the float64 reference quick
			}
			in := randSlice(r, rows*c.InSize())
			want := refConv(s, w, b, in, rows)
			for _, kc := range kernels {
				tile = kc.f
				for _, threads := range []int{1, 2} {
					par.SetThreads(threads)
					MinChunk = 1 << 10 // exercise the parallel split
					out := make([]float32, rows*c.OutSize())
					for i := range out {
						out[i] = float32(math.NaN())
					}
					scratch := make([]float32, c.ScratchSize(rows))
					for i := range scratch {
						scratch[i] = 1e30 // stale contents must not leak into padding
					}
					c.Forward(in, out, scratch, rows)
					checkClose(t, fmt.Sprintf("case %d rows %d %s threads %d (%s)", ci, rows, kc.name, threads, c.Describe()),
						out, want, cinG*s.KH*s.KW)
				}
			}
		}
	}
}

func TestConvSubsetEqualsFullRows(t *testing.T) {
	// compaction: running a subset of rows gives exactly those rows of the full
	// run (packed input, and input read in place)
	r := rand.New(rand.NewPCG(3, 4))
	for _, s := range []Shape{convCases[1], convCases[10]} {
		w, b := randSlice(r, s.Cout*s.Cin/s.Groups*s.KH*s.KW), randSlice(r, s.Cout)
		c, err := NewConv(s, w, b)
		if err != nil {
			t.Fatal(err)
		}
		rows := 9
		in := randSlice(r, rows*c.InSize())
		full := make([]float32, rows*c.OutSize())
		c.Forward(in, full, make([]float32, c.ScratchSize(rows)), rows)
		sub := in[2*c.InSize() : 5*c.InSize()]
		got := make([]float32, 3*c.OutSize())
		c.Forward(sub, got, make([]float32, c.ScratchSize(3)), 3)
		for i, v := range got {
			if v != full[2*c.OutSize()+i] {
				t.Fatalf("%s: row subset differs at %d: %v vs %v", c.Describe(), i, v, full[2*c.OutSize()+i])
			}
		}
	}
}

func TestNaNPropagates(t *testing.T) {
	// groups = channels, so a NaN reaches only its own channel (NaN·0 is NaN)
	s := Shape{Cin: 8, H: 4, W: 4, Cout: 8, KH: 1, KW: 1, SH: 1, SW: 1, DH: 1, DW: 1, Groups: 8, Act: ActReLU, Pool: true}
	w := make([]float32, 8)
	for i := range w {
		w[i] = 1
	}
	c, _ := NewConv(s, w, nil)
	in := make([]float32, c.InSize())
	for i := range in {
		in[i] = -1
	}
	in[1*16+0*4+1] = float32(math.NaN()) // channel 1, pixel (0,1): pooled (0,0)
	in[5*16+3*4+3] = float32(math.NaN()) // channel 5, pixel (3,3): pooled (1,1)
	out := make([]float32, c.OutSize())
	c.Forward(in, out, make([]float32, c.ScratchSize(1)), 1)
	for ch := 0; ch < 8; ch++ {
		for p := 0; p < 4; p++ {
			v := out[ch*4+p]
			wantNaN := (ch == 1 && p == 0) || (ch == 5 && p == 3)
			if math.IsNaN(float64(v)) != wantNaN || (!wantNaN && v != 0) {
				t.Errorf("channel %d pooled %d: %v (NaN expected %v)", ch, p, v, wantNaN)
			}
		}
	}
}

func TestNewConvErrors(t *testing.T) {
	good := convCases[2]
	for _, tc := range []struct {
		mod  func(*Shape)
		wlen int
	}{
		{func(s *Shape) { s.Groups = 2 }, -1},
		{func(s *Shape) { s.KH = 0 }, -1},
		{func(s *Shape) { s.H = 1; s.PH = 0 }, -1},
		{func(s *Shape) {}, 7},
	} {
		s := good
		tc.mod(&s)
		n := s.Cout * s.Cin * s.KH * s.KW
		if tc.wlen >= 0 {
			n = tc.wlen
		}
		if _, err := NewConv(s, make([]float32, max(n, 0)), nil); err == nil {
			t.Errorf("%+v: no error", s)
		}
	}
}

func TestDenseMatchesReference(t *testing.T) {
	defer func(m int) { MinChunk = m }(MinChunk)
	defer par.SetThreads(par.Threads())
	defer func(f func(*tileArgs)) { tile = f }(tile)
	r := rand.New(rand.NewPCG(7, 8))
	for _, sz := range [][2]int{{784, 512}, {13, 7}, {64, 10}, {9, 33}} {
		w, b := randSlice(r, sz[0]*sz[1]), randSlice(r, sz[1])
		for _, act := range []Act{ActNone, ActReLU, ActReLU6} {
			d, err := NewDense(sz[0], sz[1], w, b, act)
			if err != nil {
				t.Fatal(err)
			}
			for _, rows := range []int{1, 5, 257} {
				x := randSlice(r, rows*sz[0])
				want := make([]float64, rows*sz[1])
				for n := 0; n < rows; n++ {
					for o := 0; o < sz[1]; o++ {
						acc := float64(b[o])
						for k := 0; k < sz[0]; k++ {
							acc += float64(w[o*sz[0]+k]) * float64(x[n*sz[0]+k])
						}
						want[n*sz[1]+o] = act64(acc, act)
					}
				}
				for _, f := range []func(*tileArgs){tileGo, tileAVX2} {
					tile = f
					par.SetThreads(2)
					MinChunk = 1 << 10
					got := make([]float32, rows*sz[1])
					d.Forward(x, got, rows)
					checkClose(t, fmt.Sprintf("dense %v rows %d act %d", sz, rows, act), got, want, sz[0])
				}
			}
		}
	}
	if _, err := NewDense(3, 2, make([]float32, 5), nil, ActNone); err == nil {
		t.Error("NewDense with 5 weights for 3→2: no error")
	}
}
