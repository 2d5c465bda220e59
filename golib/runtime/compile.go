package runtime

import (
	"fmt"

	"github.com/exitnet/exitnet/golib/xerr"
	"gorgonia.org/tensor"
)

// opKind is the kernel an instruction runs.
type opKind uint8

const (
	kConv      opKind = iota // im2col + GEMM (or GEMM on the input for 1×1 convolutions)
	kDepthwise               // direct kernel, one input channel per group
	kLinear                  // GEMM y = x·Wᵀ + b
	kAct                     // relu / relu6 alone (in place or out of place)
	kMaxPool
	kAvgPool
	kGAP // adaptive average pool to 1×1
	kAdd // residual sum out = in + in2
	kCopy
)

// activation applied after an instruction's main computation (fused).
type activation uint8

const (
	actNone activation = iota
	actReLU
	actReLU6
)

// instr is one step of a compiled program. Buffers are workspace slots; -1 is
// the caller's input.
type instr struct {
	kind         opKind
	in, in2, out int
	inS, outS    shape
	act          activation

	w, b       []float32 // weights (conv: [C_out, C_in/g, kh, kw]; linear: [out, in]); b may be nil
	groups     int
	k, s, p, d [2]int
	countPad   bool
	macs       int64 // per sample
	name       string
	oneByOne   bool  // 1×1, stride 1, padding 0: the input is already the im2col matrix
	colRows    int   // (C_in/g)·kh·kw
	pool2      bool  // a following 2×2 stride-2 max-pool is fused into the epilogue
	convS      shape // the convolution's own output (before the fused pool)
}

// program is a compiled stage or head.
type program struct {
	code    []instr
	in, out int
	outS    shape
	macs    int64 // per sample
}

// planner hands out workspace buffer slots, reusing released ones.
type planner struct {
	sizes []int // per-sample elements per slot (max over its uses)
	free  []int
}

func (p *planner) alloc(size int) int {
	if n := len(p.free); n > 0 {
		id := p.free[n-1]
		p.free = p.free[:n-1]
		p.sizes[id] = max(p.sizes[id], size)
		return id
	}
	p.sizes = append(p.sizes, size)
	return len(p.sizes) - 1
}

func (p *planner) release(id int) {
	if id >= 0 {
		p.free = append(p.free, id)
	}
}

// compiler turns the JSON graph into programs, checking shapes and weights.
type compiler struct {
	weights map[string]*tensor.Dense
	plan    planner
	code    []instr
}

// weight returns the named tensor's data after checking its shape.
func (c *compiler) weight(where, name string, want ...int) ([]float32, error) {
	t, ok := c.weights[name]
	if !ok {
		return nil, xerr.IO("%s: weight %q is not in the file", where, name)
	}
	got := t.Shape()
	okShape := len(got) == len(want)
	for i := 0; okShape && i < len(want); i++ {
		okShape = got[i] == want[i]
	}
	if !okShape {
		return nil, xerr.IO("%s: weight %q has shape %v, want %v", where, name, []int(got), want)
	}
	return t.Data().([]float32), nil
}

func (c *compiler) bias(where, name string, n int) ([]float32, error) {
	if name == "" {
		return nil, nil
	}
	return c.weight(where, name, n)
}

func checkAct(where string, s shape) error {
	if s.size() > maxActivation {
		return xerr.IO("%s: output %v has more than %d elements per sample", where, s, maxActivation)
	}
	return nil
}

// convOut is the output length of a window op: ⌊(in + 2p − d(k−1) − 1)/s⌋ + 1.
func convOut(in, k, s, p, d int) int {
	span := in + 2*p - d*(k-1) - 1
	if span < 0 {
		return 0
	}
	return span/s + 1
}

// isPool2x2 reports a max-pool that conv can fuse: kernel 2×2, stride 2 (or
// absent), no padding. With ceil_mode it differs from floor only on odd sizes,
// so it is fused only without ceil_mode.
func isPool2x2(op OpSpec) bool {
	if op.Op != "maxpool2d" || op.CeilMode || len(op.Kernel) != 2 || op.Kernel[0] != 2 || op.Kernel[1] != 2 {
		return false
	}
	if len(op.Stride) != 0 && (len(op.Stride) != 2 || op.Stride[0] != 2 || op.Stride[1] != 2) {
		return false
	}
	return len(op.Padding) == 0 || (len(op.Padding) == 2 && op.Padding[0] == 0 && op.Padding[1] == 0)
}

// poolOutCeil is torch's pooled length with ceil_mode=True:
// ⌈(in + 2p − k)/s⌉ + 1, minus one when the last window would start in the
// right padding.
func poolOutCeil(in, k, s, p int) int {
	span := in + 2*p - k
	if span < 0 {
		return 0
	}
	o := (span+s-1)/s + 1
	if (o-1)*s >= in+p {
		o--
	}
	return o
}

// ops compiles a list of ops reading buffer in (owned: this list may overwrite
// and release it) with shape s. It returns the output buffer, whether the
// caller owns it, and its shape.
func (c *compiler) ops(where string, list []OpSpec, in int, owned bool, s shape) (int, bool, shape, error) {
	for i := 0; i < len(list); i++ {
		op := list[i]
		at := fmt.Sprintf("%s.%d (%s)", where, i, op.Op)
		// A relu/relu6 directly after conv/linear/residual is fused into it.
		fuse := func(ins *instr) {
			if i+1 < len(list) {
				switch list[i+1].Op {
				case "relu":
					ins.act = actReLU
					i++
				case "relu6":
					ins.act = actReLU6
					i++
				}
			}
		}
		switch op.Op {
		case "conv2d":
			if s.flat {
				return 0, false, s, xerr.IO("%s: input is flat %v, conv2d needs [C, H, W]", at, s)
			}
			k, err := pair(at, "kernel", op.Kernel, -1, 1, maxDim)
			if err != nil {
				return 0, false, s, err
			}
			st, err := pair(at, "stride", op.Stride, 1, 1, maxDim)
			if err != nil {
				return 0, false, s, err
			}
			pd, err := pair(at, "padding", op.Padding, 0, 0, maxDim)
			if err != nil {
				return 0, false, s, err
			}
			dl, err := pair(at, "dilation", op.Dilation, 1, 1, maxDim)
			if err != nil {
				return 0, false, s, err
			}
			g := max(op.Groups, 1)
			if op.InChannels != s.C {
				return 0, false, s, xerr.IO("%s: in_channels %d but the input has %d channels", at, op.InChannels, s.C)
			}
			if op.OutChannels < 1 || op.OutChannels > maxDim || g > s.C || s.C%g != 0 || op.OutChannels%g != 0 {
				return 0, false, s, xerr.IO("%s: out_channels %d, groups %d do not divide in_channels %d / out_channels", at, op.OutChannels, g, s.C)
			}
			if k[0]*k[1] > maxDim {
				return 0, false, s, xerr.IO("%s: kernel %v too large", at, k)
			}
			o := shape{C: op.OutChannels, H: convOut(s.H, k[0], st[0], pd[0], dl[0]), W: convOut(s.W, k[1], st[1], pd[1], dl[1])}
			if o.H < 1 || o.W < 1 {
				return 0, false, s, xerr.IO("%s: kernel %v (dilation %v, padding %v) larger than the input %v", at, k, dl, pd, s)
			}
			if err := checkAct(at, o); err != nil {
				return 0, false, s, err
			}
			cing := s.C / g
			w, err := c.weight(at, op.Weight, op.OutChannels, cing, k[0], k[1])
			if err != nil {
				return 0, false, s, err
			}
			b, err := c.bias(at, op.Bias, op.OutChannels)
			if err != nil {
				return 0, false, s, err
			}
			ins := instr{kind: kConv, in: in, inS: s, outS: o, w: w, b: b, groups: g, k: k, s: st, p: pd, d: dl,
				name: at, colRows: cing * k[0] * k[1]}
			ins.macs = int64(o.C) * int64(o.H*o.W) * int64(cing*k[0]*k[1])
			if cing == 1 && g > 1 {
				ins.kind = kDepthwise
			} else if k == [2]int{1, 1} && st == [2]int{1, 1} && pd == [2]int{0, 0} {
				ins.oneByOne = true
			}
			fuse(&ins)
			ins.convS = o
			// conv [→ relu] → maxpool 2×2/2 (floor): pool in the epilogue, so the
			// full-size output is never written
			if ins.kind == kConv && i+1 < len(list) && isPool2x2(list[i+1]) && o.H >= 2 && o.W >= 2 {
				ins.pool2 = true
				o = shape{C: o.C, H: o.H / 2, W: o.W / 2}
				ins.outS = o
				i++
			}
			ins.out = c.plan.alloc(o.size())
			c.code = append(c.code, ins)
			if owned {
				c.plan.release(in)
			}
			in, owned, s = ins.out, true, o
		case "linear":
			if !s.flat {
				return 0, false, s, xerr.IO("%s: input %v is not flat (add a Flatten before Linear)", at, s)
			}
			if op.InFeatures != s.C {
				return 0, false, s, xerr.IO("%s: in_features %d but the input has %d features", at, op.InFeatures, s.C)
			}
			if op.OutFeatures < 1 || op.OutFeatures > maxDim {
				return 0, false, s, xerr.IO("%s: out_features %d outside [1, %d]", at, op.OutFeatures, maxDim)
			}
			w, err := c.weight(at, op.Weight, op.OutFeatures, op.InFeatures)
			if err != nil {
				return 0, false, s, err
			}
			b, err := c.bias(at, op.Bias, op.OutFeatures)
			if err != nil {
				return 0, false, s, err
			}
			o := shape{C: op.OutFeatures, H: 1, W: 1, flat: true}
			ins := instr{kind: kLinear, in: in, inS: s, outS: o, w: w, b: b, name: at,
				macs: int64(op.InFeatures) * int64(op.OutFeatures)}
			fuse(&ins)
			ins.out = c.plan.alloc(o.size())
			c.code = append(c.code, ins)
			if owned {
				c.plan.release(in)
			}
			in, owned, s = ins.out, true, o
		case "relu", "relu6":
			a := actReLU
			if op.Op == "relu6" {
				a = actReLU6
			}
			ins := instr{kind: kAct, in: in, out: in, inS: s, outS: s, act: a, name: at}
			if !owned {
				ins.out = c.plan.alloc(s.size())
			}
			c.code = append(c.code, ins)
			in, owned = ins.out, true
		case "flatten":
			s = shape{C: s.size(), H: 1, W: 1, flat: true}
		case "maxpool2d", "avgpool2d":
			if s.flat {
				return 0, false, s, xerr.IO("%s: input is flat %v, pooling needs [C, H, W]", at, s)
			}
			k, err := pair(at, "kernel", op.Kernel, -1, 1, maxDim)
			if err != nil {
				return 0, false, s, err
			}
			st, err := pair(at, "stride", op.Stride, -1, 1, maxDim)
			if err != nil {
				return 0, false, s, err
			}
			if len(op.Stride) == 0 {
				st = k
			}
			pd, err := pair(at, "padding", op.Padding, 0, 0, maxDim)
			if err != nil {
				return 0, false, s, err
			}
			if 2*pd[0] > k[0] || 2*pd[1] > k[1] {
				return 0, false, s, xerr.IO("%s: padding %v larger than half the kernel %v", at, pd, k)
			}
			o := shape{C: s.C, H: convOut(s.H, k[0], st[0], pd[0], 1), W: convOut(s.W, k[1], st[1], pd[1], 1)}
			if op.CeilMode {
				if op.Op != "maxpool2d" {
					return 0, false, s, xerr.NotSupported("%s: ceil_mode is supported for maxpool2d only", at)
				}
				o.H, o.W = poolOutCeil(s.H, k[0], st[0], pd[0]), poolOutCeil(s.W, k[1], st[1], pd[1])
			}
			if o.H < 1 || o.W < 1 {
				return 0, false, s, xerr.IO("%s: kernel %v larger than the input %v", at, k, s)
			}
			ins := instr{kind: kMaxPool, in: in, inS: s, outS: o, k: k, s: st, p: pd, name: at}
			if op.Op == "avgpool2d" {
				ins.kind = kAvgPool
				ins.countPad = op.CountIncludePad == nil || *op.CountIncludePad
			}
			ins.out = c.plan.alloc(o.size())
			c.code = append(c.code, ins)
			if owned {
				c.plan.release(in)
			}
			in, owned, s = ins.out, true, o
		case "adaptive_avgpool2d":
			if s.flat {
				return 0, false, s, xerr.IO("%s: input is flat %v, pooling needs [C, H, W]", at, s)
			}
			if len(op.OutputSize) != 0 && (len(op.OutputSize) != 2 || op.OutputSize[0] != 1 || op.OutputSize[1] != 1) {
				return 0, false, s, xerr.NotSupported("%s: output_size %v, only [1, 1] is supported", at, op.OutputSize)
			}
			o := shape{C: s.C, H: 1, W: 1}
			ins := instr{kind: kGAP, in: in, inS: s, outS: o, name: at}
			ins.out = c.plan.alloc(o.size())
			c.code = append(c.code, ins)
			if owned {
				c.plan.release(in)
			}
			in, owned, s = ins.out, true, o
		case "residual":
			m, mOwned, ms, err := c.ops(at+".main", op.Main, in, false, s)
			if err != nil {
				return 0, false, s, err
			}
			if !mOwned {
				cp := instr{kind: kCopy, in: m, inS: ms, outS: ms, name: at + ".main"}
				cp.out = c.plan.alloc(ms.size())
				c.code = append(c.code, cp)
				m = cp.out
			}
			sc, scOwned, ss := in, false, s
			if len(op.Shortcut) > 0 {
				sc, scOwned, ss, err = c.ops(at+".shortcut", op.Shortcut, in, false, s)
				if err != nil {
					return 0, false, s, err
				}
			}
			if ms != ss {
				return 0, false, s, xerr.IO("%s: main path gives %v but the shortcut gives %v", at, ms, ss)
			}
			ins := instr{kind: kAdd, in: m, in2: sc, out: m, inS: ms, outS: ms, name: at}
			if op.Relu {
				ins.act = actReLU
			} else {
				fuse(&ins)
			}
			c.code = append(c.code, ins)
			if scOwned {
				c.plan.release(sc)
			}
			if owned {
				c.plan.release(in)
			}
			in, owned, s = m, true, ms
		case "":
			return 0, false, s, xerr.IO("%s: op without a name", at)
		default:
			return 0, false, s, xerr.NotSupported("%s: unknown op %q", at, op.Op)
		}
	}
	return in, owned, s, nil
}

// program compiles one stage or head.
func (c *compiler) program(where string, list []OpSpec, in int, owned bool, s shape, mustOwn bool) (program, error) {
	c.code = nil
	out, outOwned, os, err := c.ops(where, list, in, owned, s)
	if err != nil {
		return program{}, err
	}
	if mustOwn && !outOwned {
		cp := instr{kind: kCopy, in: out, inS: os, outS: os, name: where + " (copy)"}
		cp.out = c.plan.alloc(os.size())
		c.code = append(c.code, cp)
		out = cp.out
	}
	p := program{code: c.code, in: in, out: out, outS: os}
	for _, ins := range c.code {
		p.macs += ins.macs
	}
	return p, nil
}
