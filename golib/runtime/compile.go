package runtime

import (
	"fmt"
	"github.com/exitnet/exitnet/golib/internal/convk"
	"strconv"
	"strings"

	"github.com/exitnet/exitnet/golib/xerr"
	"gorgonia.org/tensor"
)

// opKind is the kernel an instruction runs.
type opKind uint8

const (
	kConv       opKind = iota // a convKernel chosen by chooseConvKernel (im2col+GEMM, depthwise, ...)
	kLinear                   // GEMM y = x·Wᵀ + b
	kAct                      // an activation alone (in place or out of place)
	kAffine                   // y = x·alpha + beta (add_scalar, mul_scalar)
	kScaleShift               // y[c] = x[c]·w[c] + b[c]
	kMaxPool
	kAvgPool
	kAdaptive // adaptive average pool to outS.H × outS.W (torch's bins)
	kGAP      // mean over H, W (adaptive pool to 1×1, mean)
	kAdd      // out = act(in + in2), in2 broadcast when bcast
	kMul      // out = act(in · in2), in2 broadcast when bcast
	kCat      // channel concatenation of srcs
	kCopy
)

// instr is one step of a compiled program. Buffers are workspace slots; -1 is
// the caller's input.
type instr struct {
	kind         opKind
	in, in2, out int
	inS, outS    shape
	act          activation

	w, b       []float32 // weights (conv: [C_out, C_in/g, kh, kw]; linear: [out, in]; scale_shift: scale, shift); b may be nil
	groups     int
	k, s, p, d [2]int
	countPad   bool
	macs       int64  // per sample
	name       string // where, for messages: stage 1 node "conv1" (conv2d)
	node       string // the graph node's own name (conv2d and linear; Kernels)
	oneByOne   bool   // 1×1, stride 1, padding 0: the input is already the im2col matrix
	colRows    int    // (C_in/g)·kh·kw
	pool2      bool   // a following 2×2 stride-2 max-pool is fused into the epilogue
	convS      shape  // the convolution's own output (before the fused pool)
	conv       convKernel
	dense      *convk.Dense // linear with 4 or more rows (newDense; nil: BLAS)

	alpha, beta float32 // kAffine
	bcast       bool    // kAdd, kMul: in2 is [C, 1, 1], broadcast over in's H, W
	srcs        []int   // kCat inputs
	srcC        []int   // kCat channels of each input
}

// program is a compiled stage or head.
type program struct {
	code    []instr
	in, out int
	outS    shape
	macs    int64 // per sample (conv2d and linear)
	work    int64 // per sample, every op (see nodeWork)
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

// compiler turns the graph into programs, checking shapes and weights, and plans
// the workspace: every value lives in a slot; a slot is reference-counted by the
// reads still to come (plus a pin on the block's output) and goes back to the
// planner when the count drops to zero, so a value read by several nodes (a
// residual branch) stays alive until its last reader ran.
type compiler struct {
	weights map[string]*tensor.Dense
	plan    planner
	code    []instr
	refs    map[int]int  // pending reads per slot, this block
	owned   map[int]bool // slots this block may overwrite and release
}

// val is a node's result: the slot holding it and its shape.
type val struct {
	slot int
	s    shape
}

// blockCtx is the per-block state of the compiler.
type blockCtx struct {
	where     string
	b         *Block
	idx       map[string]int
	uses      []int   // reads of each node's value (+1 for the block's output)
	consumers [][]int // nodes reading each node
	vals      []val
	done      []bool // compiled (or fused into an earlier node)
	in        val
	macs      int64
	work      int64
}

func (x *blockCtx) val(name string) val {
	if name == InputName {
		return x.in
	}
	return x.vals[x.idx[name]]
}

// soleConsumer returns the node that is i's only reader (and i is not the
// block's output), or −1.
func (x *blockCtx) soleConsumer(i int) int {
	if x.uses[i] == 1 && len(x.consumers[i]) == 1 {
		return x.consumers[i][0]
	}
	return -1
}

// compile checks the graph against the weights and builds the programs.
func compile(g *Graph, weights map[string]*tensor.Dense) (*Model, error) {
	c := &compiler{weights: weights}
	in := shape{C: g.InputShape[0], H: g.InputShape[1], W: g.InputShape[2]}
	m := &Model{graph: g, input: in, classes: g.NumClasses, weights: weights}
	if p := g.Preprocess; p != nil {
		m.mean, m.std = make([]float32, in.C), make([]float32, in.C)
		for i := range in.C {
			m.mean[i], m.std[i] = float32(p.Mean[i]), float32(p.Std[i])
		}
	}
	cur, s, owned := -1, in, false
	var work int64
	for k := range g.Stages {
		st, err := c.block(fmt.Sprintf("stage %d", k), &g.Stages[k], cur, owned, s, true)
		if err != nil {
			return nil, err
		}
		hd, err := c.block(fmt.Sprintf("head %d", k), &g.Heads[k], st.out, false, st.outS, false)
		if err != nil {
			return nil, err
		}
		if !hd.outS.flat || hd.outS.C != g.NumClasses {
			return nil, xerr.IO("head %d: output %q is %v, want flat [%d] logits (num_classes; end the head with flatten/linear)",
				k, g.Heads[k].Output, hd.outS, g.NumClasses)
		}
		if hd.out != st.out {
			c.plan.release(hd.out)
		}
		if cs := g.Costs; cs != nil {
			if cs.Stages[k] != st.macs {
				return nil, xerr.IO("stage %d: declared cost %d MACs per sample, the graph computes %d", k, cs.Stages[k], st.macs)
			}
			if cs.Heads[k] != hd.macs {
				return nil, xerr.IO("head %d: declared cost %d MACs per sample, the graph computes %d", k, cs.Heads[k], hd.macs)
			}
		}
		work += st.work + hd.work
		m.stages = append(m.stages, st)
		m.heads = append(m.heads, hd)
		cur, s, owned = st.out, st.outS, true
	}
	if lim := MaxWorkPerSample(); work > lim {
		return nil, xerr.IO("model graph: %d operations per sample (MACs plus pooling and elementwise work), more than the limit %d "+
			"(runtime.SetMaxWorkPerSample / exitnet_model_set_max_work_per_sample raise it)", work, lim)
	}
	m.work = work
	m.slots = c.plan.sizes
	per := 0
	for _, sz := range m.slots {
		per += sz
	}
	if per > maxWorkspacePerSample {
		return nil, xerr.IO("model graph: needs %d activation values alive per sample, more than %d", per, maxWorkspacePerSample)
	}
	m.chunk = chunkRows(per)
	return m, nil
}

// chunkActivationBytes bounds the activations alive for one chunk of samples.
// The graph runs layer by layer over a chunk, so each layer reads what the
// previous one wrote: with 256 samples of the small CNN's 25 KB conv1 output
// (6.4 MB) that round trip went to DRAM and repacking it for the next conv cost
// a third of an early exit's time. Chunks whose activations fit in about this
// much cache (L2 plus a share of L3) made exit 0 of bench_runtime.py's CNN
// 1.5-1.7x cheaper in CPU time; dense models (7 KB per MLP sample) keep 256-row
// chunks, which amortise streaming their weights.
const chunkActivationBytes = 2 << 20

// chunkRows is the samples per internal chunk for per activation values per
// sample: what fits in chunkActivationBytes, at least 16 rows (the kernels'
// tiles and the thread split want a few rows), at most 256, and never more
// than 64 Mi values of workspace.
func chunkRows(per int) int {
	per = max(1, per)
	return max(1, min(256, (64<<20)/per, max(16, chunkActivationBytes/(4*per))))
}

// consume records one read of slot; the slot is released after its last read.
func (c *compiler) consume(slot int) {
	c.refs[slot]--
	if c.refs[slot] == 0 && c.owned[slot] {
		c.plan.release(slot)
		delete(c.owned, slot)
	}
}

// reusable reports whether an instruction may write its output over slot:
// the block owns it and this read is the last one.
func (c *compiler) reusable(slot int) bool {
	return slot >= 0 && c.owned[slot] && c.refs[slot] == 1
}

// emit appends ins, writing into srcs[reuse] (in place) or a fresh slot, and
// then counts the reads of srcs. It returns the value the instruction makes.
func (c *compiler) emit(ins instr, srcs []int, reuse int, uses int) val {
	if reuse >= 0 {
		ins.out = srcs[reuse]
	} else {
		ins.out = c.plan.alloc(ins.outS.size())
		c.owned[ins.out] = true
	}
	c.code = append(c.code, ins)
	c.refs[ins.out] += uses
	for _, s := range srcs {
		c.consume(s)
	}
	return val{slot: ins.out, s: ins.outS}
}

// alias makes a value that shares src's slot under another shape (flatten,
// identity): no instruction.
func (c *compiler) alias(src val, s shape, uses int) val {
	c.refs[src.slot] += uses
	c.consume(src.slot)
	return val{slot: src.slot, s: s}
}

// block compiles one stage or head reading slot in (owned: the block may
// overwrite and release it) of shape s. With mustOwn the output is copied into
// a slot of its own when it is not one already (stages: compaction rewrites it).
func (c *compiler) block(where string, b *Block, in int, owned bool, s shape, mustOwn bool) (program, error) {
	c.code = nil
	c.refs = map[int]int{}
	c.owned = map[int]bool{}
	n := len(b.Nodes)
	x := &blockCtx{where: where, b: b, idx: make(map[string]int, n), uses: make([]int, n),
		consumers: make([][]int, n), vals: make([]val, n), done: make([]bool, n), in: val{slot: in, s: s}}
	for i := range b.Nodes {
		x.idx[b.Nodes[i].Name] = i
	}
	inUses := 0
	for i := range b.Nodes {
		for _, name := range b.Nodes[i].Inputs {
			if name == InputName {
				inUses++
				continue
			}
			j := x.idx[name]
			x.uses[j]++
			x.consumers[j] = append(x.consumers[j], i)
		}
	}
	if b.Output == InputName {
		inUses++
	} else {
		x.uses[x.idx[b.Output]]++
	}
	if owned && in >= 0 {
		c.owned[in] = true
		c.refs[in] = inUses
	}
	for i := range b.Nodes {
		if x.done[i] {
			continue
		}
		if err := c.node(x, i); err != nil {
			return program{}, err
		}
	}
	out := x.val(b.Output)
	if mustOwn && (out.slot < 0 || !c.owned[out.slot]) {
		cp := instr{kind: kCopy, in: out.slot, inS: out.s, outS: out.s, name: where + " output (copy)"}
		out = c.emit(cp, []int{out.slot}, -1, 1)
	}
	return program{code: c.code, in: in, out: out.slot, outS: out.s, macs: x.macs, work: x.work}, nil
}

// weight returns the named tensor's data after checking its rank and, for
// each want[i] ≥ 0, its dimension i.
func (c *compiler) weight(where, attr, name string, want ...int) ([]float32, []int, error) {
	if name == "" {
		return nil, nil, xerr.IO("%s: no %s given", where, attr)
	}
	t, ok := c.weights[name]
	if !ok {
		return nil, nil, xerr.IO("%s: %s %q is not in the file", where, attr, name)
	}
	got := []int(t.Shape())
	okShape := len(got) == len(want)
	for i := 0; okShape && i < len(want); i++ {
		okShape = want[i] < 0 || got[i] == want[i]
	}
	if !okShape {
		ws := make([]string, len(want))
		for i, w := range want {
			ws[i] = "any"
			if w >= 0 {
				ws[i] = strconv.Itoa(w)
			}
		}
		return nil, nil, xerr.IO("%s: %s %q has shape %v, want [%s]", where, attr, name, got, strings.Join(ws, " "))
	}
	return t.Data().([]float32), got, nil
}

func (c *compiler) bias(where, name string, n int) ([]float32, error) {
	if name == "" {
		return nil, nil
	}
	b, _, err := c.weight(where, "bias", name, n)
	return b, err
}

func checkAct(where string, s shape) error {
	if s.C < 1 || s.H < 1 || s.W < 1 {
		return xerr.IO("%s: output %v is empty", where, s)
	}
	if s.C > maxActivation || s.H > maxDim || s.W > maxDim || s.size() > maxActivation {
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
