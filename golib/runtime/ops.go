package runtime

import (
	"math"

	"github.com/exitnet/exitnet/golib/xerr"
)

// node compiles node i of the block: checks its inputs' shapes, infers its
// output shape, counts its MACs and work, and emits its instruction (fusing a
// following activation, and for convolutions a following 2×2 max-pool, when
// the node is their only input).
func (c *compiler) node(x *blockCtx, i int) error {
	nd := &x.b.Nodes[i]
	at := nodeWhere(x.where, nd)
	if err := arity(at, nd); err != nil {
		return err
	}
	srcs := make([]val, len(nd.Inputs))
	slots := make([]int, len(nd.Inputs))
	for j, name := range nd.Inputs {
		srcs[j] = x.val(name)
		slots[j] = srcs[j].slot
	}
	in := srcs[0]
	s := in.s
	x.done[i] = true
	switch nd.Op {
	case "conv2d":
		return c.conv2d(x, i, at, in)
	case "linear":
		if !s.flat {
			return xerr.IO("%s: input %v is not flat (add a flatten before linear)", at, s)
		}
		w, ws, err := c.weight(at, "weight", nd.Weight, -1, s.C)
		if err != nil {
			return err
		}
		if nd.InFeatures != 0 && nd.InFeatures != s.C || nd.OutFeatures != 0 && nd.OutFeatures != ws[0] {
			return xerr.IO("%s: in_features %d, out_features %d, but the input has %d features and the weight is %v", at, nd.InFeatures, nd.OutFeatures, s.C, ws)
		}
		b, err := c.bias(at, nd.Bias, ws[0])
		if err != nil {
			return err
		}
		o := shape{C: ws[0], H: 1, W: 1, flat: true}
		ins := instr{kind: kLinear, in: in.slot, inS: s, outS: o, w: w, b: b, name: at, node: nd.Name, macs: int64(s.C) * int64(o.C)}
		x.macs += ins.macs
		x.work += ins.macs
		last := c.fuseAct(x, i, &ins)
		ins.dense = newDense(&ins)
		x.vals[last] = c.emit(ins, slots, -1, x.uses[last])
		return nil
	case "scale_shift":
		w, _, err := c.weight(at, "scale", nd.Scale, s.C)
		if err != nil {
			return err
		}
		b, _, err := c.weight(at, "shift", nd.Shift, s.C)
		if err != nil {
			return err
		}
		ins := instr{kind: kScaleShift, in: in.slot, inS: s, outS: s, w: w, b: b, name: at}
		x.work += int64(s.size())
		last := c.fuseAct(x, i, &ins)
		x.vals[last] = c.emit(ins, slots, reuseIf(c.reusable(in.slot)), x.uses[last])
		return nil
	case "relu", "relu6", "sigmoid", "silu", "hardswish", "hardsigmoid", "gelu":
		a, err := actOf(at, nd)
		if err != nil {
			return err
		}
		ins := instr{kind: kAct, in: in.slot, inS: s, outS: s, act: a, name: at}
		x.work += int64(s.size())
		x.vals[i] = c.emit(ins, slots, reuseIf(c.reusable(in.slot)), x.uses[i])
		return nil
	case "add_scalar", "mul_scalar":
		if nd.Value == nil || math.IsNaN(*nd.Value) || math.Abs(*nd.Value) > math.MaxFloat32 {
			return xerr.IO("%s: value missing or not a finite float32", at)
		}
		ins := instr{kind: kAffine, in: in.slot, inS: s, outS: s, alpha: 1, name: at}
		if nd.Op == "add_scalar" {
			ins.beta = float32(*nd.Value)
		} else {
			ins.alpha = float32(*nd.Value)
		}
		x.work += int64(s.size())
		x.vals[i] = c.emit(ins, slots, reuseIf(c.reusable(in.slot)), x.uses[i])
		return nil
	case "add", "mul":
		return c.binary(x, i, at, srcs)
	case "cat":
		return c.cat(x, i, at, srcs)
	case "identity":
		x.vals[i] = c.alias(in, s, x.uses[i])
		return nil
	case "flatten":
		if (nd.StartDim != nil && *nd.StartDim != 1) || (nd.EndDim != nil && *nd.EndDim != -1 && *nd.EndDim != 3) {
			return xerr.NotSupported("%s: start_dim %v, end_dim %v; only flatten(1, -1) is supported", at, deref(nd.StartDim), deref(nd.EndDim))
		}
		x.vals[i] = c.alias(in, shape{C: s.size(), H: 1, W: 1, flat: true}, x.uses[i])
		return nil
	case "maxpool2d", "avgpool2d":
		return c.pool(x, i, at, in)
	case "adaptive_avgpool2d":
		if s.flat {
			return xerr.IO("%s: input is flat %v, pooling needs [C, H, W]", at, s)
		}
		os, err := pair(at, "output_size", nd.OutputSize, -1, 1, maxDim)
		if err != nil {
			return err
		}
		o := shape{C: s.C, H: os[0], W: os[1]}
		if err := checkAct(at, o); err != nil {
			return err
		}
		ins := instr{kind: kAdaptive, in: in.slot, inS: s, outS: o, name: at}
		if o.H == 1 && o.W == 1 {
			ins.kind = kGAP
		}
		x.work += adaptiveWork(s, o)
		x.vals[i] = c.emit(ins, slots, -1, x.uses[i])
		return nil
	case "mean":
		if s.flat {
			return xerr.IO("%s: input is flat %v, mean over H, W needs [C, H, W]", at, s)
		}
		if !meanOverHW(nd.Dims) {
			return xerr.NotSupported("%s: dims %v; only the mean over H and W (dims [2, 3]) is supported", at, nd.Dims)
		}
		o := shape{C: s.C, H: 1, W: 1, flat: !nd.Keepdim}
		ins := instr{kind: kGAP, in: in.slot, inS: s, outS: o, name: at}
		x.work += int64(s.size())
		x.vals[i] = c.emit(ins, slots, -1, x.uses[i])
		return nil
	case "":
		return xerr.IO("%s: op without a name", at)
	default:
		return xerr.NotSupported("%s: unknown op %q", at, nd.Op)
	}
}

func reuseIf(ok bool) int {
	if ok {
		return 0
	}
	return -1
}

func deref(p *int) any {
	if p == nil {
		return "absent"
	}
	return *p
}

// arity checks the number of inputs of each op.
func arity(at string, nd *Node) error {
	want := 1
	switch nd.Op {
	case "add", "mul":
		want = 2
	case "cat":
		if len(nd.Inputs) < 2 {
			return xerr.IO("%s: %d inputs, cat needs at least 2", at, len(nd.Inputs))
		}
		return nil
	}
	if len(nd.Inputs) != want {
		return xerr.IO("%s: %d inputs, %s takes %d", at, len(nd.Inputs), nd.Op, want)
	}
	return nil
}

func meanOverHW(dims []int) bool {
	if len(dims) != 2 {
		return false
	}
	a, b := dims[0], dims[1]
	if a < 0 {
		a += 4
	}
	if b < 0 {
		b += 4
	}
	return (a == 2 && b == 3) || (a == 3 && b == 2)
}

// actOf maps an activation node to its activation.
func actOf(at string, nd *Node) (activation, error) {
	switch nd.Op {
	case "relu":
		return actReLU, nil
	case "relu6":
		return actReLU6, nil
	case "sigmoid":
		return actSigmoid, nil
	case "silu":
		return actSiLU, nil
	case "hardswish":
		return actHardswish, nil
	case "hardsigmoid":
		return actHardsigmoid, nil
	case "gelu":
		switch nd.Approximate {
		case "", "none":
			return actGELU, nil
		case "tanh":
			return actGELUTanh, nil
		}
		return 0, xerr.NotSupported("%s: approximate %q, want \"none\" or \"tanh\"", at, nd.Approximate)
	}
	return actNone, nil
}

// fuseAct fuses node i's only reader into ins when it is an activation, and
// returns the node whose value ins now produces (i, or the activation).
func (c *compiler) fuseAct(x *blockCtx, i int, ins *instr) int {
	j := x.soleConsumer(i)
	if j < 0 {
		return i
	}
	a, err := actOf("", &x.b.Nodes[j])
	if err != nil || a == actNone || len(x.b.Nodes[j].Inputs) != 1 {
		return i
	}
	ins.act = a
	x.done[j] = true
	x.work += int64(ins.outS.size())
	return j
}

// conv2d compiles a convolution: weight [C_out, C_in/groups, kh, kw].
func (c *compiler) conv2d(x *blockCtx, i int, at string, in val) error {
	nd := &x.b.Nodes[i]
	s := in.s
	if s.flat {
		return xerr.IO("%s: input is flat %v, conv2d needs [C, H, W]", at, s)
	}
	g := max(nd.Groups, 1)
	if g > s.C || s.C%g != 0 {
		return xerr.IO("%s: groups %d does not divide the input's %d channels", at, g, s.C)
	}
	if nd.InChannels != 0 && nd.InChannels != s.C {
		return xerr.IO("%s: in_channels %d but the input has %d channels", at, nd.InChannels, s.C)
	}
	w, ws, err := c.weight(at, "weight", nd.Weight, -1, s.C/g, -1, -1)
	if err != nil {
		return err
	}
	cout := ws[0]
	if cout%g != 0 || (nd.OutChannels != 0 && nd.OutChannels != cout) {
		return xerr.IO("%s: out_channels %d (weight %v) is not a multiple of groups %d or differs from the declared %d", at, cout, ws, g, nd.OutChannels)
	}
	k := [2]int{ws[2], ws[3]}
	if len(nd.Kernel) != 0 && (len(nd.Kernel) != 2 || nd.Kernel[0] != k[0] || nd.Kernel[1] != k[1]) {
		return xerr.IO("%s: kernel %v but the weight is %v", at, nd.Kernel, ws)
	}
	st, err := pair(at, "stride", nd.Stride, 1, 1, maxDim)
	if err != nil {
		return err
	}
	pd, err := pair(at, "padding", nd.Padding, 0, 0, maxDim)
	if err != nil {
		return err
	}
	dl, err := pair(at, "dilation", nd.Dilation, 1, 1, maxDim)
	if err != nil {
		return err
	}
	o := shape{C: cout, H: convOut(s.H, k[0], st[0], pd[0], dl[0]), W: convOut(s.W, k[1], st[1], pd[1], dl[1])}
	if o.H < 1 || o.W < 1 {
		return xerr.IO("%s: kernel %v (dilation %v, padding %v) larger than the input %v", at, k, dl, pd, s)
	}
	if err := checkAct(at, o); err != nil {
		return err
	}
	cing := s.C / g
	b, err := c.bias(at, nd.Bias, cout)
	if err != nil {
		return err
	}
	ins := instr{kind: kConv, in: in.slot, inS: s, outS: o, convS: o, w: w, b: b, groups: g, k: k, s: st, p: pd, d: dl,
		name: at, node: nd.Name, colRows: cing * k[0] * k[1]}
	ins.macs = int64(o.C) * int64(o.H*o.W) * int64(cing*k[0]*k[1])
	ins.oneByOne = k == [2]int{1, 1} && st == [2]int{1, 1} && pd == [2]int{0, 0}
	x.macs += ins.macs
	x.work += ins.macs
	last := c.fuseAct(x, i, &ins)
	// conv [→ relu/relu6] → maxpool 2×2/2 (floor, unpadded): pool in the
	// epilogue, so the full-size output is never written (valid since these
	// activations are monotonic)
	if p := x.soleConsumer(last); p >= 0 && isPool2x2(&x.b.Nodes[p]) && o.H >= 2 && o.W >= 2 &&
		(ins.act == actNone || ins.act == actReLU || ins.act == actReLU6) && convFusesPool(&ins) {
		ins.pool2 = true
		ins.outS = shape{C: o.C, H: o.H / 2, W: o.W / 2}
		x.done[p] = true
		x.work += int64(o.size())
		last = p
	}
	ins.conv = chooseConvKernel(&ins)
	x.vals[last] = c.emit(ins, []int{in.slot}, -1, x.uses[last])
	return nil
}

// isPool2x2 reports a max-pool that conv can fuse: kernel 2×2, stride 2 (or
// absent), no padding, no dilation, floor mode.
func isPool2x2(nd *Node) bool {
	if nd.Op != "maxpool2d" || nd.CeilMode || len(nd.Kernel) != 2 || nd.Kernel[0] != 2 || nd.Kernel[1] != 2 {
		return false
	}
	if len(nd.Stride) != 0 && (len(nd.Stride) != 2 || nd.Stride[0] != 2 || nd.Stride[1] != 2) {
		return false
	}
	if len(nd.Dilation) != 0 && (len(nd.Dilation) != 2 || nd.Dilation[0] != 1 || nd.Dilation[1] != 1) {
		return false
	}
	return len(nd.Padding) == 0 || (len(nd.Padding) == 2 && nd.Padding[0] == 0 && nd.Padding[1] == 0)
}

// pool compiles maxpool2d / avgpool2d (torch semantics, ceil_mode included).
func (c *compiler) pool(x *blockCtx, i int, at string, in val) error {
	nd := &x.b.Nodes[i]
	s := in.s
	if s.flat {
		return xerr.IO("%s: input is flat %v, pooling needs [C, H, W]", at, s)
	}
	k, err := pair(at, "kernel", nd.Kernel, -1, 1, maxDim)
	if err != nil {
		return err
	}
	st := k // torch: stride defaults to the kernel
	if len(nd.Stride) != 0 {
		if st, err = pair(at, "stride", nd.Stride, 1, 1, maxDim); err != nil {
			return err
		}
	}
	pd, err := pair(at, "padding", nd.Padding, 0, 0, maxDim)
	if err != nil {
		return err
	}
	if dl, err := pair(at, "dilation", nd.Dilation, 1, 1, maxDim); err != nil || dl != [2]int{1, 1} {
		return xerr.NotSupported("%s: dilation %v; only [1, 1] is supported", at, nd.Dilation)
	}
	if 2*pd[0] > k[0] || 2*pd[1] > k[1] {
		return xerr.IO("%s: padding %v larger than half the kernel %v", at, pd, k)
	}
	o := shape{C: s.C, H: convOut(s.H, k[0], st[0], pd[0], 1), W: convOut(s.W, k[1], st[1], pd[1], 1)}
	if nd.CeilMode {
		o.H, o.W = poolOutCeil(s.H, k[0], st[0], pd[0]), poolOutCeil(s.W, k[1], st[1], pd[1])
	}
	if o.H < 1 || o.W < 1 {
		return xerr.IO("%s: kernel %v larger than the input %v", at, k, s)
	}
	if err := checkAct(at, o); err != nil {
		return err
	}
	ins := instr{kind: kMaxPool, in: in.slot, inS: s, outS: o, k: k, s: st, p: pd, name: at}
	if nd.Op == "avgpool2d" {
		ins.kind = kAvgPool
		ins.countPad = nd.CountIncludePad == nil || *nd.CountIncludePad
	}
	x.work += int64(o.size()) * int64(k[0]*k[1])
	x.vals[i] = c.emit(ins, []int{in.slot}, -1, x.uses[i])
	return nil
}

// binary compiles add / mul: equal shapes, or one side [C, 1, 1] broadcast
// over the other's [C, H, W] (squeeze-excitation).
func (c *compiler) binary(x *blockCtx, i int, at string, srcs []val) error {
	a, b := srcs[0], srcs[1]
	ins := instr{kind: kAdd, name: at}
	if x.b.Nodes[i].Op == "mul" {
		ins.kind = kMul
	}
	isCol := func(s shape) bool { return !s.flat && s.H == 1 && s.W == 1 }
	switch {
	case a.s == b.s:
	case isCol(a.s) && !b.s.flat && a.s.C == b.s.C:
		a, b = b, a // x + y = y + x exactly in floating point
		ins.bcast = true
	case isCol(b.s) && !a.s.flat && a.s.C == b.s.C:
		ins.bcast = true
	default:
		return xerr.IO("%s: inputs of shapes %v and %v; want equal shapes or one [C, 1, 1] beside [C, H, W]", at, a.s, b.s)
	}
	ins.in, ins.in2, ins.inS, ins.outS = a.slot, b.slot, a.s, a.s
	x.work += int64(a.s.size())
	last := i
	if ins.kind == kAdd {
		last = c.fuseAct(x, i, &ins)
	}
	reuse := -1
	if c.reusable(a.slot) && a.slot != b.slot {
		reuse = 0
	}
	x.vals[last] = c.emit(ins, []int{a.slot, b.slot}, reuse, x.uses[last])
	return nil
}

// cat compiles a channel concatenation (axis 1) of [C_i, H, W] inputs (or of
// flat [F_i] inputs).
func (c *compiler) cat(x *blockCtx, i int, at string, srcs []val) error {
	nd := &x.b.Nodes[i]
	if nd.Axis != nil && *nd.Axis != 1 {
		return xerr.NotSupported("%s: axis %d; only channel concatenation (axis 1) is supported", at, *nd.Axis)
	}
	o := srcs[0].s
	o.C = 0
	ins := instr{kind: kCat, name: at}
	for j, v := range srcs {
		if v.s.flat != o.flat || v.s.H != o.H || v.s.W != o.W {
			return xerr.IO("%s: input %d (%q) is %v, input 0 is %v; cat needs equal H and W", at, j, nd.Inputs[j], v.s, srcs[0].s)
		}
		o.C += v.s.C
		if o.C > maxActivation {
			return xerr.IO("%s: more than %d channels", at, maxActivation)
		}
		ins.srcs = append(ins.srcs, v.slot)
		ins.srcC = append(ins.srcC, v.s.C)
	}
	if err := checkAct(at, o); err != nil {
		return err
	}
	ins.in, ins.inS, ins.outS = srcs[0].slot, srcs[0].s, o
	x.work += int64(o.size())
	x.vals[i] = c.emit(ins, ins.srcs, -1, x.uses[i])
	return nil
}

// adaptiveWork bounds the elements adaptive average pooling reads: each output
// bin spans at most ⌈H/oh⌉+1 rows and ⌈W/ow⌉+1 columns.
func adaptiveWork(s, o shape) int64 {
	bh := int64((s.H+o.H-1)/o.H + 1)
	bw := int64((s.W+o.W-1)/o.W + 1)
	return int64(o.size()) * min(bh, int64(s.H)) * min(bw, int64(s.W))
}
