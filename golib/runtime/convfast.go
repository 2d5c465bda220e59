package runtime

import (
	"fmt"

	"github.com/exitnet/exitnet/golib/internal/convk"
	"github.com/exitnet/exitnet/golib/par"
)

// The direct kernels of golib/internal/convk (register-blocked AVX2+FMA tiles,
// weights packed at load, bias/activation/2×2 max-pool in the epilogue; see
// docs/design.md) and when the runtime uses them instead of im2col + GEMM.

// directConvMaxK bounds the direct convolution to layers whose
// (C_in/g)·kh·kw steps of one block group's packed weights (96 bytes a step)
// stay in L2; deeper layers go to im2col + BLAS GEMM, which blocks over K.
const directConvMaxK = 2304

// newDirectConv packs a conv2d instruction (final: shapes, act, pool2) for the
// direct kernel, or returns nil where im2col + GEMM stays: depthwise layers
// (their own kernel: one channel per group would leave 7 of 8 lanes idle)
// and K beyond directConvMaxK.
func newDirectConv(ins *instr) *convk.Conv {
	cinG := ins.inS.C / ins.groups
	if ins.groups > 1 && cinG == 1 || ins.colRows > directConvMaxK || !convkAct(ins.act) {
		return nil
	}
	c, err := convk.NewConv(convk.Shape{
		Cin: ins.inS.C, H: ins.inS.H, W: ins.inS.W, Cout: ins.convS.C,
		KH: ins.k[0], KW: ins.k[1], SH: ins.s[0], SW: ins.s[1], PH: ins.p[0], PW: ins.p[1],
		DH: ins.d[0], DW: ins.d[1], Groups: ins.groups, Act: convAct(ins.act), Pool: ins.pool2,
	}, ins.w, ins.b)
	if err != nil || c.OutH != ins.outS.H || c.OutW != ins.outS.W {
		return nil // shapes the compiler checked differently: keep the reference path
	}
	return c
}

// runDirectConv runs c on rows samples with pooled scratch for its packed input.
func runDirectConv(ws *workspace, c *convk.Conv, in, out []float32, rows int) {
	sc := ws.scratch(c.ScratchSize(rows))
	c.Forward(in, out, sc, rows)
	ws.release(sc)
}

// newDepthwise packs a depthwise conv2d for convk's channel-vectorised
// kernel, or returns nil where the scalar loop stays (activations convk's
// epilogue lacks).
func newDepthwise(ins *instr) *convk.Depthwise {
	if !convkAct(ins.act) || ins.pool2 {
		return nil
	}
	d, err := convk.NewDepthwise(convk.Shape{
		Cin: ins.inS.C, H: ins.inS.H, W: ins.inS.W, Cout: ins.outS.C,
		KH: ins.k[0], KW: ins.k[1], SH: ins.s[0], SW: ins.s[1], PH: ins.p[0], PW: ins.p[1],
		DH: ins.d[0], DW: ins.d[1], Groups: ins.groups, Act: convAct(ins.act),
	}, ins.w, ins.b)
	if err != nil || d.Ho != ins.outS.H || d.Wo != ins.outS.W {
		return nil // shapes the compiler checked differently: keep the reference path
	}
	return d
}

// dwKernel is a depthwise conv2d run by convk.Depthwise (chooseConvKernel),
// with one packed block of scratch per thread.
type dwKernel struct{ d *convk.Depthwise }

func (k dwKernel) Run(ws *workspace, in, out []float32, rows int) {
	sc := ws.scratch(k.d.ScratchSize(par.Threads()))
	k.d.Forward(in, out, sc, rows)
	ws.release(sc)
}
func (k dwKernel) Name() string { return k.d.Describe() }

// convAsLinear is a convolution with a 1×1 output run as the linear layer it
// is (newConvAsLinear).
type convAsLinear struct{ lin instr }

func (k convAsLinear) Run(_ *workspace, in, out []float32, rows int) { linear(&k.lin, in, out, rows) }
func (k convAsLinear) Name() string {
	s := fmt.Sprintf("as linear %d→%d (1×1 output: the taps that read data only)", k.lin.inS.C, k.lin.outS.C)
	if k.lin.dense != nil {
		s += ": " + k.lin.dense.Describe() + fmt.Sprintf(" from %d rows, BLAS GEMV/GEMM below", denseMinRows)
	}
	return s
}

// newConvAsLinear: a convolution (groups 1) whose output is 1×1 is a linear
// layer over the flattened input,
//
//	out[o] = b[o] + Σ_{c,y,x} W'[o][c,y,x]·in[c,y,x],  W'[o][c,y,x] = w[o,c,i,j] where y = i·dh − ph, x = j·dw − pw (0 if no tap reads (y, x)),
//
// with C_in·H·W terms instead of C_in·kh·kw: the taps that only ever read
// the zero padding are dropped (ResNet-18's layer4 at 32×32 input, 3×3 on a
// 1×1 plane: 9× fewer multiply-adds). Used when it is fewer; nil otherwise.
func newConvAsLinear(ins *instr) convKernel {
	cin, h, w := ins.inS.C, ins.inS.H, ins.inS.W
	if ins.groups != 1 || ins.pool2 || ins.convS.H != 1 || ins.convS.W != 1 || cin*h*w >= ins.colRows {
		return nil
	}
	kh, kw := ins.k[0], ins.k[1]
	f := cin * h * w
	cout := ins.convS.C
	wl := make([]float32, cout*f)
	for o := 0; o < cout; o++ {
		for c := 0; c < cin; c++ {
			for i := 0; i < kh; i++ {
				y := i*ins.d[0] - ins.p[0]
				if y < 0 || y >= h {
					continue
				}
				for j := 0; j < kw; j++ {
					x := j*ins.d[1] - ins.p[1]
					if x < 0 || x >= w {
						continue
					}
					wl[o*f+(c*h+y)*w+x] = ins.w[((o*cin+c)*kh+i)*kw+j]
				}
			}
		}
	}
	lin := instr{kind: kLinear, inS: shape{C: f, H: 1, W: 1, flat: true}, outS: shape{C: cout, H: 1, W: 1, flat: true},
		w: wl, b: ins.b, act: ins.act, name: ins.name, node: ins.node}
	lin.dense = newDense(&lin)
	return convAsLinear{lin}
}

// newDense packs a linear instruction for convk.Dense, used from 4 rows on
// (below, GEMV streams the weights once per row and wins).
func newDense(ins *instr) *convk.Dense {
	if !convkAct(ins.act) {
		return nil
	}
	d, err := convk.NewDense(ins.inS.C, ins.outS.C, ins.w, ins.b, convAct(ins.act))
	if err != nil {
		return nil
	}
	return d
}

// denseMinRows is the least batch given to convk.Dense.
const denseMinRows = 4

// convkAct reports whether convk's epilogue implements a (the compiler also
// fuses sigmoid, silu, hardswish, ... into convolutions; those keep the
// im2col path until convk has them).
func convkAct(a activation) bool { return a == actNone || a == actReLU || a == actReLU6 }

func convAct(a activation) convk.Act {
	switch a {
	case actReLU:
		return convk.ActReLU
	case actReLU6:
		return convk.ActReLU6
	}
	return convk.ActNone
}

// directKernel is a conv2d run by convk's direct kernel (chooseConvKernel).
type directKernel struct {
	c   *convk.Conv
	ins *instr
}

// Run: a pointwise convolution of a 1×1 plane is a linear layer; below 4
// samples the 4-pixel tile would compute mostly padding (MobileNetV2's last
// five blocks at 32×32, batch 1: a quarter of its MACs at a quarter of the
// tile's rate), so it takes linear's GEMV path, as linear layers do.
func (k directKernel) Run(ws *workspace, in, out []float32, rows int) {
	if rows < denseMinRows && k.c.H == 1 && k.c.W == 1 && k.c.KH == 1 && k.c.KW == 1 &&
		k.c.PH == 0 && k.c.PW == 0 && k.c.Groups == 1 {
		linear(k.ins, in, out, rows)
		return
	}
	runDirectConv(ws, k.c, in, out, rows)
}
func (k directKernel) Name() string {
	s := k.c.Describe()
	if k.c.H == 1 && k.c.W == 1 && k.c.KH == 1 && k.c.KW == 1 && k.c.PH == 0 && k.c.PW == 0 && k.c.Groups == 1 {
		s += fmt.Sprintf(" from %d rows, BLAS GEMV/GEMM below", denseMinRows)
	}
	return s
}

// LayerKernel says which kernel a compiled conv2d or linear layer runs.
type LayerKernel struct {
	Block  string // "stage" or "head"
	Index  int    // of the stage or head
	Node   string // the graph node's name
	Op     string // "conv2d" or "linear"
	Kernel string // the kernel chosen at load, with its parameters
	In     [3]int // per-sample input C, H, W (linear: features, 1, 1)
	Out    [3]int // per-sample output C, H, W (after a fused 2×2 max-pool)
}

func (l LayerKernel) String() string {
	return fmt.Sprintf("%s %d: %s (%s %v→%v): %s", l.Block, l.Index, l.Node, l.Op, l.In, l.Out, l.Kernel)
}

// Kernels lists, per compiled layer that has a choice (conv2d and linear) in
// stage then head order, the kernel chosen at load, for debugging and profiles.
func (m *Model) Kernels() []LayerKernel {
	var out []LayerKernel
	list := func(block string, progs []program) {
		for k := range progs {
			for i := range progs[k].code {
				ins := &progs[k].code[i]
				l := LayerKernel{Block: block, Index: k, Node: ins.node,
					In: [3]int{ins.inS.C, ins.inS.H, ins.inS.W}, Out: [3]int{ins.outS.C, ins.outS.H, ins.outS.W}}
				switch {
				case ins.kind == kConv && ins.conv != nil:
					l.Op, l.Kernel = "conv2d", ins.conv.Name()
				case ins.kind == kLinear && ins.dense != nil:
					l.Op, l.Kernel = "linear", fmt.Sprintf("%s from %d rows, BLAS GEMV/GEMM below", ins.dense.Describe(), denseMinRows)
				case ins.kind == kLinear:
					l.Op, l.Kernel = "linear", "BLAS GEMV/GEMM"
				default:
					continue
				}
				out = append(out, l)
			}
		}
	}
	list("stage", m.stages)
	list("head", m.heads)
	return out
}
