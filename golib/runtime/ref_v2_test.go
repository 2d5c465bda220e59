package runtime

import (
	"math"
)

// A brute-force float64 interpreter of v2 graphs, written from torch's
// definitions: the reference the compiled float32 engine is checked against.
// It shares no code with the engine (shapes, windows, bins, broadcasting and
// activations are all recomputed here). It also counts MACs independently.

type refEnv struct {
	wts   map[string][]float64
	shape map[string][]int
	macs  int64
}

func (e *refEnv) dims(name string) []int { return e.shape[name] }

func refAct(op, approx string, v float64) float64 {
	relu6 := func(x float64) float64 { return math.Min(math.Max(x, 0), 6) }
	switch op {
	case "relu":
		return math.Max(v, 0)
	case "relu6":
		return relu6(v)
	case "sigmoid":
		return 1 / (1 + math.Exp(-v))
	case "silu":
		return v / (1 + math.Exp(-v))
	case "hardswish":
		return v * relu6(v+3) / 6
	case "hardsigmoid":
		return relu6(v+3) / 6
	case "gelu":
		if approx == "tanh" {
			return 0.5 * v * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(v+0.044715*v*v*v)))
		}
		return 0.5 * v * (1 + math.Erf(v/math.Sqrt2))
	}
	panic("refAct " + op)
}

// torch's pooling_output_shape
func refPoolOut(in, k, s, p, d int, ceil bool) int {
	num := in + 2*p - d*(k-1) - 1
	if ceil {
		num += s - 1
	}
	o := int(math.Floor(float64(num)/float64(s))) + 1
	if ceil && (o-1)*s >= in+p {
		o--
	}
	return o
}

func (e *refEnv) node(nd *Node, ins []refT) refT {
	x := ins[0]
	at := func(t refT, c, y, xx int) float64 { return t.v[(c*t.h+y)*t.w+xx] }
	two := func(v []int, def int) [2]int {
		if len(v) == 0 {
			return [2]int{def, def}
		}
		return [2]int{v[0], v[1]}
	}
	switch nd.Op {
	case "conv2d":
		wd := e.dims(nd.Weight)
		co, cig, kh, kw := wd[0], wd[1], wd[2], wd[3]
		s, p, d := two(nd.Stride, 1), two(nd.Padding, 0), two(nd.Dilation, 1)
		gr := max(nd.Groups, 1)
		ho := (x.h+2*p[0]-d[0]*(kh-1)-1)/s[0] + 1
		wo := (x.w+2*p[1]-d[1]*(kw-1)-1)/s[1] + 1
		cog := co / gr
		w := e.wts[nd.Weight]
		y := refT{c: co, h: ho, w: wo, v: make([]float64, co*ho*wo)}
		e.macs += int64(co * ho * wo * cig * kh * kw)
		for o := 0; o < co; o++ {
			g0 := o / cog
			for yy := 0; yy < ho; yy++ {
				for xx := 0; xx < wo; xx++ {
					acc := 0.0
					if nd.Bias != "" {
						acc = e.wts[nd.Bias][o]
					}
					for c := 0; c < cig; c++ {
						for i := 0; i < kh; i++ {
							for j := 0; j < kw; j++ {
								iy, ix := yy*s[0]-p[0]+i*d[0], xx*s[1]-p[1]+j*d[1]
								if iy >= 0 && iy < x.h && ix >= 0 && ix < x.w {
									acc += w[((o*cig+c)*kh+i)*kw+j] * at(x, g0*cig+c, iy, ix)
								}
							}
						}
					}
					y.v[(o*ho+yy)*wo+xx] = acc
				}
			}
		}
		return y
	case "linear":
		wd := e.dims(nd.Weight)
		out, in := wd[0], wd[1]
		w := e.wts[nd.Weight]
		e.macs += int64(in * out)
		y := refT{c: out, h: 1, w: 1, flat: true, v: make([]float64, out)}
		for o := range y.v {
			if nd.Bias != "" {
				y.v[o] = e.wts[nd.Bias][o]
			}
			for i := 0; i < in; i++ {
				y.v[o] += w[o*in+i] * x.v[i]
			}
		}
		return y
	case "scale_shift":
		y := x
		y.v = make([]float64, len(x.v))
		per := x.h * x.w
		for i, v := range x.v {
			c := i / per
			y.v[i] = v*e.wts[nd.Scale][c] + e.wts[nd.Shift][c]
		}
		return y
	case "relu", "relu6", "sigmoid", "silu", "hardswish", "hardsigmoid", "gelu":
		y := x
		y.v = make([]float64, len(x.v))
		for i, v := range x.v {
			y.v[i] = refAct(nd.Op, nd.Approximate, v)
		}
		return y
	case "identity":
		return x
	case "flatten":
		return refT{c: len(x.v), h: 1, w: 1, flat: true, v: x.v}
	case "add_scalar", "mul_scalar":
		y := x
		y.v = make([]float64, len(x.v))
		for i, v := range x.v {
			if nd.Op == "add_scalar" {
				y.v[i] = v + *nd.Value
			} else {
				y.v[i] = v * *nd.Value
			}
		}
		return y
	case "add", "mul":
		a, b := ins[0], ins[1]
		y := a
		if len(b.v) > len(a.v) {
			y = b
		}
		y.v = make([]float64, len(y.v))
		for c := 0; c < y.c; c++ {
			for i := 0; i < y.h; i++ {
				for j := 0; j < y.w; j++ {
					get := func(t refT) float64 { // numpy broadcasting of [C,1,1]
						return at(t, c, min(i, t.h-1), min(j, t.w-1))
					}
					if nd.Op == "add" {
						y.v[(c*y.h+i)*y.w+j] = get(a) + get(b)
					} else {
						y.v[(c*y.h+i)*y.w+j] = get(a) * get(b)
					}
				}
			}
		}
		return y
	case "cat":
		y := refT{h: x.h, w: x.w, flat: x.flat}
		for _, t := range ins {
			y.c += t.c
			y.v = append(y.v, t.v...)
		}
		return y
	case "mean":
		y := refT{c: x.c, h: 1, w: 1, flat: !nd.Keepdim, v: make([]float64, x.c)}
		for c := range y.v {
			for i := 0; i < x.h*x.w; i++ {
				y.v[c] += x.v[c*x.h*x.w+i]
			}
			y.v[c] /= float64(x.h * x.w)
		}
		return y
	case "adaptive_avgpool2d":
		oh, ow := nd.OutputSize[0], nd.OutputSize[1]
		y := refT{c: x.c, h: oh, w: ow, v: make([]float64, x.c*oh*ow)}
		for c := 0; c < x.c; c++ {
			for i := 0; i < oh; i++ {
				y0 := int(math.Floor(float64(i*x.h) / float64(oh)))
				y1 := int(math.Ceil(float64((i+1)*x.h) / float64(oh)))
				for j := 0; j < ow; j++ {
					x0 := int(math.Floor(float64(j*x.w) / float64(ow)))
					x1 := int(math.Ceil(float64((j+1)*x.w) / float64(ow)))
					s := 0.0
					for yy := y0; yy < y1; yy++ {
						for xx := x0; xx < x1; xx++ {
							s += at(x, c, yy, xx)
						}
					}
					y.v[(c*oh+i)*ow+j] = s / float64((y1-y0)*(x1-x0))
				}
			}
		}
		return y
	case "maxpool2d", "avgpool2d":
		k := two(nd.Kernel, 0)
		s := two(nd.Stride, 0)
		if len(nd.Stride) == 0 {
			s = k
		}
		p := two(nd.Padding, 0)
		ho := refPoolOut(x.h, k[0], s[0], p[0], 1, nd.CeilMode)
		wo := refPoolOut(x.w, k[1], s[1], p[1], 1, nd.CeilMode)
		y := refT{c: x.c, h: ho, w: wo, v: make([]float64, x.c*ho*wo)}
		cip := nd.CountIncludePad == nil || *nd.CountIncludePad
		for c := 0; c < x.c; c++ {
			for i := 0; i < ho; i++ {
				for j := 0; j < wo; j++ {
					// torch avg_pool2d: the pool size counts the window clipped to
					// the padded input, then the window is clipped to the input
					hs, ws := i*s[0]-p[0], j*s[1]-p[1]
					he, we := min(hs+k[0], x.h+p[0]), min(ws+k[1], x.w+p[1])
					size := (he - hs) * (we - ws)
					hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, x.h), min(we, x.w)
					m, sum := math.Inf(-1), 0.0
					for yy := hs; yy < he; yy++ {
						for xx := ws; xx < we; xx++ {
							m = math.Max(m, at(x, c, yy, xx))
							sum += at(x, c, yy, xx)
						}
					}
					r := m
					if nd.Op == "avgpool2d" {
						if !cip {
							size = (he - hs) * (we - ws)
						}
						r = sum / float64(size)
					}
					y.v[(c*ho+i)*wo+j] = r
				}
			}
		}
		return y
	}
	panic("ref v2: op " + nd.Op)
}

func (e *refEnv) block(b *Block, in refT) refT {
	vals := map[string]refT{InputName: in}
	for i := range b.Nodes {
		nd := &b.Nodes[i]
		ins := make([]refT, len(nd.Inputs))
		for j, n := range nd.Inputs {
			ins[j] = vals[n]
		}
		vals[nd.Name] = e.node(nd, ins)
	}
	return vals[b.Output]
}

// refLogitsV2 returns every exit's logits for one sample, and the MACs of each
// stage and head.
func refLogitsV2(g *Graph, b *modelBuilder, sample []float32) (logits [][]float64, macs []int64) {
	e := &refEnv{wts: b.weights, shape: map[string][]int{}}
	for i, n := range b.names {
		e.shape[n] = b.shapes[i]
	}
	x := refT{c: g.InputShape[0], h: g.InputShape[1], w: g.InputShape[2], v: make([]float64, len(sample))}
	for i, v := range sample {
		x.v[i] = float64(v)
	}
	for k := range g.Stages {
		e.macs = 0
		x = e.block(&g.Stages[k], x)
		macs = append(macs, e.macs)
		e.macs = 0
		logits = append(logits, e.block(&g.Heads[k], x).v)
		macs = append(macs, e.macs)
	}
	return logits, macs
}

// v2 graph building helpers
func nd(name, op string, inputs ...string) Node { return Node{Name: name, Op: op, Inputs: inputs} }

func (b *modelBuilder) conv2(name, in string, cin, cout, kh, kw, s, p, d, g int, bias bool) Node {
	n := nd(name, "conv2d", in)
	n.Weight = b.tensor(name+".weight", 1/math.Sqrt(float64(cin/g*kh*kw)), cout, cin/g, kh, kw)
	n.Stride, n.Padding, n.Dilation, n.Groups = []int{s, s}, []int{p, (kw - 1) / 2 * d}, []int{d, d}, g
	if kh == kw {
		n.Padding = []int{p, p}
	}
	if bias {
		n.Bias = b.tensor(name+".bias", 0.1, cout)
	}
	return n
}

func (b *modelBuilder) linear2(name, in string, fin, fout int) Node {
	n := nd(name, "linear", in)
	n.Weight = b.tensor(name+".weight", 1/math.Sqrt(float64(fin)), fout, fin)
	n.Bias = b.tensor(name+".bias", 0.1, fout)
	return n
}

func (b *modelBuilder) scaleShift(name, in string, c int) Node {
	n := nd(name, "scale_shift", in)
	n.Scale = b.tensor(name+".scale", 0.5, c)
	n.Shift = b.tensor(name+".shift", 0.2, c)
	return n
}

func pool(name, op, in string, k, s, p int, ceil bool, cip *bool) Node {
	n := nd(name, op, in)
	n.Kernel, n.Stride, n.Padding, n.CeilMode, n.CountIncludePad = []int{k, k}, []int{s, s}, []int{p, p}, ceil, cip
	return n
}

func withAttr(n Node, f func(*Node)) Node { f(&n); return n }

func fptr(v float64) *float64 { return &v }

// everyOpV2 covers every op of the v2 contract on ragged shapes: conv with
// groups, depthwise with a multiplier, dilation, stride, rectangular kernels,
// 1×1 on [C,1,1]; scale_shift on [C,H,W] and on [F]; every activation (fused
// and alone); residual add with a node read by several nodes and a node read
// twice by one; squeeze-excitation mul with [C,1,1] on either side; cat of
// three inputs including the block input; max/avg pools with ceil_mode,
// padding and count_include_pad both ways; conv→relu→2×2 max-pool (fused);
// adaptive pools with overlapping and upsampling bins; mean with and without
// keepdim; add_scalar, mul_scalar, identity, flatten, linear.
func everyOpV2(b *modelBuilder) *Graph {
	g := &Graph{FormatVersion: 2, Producer: "go test", InputShape: []int{3, 11, 9}, NumClasses: 4}
	s0 := Block{Output: "mp2", Nodes: []Node{
		b.scaleShift("bn0", "input", 3),
		b.conv2("c1", "bn0", 3, 6, 3, 3, 1, 1, 1, 1, true),
		nd("r1", "relu", "c1"),
		b.conv2("c2", "r1", 6, 6, 3, 3, 1, 2, 2, 3, false),
		nd("h6", "relu6", "c2"),
		b.conv2("sc", "bn0", 3, 6, 1, 1, 1, 0, 1, 1, false), // bn0 has two readers
		nd("sq", "mul", "sc", "sc"),                         // one reader, twice
		nd("add1", "add", "h6", "sq"),
		nd("r2", "relu", "add1"),
		nd("drop", "identity", "r2"),
		b.conv2("c3", "drop", 6, 6, 3, 3, 1, 1, 1, 1, true),
		nd("r3", "relu", "c3"),
		pool("mp2", "maxpool2d", "r3", 2, 2, 0, false, nil), // fused: [6, 5, 4]
	}}
	h0 := Block{Output: "fc", Nodes: []Node{
		pool("ap", "avgpool2d", "input", 3, 1, 1, false, nil),
		withAttr(nd("m", "mean", "ap"), func(n *Node) { n.Dims = []int{2, 3} }),
		b.linear2("fc", "m", 6, 4),
	}}
	s1 := Block{Output: "out2", Nodes: []Node{
		b.conv2("a", "input", 6, 7, 3, 3, 1, 1, 1, 1, false),
		nd("ag", "gelu", "a"),
		b.conv2("b", "input", 6, 4, 1, 3, 1, 0, 1, 1, true),
		withAttr(nd("bt", "gelu", "b"), func(n *Node) { n.Approximate = "tanh" }),
		nd("cat1", "cat", "ag", "bt", "input"), // [17, 5, 4]
		nd("sig", "sigmoid", "cat1"),
		pool("ap", "avgpool2d", "sig", 3, 2, 1, true, boolp(false)), // [17, 3, 3]
		pool("mp", "maxpool2d", "sig", 2, 2, 1, true, nil),          // [17, 3, 3], last window clipped
		pool("ap3", "avgpool2d", "sig", 2, 2, 1, true, boolp(true)), // [17, 3, 3]
		nd("sum3", "add", "ap", "mp"),
		nd("sum", "add", "sum3", "ap3"),
		b.conv2("dw", "sum", 17, 17, 3, 3, 1, 1, 1, 17, true),
		nd("hs", "hardswish", "dw"),
		withAttr(nd("se_m", "mean", "hs"), func(n *Node) { n.Dims = []int{-2, -1}; n.Keepdim = true }),
		b.conv2("se_c1", "se_m", 17, 5, 1, 1, 1, 0, 1, 1, true),
		nd("se_s", "silu", "se_c1"),
		b.conv2("se_c2", "se_s", 5, 17, 1, 1, 1, 0, 1, 1, true),
		nd("se_g", "hardsigmoid", "se_c2"),
		nd("se", "mul", "se_g", "hs"),   // [C,1,1] first
		nd("se_b", "add", "se", "se_g"), // [C,1,1] second
		withAttr(nd("out", "mul_scalar", "se_b"), func(n *Node) { n.Value = fptr(0.5) }),
		withAttr(nd("out2", "add_scalar", "out"), func(n *Node) { n.Value = fptr(-0.25) }),
	}}
	h1 := Block{Output: "fc", Nodes: []Node{
		withAttr(nd("ad", "adaptive_avgpool2d", "input"), func(n *Node) { n.OutputSize = []int{2, 2} }),
		nd("fl", "flatten", "ad"),
		b.linear2("fc", "fl", 68, 4),
	}}
	s2 := Block{Output: "bn1d", Nodes: []Node{
		b.conv2("c", "input", 17, 9, 3, 3, 2, 1, 1, 1, true), // [9, 2, 2]
		nd("r", "relu", "c"),
		pool("mp", "maxpool2d", "r", 2, 1, 0, false, nil), // [9, 1, 1]
		withAttr(nd("ad", "adaptive_avgpool2d", "mp"), func(n *Node) { n.OutputSize = []int{3, 2} }),
		nd("fl", "flatten", "ad"),
		b.linear2("l1", "fl", 54, 10),
		nd("lr", "relu", "l1"),
		b.scaleShift("bn1d", "lr", 10),
	}}
	h2 := Block{Output: "fc", Nodes: []Node{b.linear2("fc", "input", 10, 4)}}
	g.Stages = []Block{s0, s1, s2}
	g.Heads = []Block{h0, h1, h2}
	return g
}
