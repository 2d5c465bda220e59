package runtime

import (
	"math"
	"math/rand/v2"
)

// A brute-force float64 interpreter of the JSON graph: the reference the
// compiled float32 engine is checked against. It shares no code with the engine.

type refT struct {
	c, h, w int
	flat    bool
	v       []float64
}

func refRun(g *GraphV1, wts map[string][]float64, ops []OpSpec, x refT) refT {
	for _, op := range ops {
		switch op.Op {
		case "conv2d":
			kh, kw := op.Kernel[0], op.Kernel[1]
			s, p, d := op.Stride, op.Padding, op.Dilation
			gr := max(op.Groups, 1)
			ho := (x.h+2*p[0]-d[0]*(kh-1)-1)/s[0] + 1
			wo := (x.w+2*p[1]-d[1]*(kw-1)-1)/s[1] + 1
			co := op.OutChannels
			cig, cog := x.c/gr, co/gr
			w := wts[op.Weight]
			y := refT{c: co, h: ho, w: wo, v: make([]float64, co*ho*wo)}
			for o := 0; o < co; o++ {
				g0 := o / cog
				for yy := 0; yy < ho; yy++ {
					for xx := 0; xx < wo; xx++ {
						acc := 0.0
						if op.Bias != "" {
							acc = wts[op.Bias][o]
						}
						for c := 0; c < cig; c++ {
							for i := 0; i < kh; i++ {
								for j := 0; j < kw; j++ {
									iy, ix := yy*s[0]-p[0]+i*d[0], xx*s[1]-p[1]+j*d[1]
									if iy < 0 || iy >= x.h || ix < 0 || ix >= x.w {
										continue
									}
									acc += w[((o*cig+c)*kh+i)*kw+j] * x.v[((g0*cig+c)*x.h+iy)*x.w+ix]
								}
							}
						}
						y.v[(o*ho+yy)*wo+xx] = acc
					}
				}
			}
			x = y
		case "linear":
			w := wts[op.Weight]
			y := refT{c: op.OutFeatures, h: 1, w: 1, flat: true, v: make([]float64, op.OutFeatures)}
			for o := range y.v {
				acc := 0.0
				if op.Bias != "" {
					acc = wts[op.Bias][o]
				}
				for i := 0; i < op.InFeatures; i++ {
					acc += w[o*op.InFeatures+i] * x.v[i]
				}
				y.v[o] = acc
			}
			x = y
		case "relu", "relu6":
			y := x
			y.v = append([]float64(nil), x.v...)
			for i, v := range y.v {
				y.v[i] = math.Max(v, 0)
				if op.Op == "relu6" {
					y.v[i] = math.Min(y.v[i], 6)
				}
			}
			x = y
		case "flatten":
			x = refT{c: x.c * x.h * x.w, h: 1, w: 1, flat: true, v: x.v}
		case "maxpool2d", "avgpool2d":
			k, s, p := op.Kernel, op.Stride, op.Padding
			ho := (x.h+2*p[0]-k[0])/s[0] + 1
			wo := (x.w+2*p[1]-k[1])/s[1] + 1
			if op.CeilMode { // torch: ceil, unless the last window starts in the right padding
				ho = (x.h+2*p[0]-k[0]+s[0]-1)/s[0] + 1
				if (ho-1)*s[0] >= x.h+p[0] {
					ho--
				}
				wo = (x.w+2*p[1]-k[1]+s[1]-1)/s[1] + 1
				if (wo-1)*s[1] >= x.w+p[1] {
					wo--
				}
			}
			y := refT{c: x.c, h: ho, w: wo, v: make([]float64, x.c*ho*wo)}
			for c := 0; c < x.c; c++ {
				for yy := 0; yy < ho; yy++ {
					for xx := 0; xx < wo; xx++ {
						m, sum, cnt := math.Inf(-1), 0.0, 0
						for i := 0; i < k[0]; i++ {
							for j := 0; j < k[1]; j++ {
								iy, ix := yy*s[0]-p[0]+i, xx*s[1]-p[1]+j
								if iy < 0 || iy >= x.h || ix < 0 || ix >= x.w {
									continue
								}
								v := x.v[(c*x.h+iy)*x.w+ix]
								m = math.Max(m, v)
								sum += v
								cnt++
							}
						}
						r := m
						if op.Op == "avgpool2d" {
							if op.CountIncludePad == nil || *op.CountIncludePad {
								r = sum / float64(k[0]*k[1])
							} else {
								r = sum / float64(cnt)
							}
						}
						y.v[(c*ho+yy)*wo+xx] = r
					}
				}
			}
			x = y
		case "adaptive_avgpool2d":
			y := refT{c: x.c, h: 1, w: 1, v: make([]float64, x.c)}
			for c := 0; c < x.c; c++ {
				for i := 0; i < x.h*x.w; i++ {
					y.v[c] += x.v[c*x.h*x.w+i]
				}
				y.v[c] /= float64(x.h * x.w)
			}
			x = y
		case "residual":
			m := refRun(g, wts, op.Main, x)
			sc := x
			if len(op.Shortcut) > 0 {
				sc = refRun(g, wts, op.Shortcut, x)
			}
			y := m
			y.v = make([]float64, len(m.v))
			for i := range y.v {
				y.v[i] = m.v[i] + sc.v[i]
				if op.Relu {
					y.v[i] = math.Max(y.v[i], 0)
				}
			}
			x = y
		default:
			panic("ref: op " + op.Op)
		}
	}
	return x
}

// refLogits returns, for one sample, every exit's logits.
func refLogits(g *GraphV1, wts map[string][]float64, sample []float32) [][]float64 {
	x := refT{c: g.InputShape[0], h: g.InputShape[1], w: g.InputShape[2], v: make([]float64, len(sample))}
	for i, v := range sample {
		x.v[i] = float64(v)
	}
	var out [][]float64
	for k := range g.Stages {
		x = refRun(g, wts, g.Stages[k], x)
		out = append(out, refRun(g, wts, g.Heads[k], x).v)
	}
	return out
}

// modelBuilder assembles a random graph with its weights for tests.
type modelBuilder struct {
	rng     *rand.Rand
	names   []string
	shapes  [][]int
	data    [][]float32
	weights map[string][]float64
}

func newBuilder(seed uint64) *modelBuilder {
	return &modelBuilder{rng: rand.New(rand.NewPCG(seed, 7)), weights: map[string][]float64{}}
}

func (b *modelBuilder) tensor(name string, scale float64, dims ...int) string {
	for b.weights[name] != nil { // weight names are global; node names only per block
		name += "'"
	}
	n := 1
	for _, d := range dims {
		n *= d
	}
	f := make([]float32, n)
	d := make([]float64, n)
	for i := range f {
		f[i] = float32(b.rng.NormFloat64() * scale)
		d[i] = float64(f[i])
	}
	b.names = append(b.names, name)
	b.shapes = append(b.shapes, dims)
	b.data = append(b.data, f)
	b.weights[name] = d
	return name
}

func (b *modelBuilder) conv(name string, cin, cout, k, s, p, d, g int, bias bool) OpSpec {
	fan := float64(cin / g * k * k)
	op := OpSpec{Op: "conv2d", Weight: b.tensor(name+".w", 1/math.Sqrt(fan), cout, cin/g, k, k),
		InChannels: cin, OutChannels: cout, Kernel: []int{k, k}, Stride: []int{s, s},
		Padding: []int{p, p}, Dilation: []int{d, d}, Groups: g}
	if bias {
		op.Bias = b.tensor(name+".b", 0.1, cout)
	}
	return op
}

func (b *modelBuilder) linear(name string, in, out int) OpSpec {
	return OpSpec{Op: "linear", Weight: b.tensor(name+".w", 1/math.Sqrt(float64(in)), out, in),
		Bias: b.tensor(name+".b", 0.1, out), InFeatures: in, OutFeatures: out}
}

func (b *modelBuilder) encode(g any) []byte {
	data, err := Encode(g, b.names, b.shapes, b.data)
	if err != nil {
		panic(err)
	}
	return data
}

func boolp(v bool) *bool { return &v }

// everyOpGraph covers every op and option: conv with groups, dilation, stride,
// padding, depthwise (with multiplier), 1×1, residual with identity and 1×1-conv
// shortcuts, max/avg pools (both count_include_pad), GAP, relu6, flatten, linear.
func everyOpGraph(b *modelBuilder) *GraphV1 {
	g := &GraphV1{FormatVersion: 1, InputShape: []int{3, 13, 12}, NumClasses: 5}
	// stage 0: conv (stride 2? no: 1, pad 1), relu, grouped dilated conv, maxpool
	s0 := []OpSpec{
		b.conv("s0.c1", 3, 8, 3, 1, 1, 1, 1, true), {Op: "relu"},
		b.conv("s0.c2", 8, 8, 3, 1, 2, 2, 2, false), {Op: "relu6"},
		{Op: "maxpool2d", Kernel: []int{3, 3}, Stride: []int{2, 2}, Padding: []int{1, 1}},
	}
	h0 := []OpSpec{{Op: "maxpool2d", Kernel: []int{2, 2}, Stride: []int{2, 2}, Padding: []int{0, 0}}, // 7×6 → 3×3 (fast path)
		{Op: "adaptive_avgpool2d"}, {Op: "flatten"}, b.linear("h0.l", 8, 5)}
	// stage 1: residual with identity shortcut (depthwise + pointwise), residual with 1×1 conv stride 2 shortcut
	s1 := []OpSpec{
		{Op: "residual", Relu: true, Main: []OpSpec{
			b.conv("s1.r1.dw", 8, 8, 3, 1, 1, 1, 8, true), {Op: "relu6"},
			b.conv("s1.r1.pw", 8, 8, 1, 1, 0, 1, 1, true),
		}},
		{Op: "residual", Relu: false, Main: []OpSpec{
			b.conv("s1.r2.c1", 8, 12, 3, 2, 1, 1, 4, true), {Op: "relu"},
			b.conv("s1.r2.c2", 12, 12, 3, 1, 1, 1, 1, true),
		}, Shortcut: []OpSpec{b.conv("s1.r2.sc", 8, 12, 1, 2, 0, 1, 1, false)}},
		{Op: "relu"},
		{Op: "avgpool2d", Kernel: []int{2, 2}, Stride: []int{1, 1}, Padding: []int{1, 1}, CountIncludePad: boolp(false)},
	}
	h1 := []OpSpec{{Op: "flatten"}, b.linear("h1.l1", 12*5*4, 16), {Op: "relu"}, b.linear("h1.l2", 16, 5)}
	// stage 2: depthwise with multiplier 2, stride 2, avgpool count_include_pad, flatten, linear
	s2 := []OpSpec{
		b.conv("s2.dw", 12, 24, 3, 2, 1, 1, 12, true), {Op: "relu"},
		{Op: "avgpool2d", Kernel: []int{3, 3}, Stride: []int{1, 1}, Padding: []int{1, 1}},
		{Op: "maxpool2d", Kernel: []int{2, 2}, Stride: []int{2, 2}, Padding: []int{0, 0}, CeilMode: true}, // 3×2 → 2×1
		{Op: "flatten"}, b.linear("s2.l", 24*2*1, 20), {Op: "relu"},
	}
	h2 := []OpSpec{b.linear("h2.l", 20, 5)}
	g.Stages = [][]OpSpec{s0, s1, s2}
	g.Heads = [][]OpSpec{h0, h1, h2}
	return g
}
