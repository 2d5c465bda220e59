package runtime

import (
	"math"
	"sync"

	"github.com/exitnet/exitnet/golib/par"
	"github.com/exitnet/exitnet/golib/policy"
	"github.com/exitnet/exitnet/golib/xerr"
)

// Options control one Predict call.
type Options struct {
	// Measure is the confidence measure (policy.MaxSoftmax by default).
	Measure policy.Measure
	// Thresholds holds τ_k per exit: 1 value (a global τ for every exit), K−1
	// values (the last exit always accepts) or K values (the last one is ignored). A sample leaves at the first exit
	// with confidence ≥ τ_k. Nil means no early exit (everything runs to the end).
	Thresholds []float32
	// Temperature divides the logits before the softmax: finite and > 0 (1:
	// none). Zero is refused, not read as 1: it is also what a positive value
	// below float32's range (such as 1e-50 from a float64 caller) becomes.
	Temperature float32
	// ReturnLogits fills Result.Logits.
	ReturnLogits bool
	// Raw says x is raw input: the model's stored preprocessing
	// (x − mean[c]) / std[c] is applied first (refused when it stores none).
	Raw bool
}

// Result holds per-sample outputs of Predict. Slices are reused across calls
// when the same Result is passed again.
type Result struct {
	Pred []int32   // predicted class at the exit taken
	Exit []int32   // exit index taken, 0-based
	Conf []float32 // confidence at the exit taken (policy.ExitStep's conf)
	// Logits[k] holds n×classes logits of exit k (row-major) when
	// Options.ReturnLogits is set; rows of samples that left before exit k are NaN.
	Logits [][]float32
	// MACs is the number of multiply-accumulates actually executed.
	MACs int64
}

// workspace is the per-call scratch memory; pooled on the Model.
type workspace struct {
	slots    [][]float32
	idx      []int32
	run      []int32
	prevPred []int32
	conf     []float32
	pred     []int32
	exit     []bool
	pre      []float32   // preprocessed input (Options.Raw)
	cat      [][]float32 // kCat input views

	mu   sync.Mutex
	free [][]float32 // im2col scratch
}

func (ws *workspace) scratch(n int) []float32 {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for i := len(ws.free) - 1; i >= 0; i-- {
		if cap(ws.free[i]) >= n {
			b := ws.free[i]
			ws.free = append(ws.free[:i], ws.free[i+1:]...)
			return b[:n]
		}
	}
	return make([]float32, n)
}

func (ws *workspace) release(b []float32) {
	ws.mu.Lock()
	ws.free = append(ws.free, b)
	ws.mu.Unlock()
}

func growF(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

func growI(b []int32, n int) []int32 {
	if cap(b) < n {
		return make([]int32, n)
	}
	return b[:n]
}

func (m *Model) getWorkspace(rows int) *workspace {
	var ws *workspace
	m.poolMu.Lock()
	if n := len(m.pool); n > 0 {
		ws = m.pool[n-1]
		m.pool = m.pool[:n-1]
	}
	m.poolMu.Unlock()
	if ws == nil {
		ws = &workspace{slots: make([][]float32, len(m.slots))}
	}
	for i, sz := range m.slots {
		ws.slots[i] = growF(ws.slots[i], rows*sz)
	}
	ws.idx = growI(ws.idx, rows)
	ws.run = growI(ws.run, rows)
	ws.prevPred = growI(ws.prevPred, rows)
	ws.pred = growI(ws.pred, rows)
	ws.conf = growF(ws.conf, rows)
	if cap(ws.exit) < rows {
		ws.exit = make([]bool, rows)
	}
	ws.exit = ws.exit[:rows]
	return ws
}

func (m *Model) putWorkspace(ws *workspace) {
	m.poolMu.Lock()
	m.pool = append(m.pool, ws)
	m.poolMu.Unlock()
}

// Predict runs x, n samples of shape [C, H, W] (row-major, n·C·H·W values),
// through the model with early exits and writes per-sample results into dst.
//
// After head k the running samples' logits go to policy.ExitStep with τ_k;
// samples that leave are recorded and the others are gathered into a dense
// batch for stage k+1, so left samples cost nothing more.
func (m *Model) Predict(dst *Result, x []float32, n int, opts Options) error {
	K := len(m.stages)
	insz := m.input.size()
	if dst == nil {
		return xerr.Invalid("dst: nil Result")
	}
	if n < 0 {
		return xerr.Invalid("n: %d samples is negative", n)
	}
	if len(x) != n*insz {
		return xerr.Invalid("x: %d values, want n·C·H·W = %d·%d = %d for input shape %v", len(x), n, insz, n*insz, m.input)
	}
	var tau []float32
	switch len(opts.Thresholds) {
	case 0:
		tau = nil
	case 1, K - 1, K:
		tau = opts.Thresholds
		for k, t := range tau {
			if t != t && (k < K-1 || len(tau) == 1) {
				return xerr.Invalid("thresholds: entry %d is NaN", k)
			}
		}
	default:
		return xerr.Invalid("thresholds: %d values, want 1 (global), %d (one per exit but the last) or %d", len(opts.Thresholds), K-1, K)
	}
	T := opts.Temperature
	if T == 0 {
		return xerr.Invalid("temperature: 0, need a finite value > 0 (a value below 1.4e-45, such as 1e-50, underflows to 0 in float32)")
	}
	if !(T > 0) || math.IsInf(float64(T), 0) {
		return xerr.Invalid("temperature: %g, need a finite value > 0 (a value above 3.4e38 overflows to +Inf in float32)", T)
	}
	if opts.Raw && m.mean == nil {
		return xerr.Invalid("raw: the model stores no preprocessing (mean/std); pass normalised inputs, or export the model with its normalisation")
	}
	if opts.Measure < policy.MaxSoftmax || opts.Measure > policy.Patience {
		return xerr.Invalid("measure: unknown value %d", int(opts.Measure))
	}
	if bad := firstNonFinite(x, insz); bad >= 0 {
		return xerr.Invalid("x: sample %d has a NaN or infinite value (non-finite inputs are refused)", bad)
	}
	dst.Pred = growI(dst.Pred, n)
	dst.Exit = growI(dst.Exit, n)
	dst.Conf = growF(dst.Conf, n)
	dst.MACs = 0
	if opts.ReturnLogits {
		if len(dst.Logits) != K {
			dst.Logits = make([][]float32, K)
		}
		nan := float32(math.NaN())
		for k := range dst.Logits {
			dst.Logits[k] = growF(dst.Logits[k], n*m.classes)
			for i := range dst.Logits[k] {
				dst.Logits[k][i] = nan
			}
		}
	} else {
		dst.Logits = nil
	}
	if n == 0 {
		return nil
	}
	ws := m.getWorkspace(min(n, m.chunk))
	defer m.putWorkspace(ws)
	for base := 0; base < n; base += m.chunk {
		cnt := min(m.chunk, n-base)
		xc := x[base*insz : (base+cnt)*insz]
		if opts.Raw {
			if bad := m.normalize(ws, xc, cnt); bad >= 0 {
				return xerr.Invalid("x: sample %d is not finite after preprocessing ((x - mean) / std overflows float32)", base+bad)
			}
			xc = ws.pre[:cnt*insz]
		}
		if err := m.runChunk(ws, dst, xc, base, cnt, tau, T, opts); err != nil {
			return err
		}
	}
	return nil
}

// normalize writes (x − mean[c]) / std[c] (float32, as torchvision's
// Normalize) of rows samples into ws.pre and returns the first sample that
// overflowed, or −1.
func (m *Model) normalize(ws *workspace, x []float32, rows int) int {
	L := m.input.H * m.input.W
	C := m.input.C
	ws.pre = growF(ws.pre, rows*C*L)
	par.For(rows*C, grainFor(L), func(lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			mu, sd := m.mean[pl%C], m.std[pl%C]
			src, dst := x[pl*L:(pl+1)*L], ws.pre[pl*L:(pl+1)*L]
			for i, v := range src {
				dst[i] = (v - mu) / sd
			}
		}
	})
	return firstNonFinite(ws.pre[:rows*C*L], C*L)
}

// firstNonFinite returns the first sample (of size per) holding a NaN or ±Inf, or -1.
func firstNonFinite(x []float32, per int) int {
	n := len(x) / max(per, 1)
	bad := make([]int32, 0)
	var mu sync.Mutex
	par.For(n, grainFor(4*per), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			for _, v := range x[i*per : (i+1)*per] {
				if v-v != 0 { // NaN or ±Inf
					mu.Lock()
					bad = append(bad, int32(i))
					mu.Unlock()
					return
				}
			}
		}
	})
	first := -1
	for _, b := range bad {
		if first < 0 || int(b) < first {
			first = int(b)
		}
	}
	return first
}

func (m *Model) buf(ws *workspace, x []float32, id, rows, size int) []float32 {
	if id < 0 {
		return x[:rows*size]
	}
	return ws.slots[id][:rows*size]
}

func (m *Model) exec(ws *workspace, x []float32, p *program, rows int) {
	for i := range p.code {
		ins := &p.code[i]
		in := m.buf(ws, x, ins.in, rows, ins.inS.size())
		out := m.buf(ws, x, ins.out, rows, ins.outS.size())
		switch ins.kind {
		case kConv:
			ins.conv.Run(ws, in, out, rows)
		case kLinear:
			linear(ins, in, out, rows)
		case kMaxPool, kAvgPool:
			pool2d(ins, in, out, rows)
		case kGAP:
			gap(ins, in, out, rows)
		case kAdaptive:
			adaptiveAvg(ins, in, out, rows)
		case kScaleShift:
			channelwise(ins, in, nil, out, rows)
		case kAdd, kMul:
			if ins.bcast {
				channelwise(ins, in, m.buf(ws, x, ins.in2, rows, ins.outS.C), out, rows)
			} else {
				elementwise(ins, in, m.buf(ws, x, ins.in2, rows, ins.outS.size()), out, rows)
			}
		case kCat:
			srcs := ws.cat[:0]
			for j, id := range ins.srcs {
				srcs = append(srcs, m.buf(ws, x, id, rows, ins.srcC[j]*ins.outS.H*ins.outS.W))
			}
			concat(ins, srcs, out, rows)
			ws.cat = srcs[:0]
		default:
			elementwise(ins, in, nil, out, rows)
		}
	}
}

func (m *Model) runChunk(ws *workspace, dst *Result, x []float32, base, rows int, tau []float32, T float32, opts Options) error {
	K := len(m.stages)
	C := m.classes
	for i := 0; i < rows; i++ {
		ws.idx[i] = int32(i)
		ws.run[i] = 0
		ws.prevPred[i] = 0
	}
	for k := 0; k < K && rows > 0; k++ {
		st, hd := &m.stages[k], &m.heads[k]
		m.exec(ws, x, st, rows)
		m.exec(ws, x, hd, rows)
		dst.MACs += int64(rows) * (st.macs + hd.macs)
		logits := m.buf(ws, x, hd.out, rows, C)
		if bad := firstNonFinite(logits, C); bad >= 0 {
			return xerr.Invalid("x: sample %d gives non-finite logits at exit %d (overflow in the model?)", base+int(ws.idx[bad]), k)
		}
		t := float32(math.Inf(1))
		if tau != nil && k < K-1 {
			t = tau[min(k, len(tau)-1)]
		}
		if err := policy.ExitStep(k, K, logits, rows, C, opts.Measure, t, T,
			ws.run, ws.prevPred, ws.conf, ws.pred, ws.exit); err != nil {
			return xerr.Wrap(err, "exit %d", k)
		}
		if opts.ReturnLogits {
			lk := dst.Logits[k]
			for i := 0; i < rows; i++ {
				o := base + int(ws.idx[i])
				copy(lk[o*C:(o+1)*C], logits[i*C:(i+1)*C])
			}
		}
		// Record the samples that leave; compact the others in place.
		act := ws.slots[st.out]
		sz := st.outS.size()
		j := 0
		for i := 0; i < rows; i++ {
			o := base + int(ws.idx[i])
			if ws.exit[i] {
				dst.Pred[o] = ws.pred[i]
				dst.Exit[o] = int32(k)
				dst.Conf[o] = ws.conf[i]
				continue
			}
			if j != i {
				copy(act[j*sz:(j+1)*sz], act[i*sz:(i+1)*sz])
				ws.idx[j] = ws.idx[i]
				ws.run[j] = ws.run[i]
				ws.prevPred[j] = ws.prevPred[i]
			}
			j++
		}
		rows = j
	}
	return nil
}
