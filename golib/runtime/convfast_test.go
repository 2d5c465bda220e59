package runtime

import (
	"math"
	"strings"
	"testing"

	"github.com/exitnet/exitnet/golib/par"
)

// directCase builds a conv2d instruction as the compiler does (pool2 fused
// when asked) with random weights.
func directCase(seed uint64, cin, h, w, cout, kh, kw, sh, sw, ph, pw, dh, dw, g int, act activation, pool bool, bias bool) *instr {
	o := shape{C: cout, H: convOut(h, kh, sh, ph, dh), W: convOut(w, kw, sw, pw, dw)}
	ins := &instr{kind: kConv, inS: shape{C: cin, H: h, W: w}, outS: o, convS: o, groups: g,
		k: [2]int{kh, kw}, s: [2]int{sh, sw}, p: [2]int{ph, pw}, d: [2]int{dh, dw}, act: act,
		colRows: cin / g * kh * kw}
	ins.oneByOne = kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0
	ins.w = randInput(seed, cout, cin/g*kh*kw)
	if bias {
		ins.b = randInput(seed+1, 1, cout)
	}
	if pool {
		ins.pool2 = true
		ins.outS = shape{C: cout, H: o.H / 2, W: o.W / 2}
	}
	return ins
}

// TestDirectConvMatchesIm2col: the direct kernel against the im2col + GEMM
// path on ragged shapes (odd channels and sizes, stride 2, padding, dilation,
// groups, fused activations and pool), batch 1 and 257, 1 and 2 threads.
func TestDirectConvMatchesIm2col(t *testing.T) {
	defer par.SetThreads(par.Threads())
	cases := []*instr{
		directCase(1, 1, 28, 28, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, actReLU, true, true),
		directCase(2, 5, 9, 7, 13, 3, 3, 1, 1, 1, 1, 1, 1, 1, actNone, false, true),
		directCase(3, 7, 11, 13, 17, 3, 3, 2, 2, 1, 1, 1, 1, 1, actReLU6, false, false),
		directCase(4, 12, 10, 9, 20, 3, 2, 1, 2, 2, 0, 2, 1, 1, actReLU, false, true),
		directCase(5, 12, 9, 9, 18, 3, 3, 1, 1, 1, 1, 1, 1, 3, actReLU, true, true),
		directCase(6, 16, 7, 7, 40, 1, 1, 1, 1, 0, 0, 1, 1, 1, actNone, false, true),
		directCase(7, 3, 15, 15, 24, 5, 5, 2, 2, 2, 2, 1, 1, 1, actNone, true, false),
	}
	for ci, ins := range cases {
		c := newDirectConv(ins)
		if c == nil {
			t.Fatalf("case %d: no direct kernel", ci)
		}
		for _, rows := range []int{1, 257} {
			x := randInput(uint64(100+ci), rows, ins.inS.size())
			for _, threads := range []int{1, 2} {
				par.SetThreads(threads)
				want := make([]float32, rows*ins.outS.size())
				got := make([]float32, rows*ins.outS.size())
				ws := &workspace{}
				conv(ws, ins, x, want, rows)
				runDirectConv(ws, c, x, got, rows)
				for i := range want {
					if d := math.Abs(float64(got[i] - want[i])); d > 1e-4*(1+math.Abs(float64(want[i]))) {
						t.Fatalf("case %d (%s) rows %d threads %d: [%d] direct %v im2col %v",
							ci, c.Describe(), rows, threads, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// TestDepthwiseMatchesIm2col: convk's depthwise kernel against the im2col +
// GEMM path and the scalar depthwise loop (odd channels and sizes, stride 2,
// padding, dilation, channel multiplier 2, 1×1 and 2×2 planes, fused
// activations), batch 1 and 257, 1 and 2 threads.
func TestDepthwiseMatchesIm2col(t *testing.T) {
	defer par.SetThreads(par.Threads())
	cases := []*instr{
		directCase(11, 32, 16, 16, 32, 3, 3, 1, 1, 1, 1, 1, 1, 32, actReLU6, false, true),
		directCase(12, 13, 11, 7, 13, 3, 3, 2, 2, 1, 1, 1, 1, 13, actReLU, false, true),
		directCase(13, 9, 10, 9, 9, 3, 3, 1, 1, 2, 2, 2, 2, 9, actNone, false, false),
		directCase(14, 5, 9, 8, 10, 3, 3, 1, 1, 1, 1, 1, 1, 5, actNone, false, true),
		directCase(15, 24, 2, 2, 24, 3, 3, 1, 1, 1, 1, 1, 1, 24, actReLU6, false, true),
		directCase(16, 16, 1, 1, 16, 3, 3, 1, 1, 1, 1, 1, 1, 16, actReLU6, false, true),
	}
	for ci, ins := range cases {
		k, ok := chooseConvKernel(ins).(dwKernel)
		if !ok {
			t.Fatalf("case %d: chooseConvKernel gave %s", ci, chooseConvKernel(ins).Name())
		}
		for _, rows := range []int{1, 257} {
			x := randInput(uint64(200+ci), rows, ins.inS.size())
			for _, threads := range []int{1, 2} {
				par.SetThreads(threads)
				im2col := make([]float32, rows*ins.outS.size())
				scalar := make([]float32, rows*ins.outS.size())
				got := make([]float32, rows*ins.outS.size())
				ws := &workspace{}
				conv(ws, ins, x, im2col, rows)
				depthwise(ins, x, scalar, rows)
				k.Run(ws, x, got, rows)
				for i := range got {
					for _, want := range []float32{im2col[i], scalar[i]} {
						if d := math.Abs(float64(got[i] - want)); d > 1e-4*(1+math.Abs(float64(want))) {
							t.Fatalf("case %d (%s) rows %d threads %d: [%d] %v, im2col %v, scalar %v",
								ci, k.Name(), rows, threads, i, got[i], im2col[i], scalar[i])
						}
					}
				}
			}
		}
	}
}

// TestPointwiseOneByOnePlane: a 1×1 convolution of a 1×1 plane below 4
// samples (linear's GEMV/GEMM path) and from 4 (the direct kernel) against
// the im2col path, with bias and fused activation.
func TestPointwiseOneByOnePlane(t *testing.T) {
	for _, act := range []activation{actNone, actReLU6} {
		ins := directCase(21, 37, 1, 1, 29, 1, 1, 1, 1, 0, 0, 1, 1, 1, act, false, true)
		k := chooseConvKernel(ins)
		if !strings.Contains(k.Name(), "GEMV") {
			t.Fatalf("kernel %s", k.Name())
		}
		for _, rows := range []int{1, 2, 3, 4, 9} {
			x := randInput(uint64(rows), rows, ins.inS.size())
			want := make([]float32, rows*ins.outS.size())
			got := make([]float32, rows*ins.outS.size())
			ws := &workspace{}
			conv(ws, ins, x, want, rows)
			k.Run(ws, x, got, rows)
			for i := range want {
				if d := math.Abs(float64(got[i] - want[i])); d > 1e-4*(1+math.Abs(float64(want[i]))) {
					t.Fatalf("act %d rows %d: [%d] %v, im2col %v", act, rows, i, got[i], want[i])
				}
			}
		}
	}
}

// TestConvAsLinear: convolutions with a 1×1 output whose taps partly read
// only padding run as linear layers over the flattened input; against the
// im2col path, rows 1 (GEMV) to 9 (dense kernel), with bias and activation.
func TestConvAsLinear(t *testing.T) {
	cases := []*instr{
		directCase(31, 9, 1, 1, 12, 3, 3, 1, 1, 1, 1, 1, 1, 1, actReLU, false, true),  // 3×3 pad 1 on 1×1: the centre tap
		directCase(32, 6, 2, 2, 10, 3, 3, 2, 2, 1, 1, 1, 1, 1, actNone, false, true),  // stride 2 on 2×2: 4 of 9 taps
		directCase(33, 4, 1, 3, 7, 3, 3, 1, 3, 1, 1, 1, 1, 1, actReLU6, false, false), // rectangular input
		directCase(34, 5, 1, 1, 9, 3, 3, 1, 1, 2, 2, 2, 2, 1, actNone, false, true),   // dilation 2, pad 2 (also im2col with a tap no column reads: it used to panic)
	}
	for ci, ins := range cases {
		k, ok := chooseConvKernel(ins).(convAsLinear)
		if !ok {
			t.Fatalf("case %d: chooseConvKernel gave %s", ci, chooseConvKernel(ins).Name())
		}
		for _, rows := range []int{1, 3, 4, 9} {
			x := randInput(uint64(300+ci+rows), rows, ins.inS.size())
			want := make([]float32, rows*ins.outS.size())
			got := make([]float32, rows*ins.outS.size())
			ws := &workspace{}
			conv(ws, ins, x, want, rows)
			k.Run(ws, x, got, rows)
			for i := range want {
				if d := math.Abs(float64(got[i] - want[i])); d > 1e-4*(1+math.Abs(float64(want[i]))) {
					t.Fatalf("case %d (%s) rows %d: [%d] %v, im2col %v", ci, k.Name(), rows, i, got[i], want[i])
				}
			}
		}
	}
	// a 1×1 output that reads every tap keeps the direct kernel
	if _, ok := chooseConvKernel(directCase(35, 4, 3, 3, 8, 3, 3, 1, 1, 0, 0, 1, 1, 1, actNone, false, true)).(convAsLinear); ok {
		t.Error("3×3 unpadded on 3×3 taken as linear (no taps saved)")
	}
}

func TestDenseMatchesLinear(t *testing.T) {
	for _, sz := range [][2]int{{784, 512}, {13, 7}, {9, 33}} {
		for _, act := range []activation{actNone, actReLU, actReLU6} {
			ins := &instr{kind: kLinear, inS: shape{C: sz[0], H: 1, W: 1, flat: true}, outS: shape{C: sz[1], H: 1, W: 1, flat: true},
				w: randInput(1, sz[1], sz[0]), b: randInput(2, 1, sz[1]), act: act}
			d := newDense(ins)
			for _, rows := range []int{4, 257} {
				x := randInput(3, rows, sz[0])
				want := make([]float32, rows*sz[1])
				got := make([]float32, rows*sz[1])
				linear(ins, x, want, rows)
				d.Forward(x, got, rows)
				for i := range want {
					if diff := math.Abs(float64(got[i] - want[i])); diff > 1e-4*(1+math.Abs(float64(want[i]))) {
						t.Fatalf("%v act %d rows %d: [%d] dense %v linear %v", sz, act, rows, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// TestKernelsSaysWhichKernel: the small CNN's convolutions take the direct
// kernel (with the fused ReLU and pool), its linear layer convk's dense kernel.
func TestKernelsSaysWhichKernel(t *testing.T) {
	ks := benchModels(t)["cnn"].Kernels()
	direct, dense := 0, 0
	for _, k := range ks {
		if k.Op == "conv2d" && strings.Contains(k.Kernel, "direct 3x3") && strings.Contains(k.Kernel, "+relu +maxpool2x2") {
			direct++
		}
		if k.Op == "linear" && strings.Contains(k.Kernel, "dense 1152→10") && k.In == [3]int{1152, 1, 1} && k.Out == [3]int{10, 1, 1} {
			dense++
		}
	}
	if direct != 3 || dense != 1 {
		t.Errorf("Kernels() = %q: want 3 direct convolutions with relu and pool, 1 dense", ks)
	}
}
