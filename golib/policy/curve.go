package policy

import (
	"math"
	"math/bits"
	"sync"

	"github.com/exitnet/exitnet/golib/xerr"
)

// Curve is the exact accuracy-versus-cost curve for a global threshold, one
// entry per distinct operating point, in sweep order: point 0 is τ = +Inf
// (everyone at the last exit), then τ decreases through every event value;
// the last point sends everyone to exit 0 (when K > 1). Mean cost is
// non-increasing along the curve.
type Curve struct {
	K        int
	N        int
	Tau      []float32
	Correct  []int64
	Accuracy []float64
	MeanCost []float64
	Speedup  []float64
	Norm     []float64 // MeanCost/Full; filled only when CurveColumns provides it (the C ABI's normalized_cost)
	Hist     []int64   // len(Tau)×K, row-major: Hist[p*K+k]
	Full     float64   // cost of the full network
	First    float64   // cost of leaving at exit 0
}

// Len is the number of points.
func (c *Curve) Len() int { return len(c.Tau) }

// Point returns point p (Hist shares the curve's memory).
func (c *Curve) Point(p int) Point {
	return Point{Tau: c.Tau[p], Correct: c.Correct[p], Accuracy: c.Accuracy[p], MeanCost: c.MeanCost[p],
		Speedup: c.Speedup[p], Hist: c.Hist[p*c.K : (p+1)*c.K]}
}

// ExactCurve sweeps every breakpoint of the global-threshold policy (see the
// package doc) in O(NK log NK) and returns all distinct operating points.
//
// Cost (N samples, E ≤ N(K−1) record events): one pass over the samples builds
// the events, an LSD radix sort on their 32-bit keys (passes whose digit is the
// same for every key are skipped), one sweep that writes every column of the
// curve in place (no appends, no second pass for accuracy and cost).
func ExactCurve(s *Scores, labels []int32, cost CostModel) (*Curve, error) {
	return ExactCurveInto(s, labels, cost, nil)
}

// CurveColumns provides the storage of a curve's columns for P points and K
// exits: Tau, Correct, Accuracy, MeanCost and Speedup of length P, Hist of
// length P·K (the C ABI allocates them on the C heap, so exporting the curve
// copies nothing). nil in ExactCurveInto: Go slices.
type CurveColumns func(P, K int) (*Curve, error)

// MaxCurveExits is the most exits ExactCurve accepts: an event packs its two
// exits in 15 bits each next to its 32-bit key.
const MaxCurveExits = 1 << 15

// ExactCurveInto is ExactCurve writing into the columns alloc returns.
//
// An event is a record of sample i's running maximum over exits 0..K−2: at
// exit k with value v = conf_k(i) > max(conf_0..k−1(i)). As τ falls through v
// the sample moves to exit k from exit o, its next record exit after k (K−1
// when k is its last record), and its correctness changes by
// Δ = [pred_k(i) = y_i] − [pred_o(i) = y_i]. Each event carries (k, o, Δ) and
// needs nothing about its sample once built, so the sweep after the sort reads
// the events in order and touches no per-sample state:
//
//	event = descKey(v) << 32 | (Δ+1) << 2b | o << b | k     (b = bits for K−1)
func ExactCurveInto(s *Scores, labels []int32, cost CostModel, alloc CurveColumns) (*Curve, error) {
	if err := s.checkLabels(labels); err != nil {
		return nil, err
	}
	if err := cost.check(s.K); err != nil {
		return nil, err
	}
	K, N := s.K, s.N
	if K > MaxCurveExits {
		return nil, xerr.Invalid("logits: %d exits; the exact curve handles at most %d", K, MaxCurveExits)
	}
	if uint64(N)*uint64(K-1) >= 1<<32 {
		return nil, xerr.Invalid("logits: N = %d samples with K = %d exits is too large for the curve (N·(K−1) must be < 2^32)", N, K)
	}
	// bits per exit field of an event: at least 2, buildEvents4's fixed width for K ≤ 4
	kb := uint(max(2, bits.Len(uint(K-1))))
	sc := curveScratchPool.Get().(*curveScratch)
	defer curveScratchPool.Put(sc)
	sc.ev, sc.tmp = grow(sc.ev, N*(K-1)), grow(sc.tmp, N*(K-1))
	var e int
	if K <= 4 {
		e = buildEvents4(s, labels, sc.ev)
	} else {
		e = buildEvents(s, labels, kb, sc.ev, sc)
	}
	ev := sortKeys(sc.ev[:e], sc.tmp, &sc.cnt)

	P := 1 // distinct keys + the τ = +Inf point
	for a := 1; a <= len(ev); a++ {
		if a == len(ev) || uint32(ev[a]>>32) != uint32(ev[a-1]>>32) {
			P++
		}
	}
	var c *Curve
	if alloc == nil {
		c = &Curve{Tau: make([]float32, P), Correct: make([]int64, P), Hist: make([]int64, P*K),
			Accuracy: make([]float64, P), MeanCost: make([]float64, P), Speedup: make([]float64, P)}
	} else {
		var err error
		if c, err = alloc(P, K); err != nil {
			return nil, err
		}
	}
	c.K, c.N, c.Full, c.First = K, N, cost.Full(), cost.Cum[0]
	sweepEvents(c, s, labels, cost, ev, kb, sc)
	return c, nil
}

// buildEvents writes the events of every sample into ev and returns their
// number. Per sample: a forward pass over exits 0..K−2 finds the records
// (integer compares on descending keys: a record is a key below the running
// minimum), a backward pass emits them with their next record exit. Each slot
// is written and kept only if it is a record, without a data-dependent branch
// (records are about as common as not).
func buildEvents(s *Scores, labels []int32, kb uint, ev []uint64, sc *curveScratch) int {
	K, N := s.K, s.N
	sc.keys, sc.rec = grow(sc.keys, K), grow(sc.rec, K)
	keys, rec := sc.keys[:K-1], sc.rec[:K-1]
	last := s.Pred[K-1][:N]
	e := 0
	for i := 0; i < N; i++ {
		run := ^uint32(0) // above every key (descKey never returns it)
		for k := range keys {
			key := descKey(s.Conf[k][i])
			rec[k] = b2u(key < run)
			run = min(run, key)
			keys[k] = key
		}
		y := labels[i]
		next, cNext := uint64(K-1), b2u(last[i] == y)
		for k := K - 2; k >= 0; k-- {
			ck := b2u(s.Pred[k][i] == y)
			ev[e] = uint64(keys[k])<<32 | (ck+1-cNext)<<(2*kb) | next<<kb | uint64(k)
			r := rec[k]
			e += int(r)
			m := -r // all ones for a record
			next = next&^m | uint64(k)&m
			cNext = cNext&^m | ck&m
		}
	}
	return e
}

// buildEvents4 is buildEvents unrolled for K ≤ 4 (the common case): the exits
// of a sample in registers, one row pointer per exit hoisted out of the loop.
func buildEvents4(s *Scores, labels []int32, ev []uint64) int {
	K, N := s.K, s.N
	if K == 1 {
		return 0
	}
	const kb = 2
	labels = labels[:N]
	c0, p0 := s.Conf[0][:N], s.Pred[0][:N]
	pl := s.Pred[K-1][:N]
	var c1, c2 []float32
	var p1, p2 []int32
	if K > 2 {
		c1, p1 = s.Conf[1][:N], s.Pred[1][:N]
	}
	if K > 3 {
		c2, p2 = s.Conf[2][:N], s.Pred[2][:N]
	}
	e := 0
	for i, y := range labels {
		next, cNext := uint64(K-1), b2u(pl[i] == y)
		k0 := descKey(c0[i])
		if K == 4 {
			k1, k2 := descKey(c1[i]), descKey(c2[i])
			r1 := b2u(k1 < k0)
			r2 := b2u(k2 < min(k0, k1))
			ck := b2u(p2[i] == y)
			ev[e] = uint64(k2)<<32 | (ck+1-cNext)<<(2*kb) | next<<kb | 2
			e += int(r2)
			m := -r2
			next, cNext = next&^m|2&m, cNext&^m|ck&m
			ck = b2u(p1[i] == y)
			ev[e] = uint64(k1)<<32 | (ck+1-cNext)<<(2*kb) | next<<kb | 1
			e += int(r1)
			m = -r1
			next, cNext = next&^m|1&m, cNext&^m|ck&m
		} else if K == 3 {
			k1 := descKey(c1[i])
			r1 := b2u(k1 < k0)
			ck := b2u(p1[i] == y)
			ev[e] = uint64(k1)<<32 | (ck+1-cNext)<<(2*kb) | next<<kb | 1
			e += int(r1)
			m := -r1
			next, cNext = next&^m|1&m, cNext&^m|ck&m
		}
		ck := b2u(p0[i] == y)
		ev[e] = uint64(k0)<<32 | (ck+1-cNext)<<(2*kb) | next<<kb
		e++
	}
	return e
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// sweepEvents walks the sorted events and writes every column of every point
// (K = 4: in one loop; other K: τ, correct and the histogram, then derive). Point 0 is τ = +Inf (everyone at K−1); a point is
// written after the last event of each run of equal keys.
func sweepEvents(c *Curve, s *Scores, labels []int32, cost CostModel, ev []uint64, kb uint, sc *curveScratch) {
	K, N := s.K, s.N
	sc.hist = grow(sc.hist, K)
	hist := sc.hist
	clear(hist)
	hist[K-1] = int64(N)
	var correct int64
	for i, y := range labels[:N] {
		if s.Pred[K-1][i] == y {
			correct++
		}
	}
	c.Tau[0], c.Correct[0] = float32(math.Inf(1)), correct
	copy(c.Hist[:K], hist)
	if K == 4 {
		sweep4(ev, c, (*[4]float64)(cost.Cum), 0, uint64(N)<<32, correct)
		derive(c, cost, 0, 1)
		return
	}
	sweepK(ev, kb, c.Tau, c.Correct, c.Hist, hist, correct)
	derive(c, cost, 0, len(c.Tau))
}

// sweepK is the sweep for any K: the histogram in memory, one increment and
// one decrement per event (not inlined: its loop keeps its variables in
// registers).
//
//go:noinline
func sweepK(ev []uint64, kb uint, tau []float32, corr, out, hist []int64, correct int64) {
	K := len(hist)
	m := uint32(1)<<kb - 1
	p := 1
	for a, v := range ev {
		lo := uint32(v)
		hist[lo&m]++
		hist[lo>>kb&m]--
		correct += int64(lo>>(2*kb)) - 1
		if a+1 < len(ev) && uint32(ev[a+1]>>32) == uint32(v>>32) {
			continue // a tie: the point is written after its last event
		}
		tau[p], corr[p] = fromDescKey(uint32(v>>32)), correct
		copy(out[p*K:(p+1)*K], hist)
		p++
	}
}

// sweep4 is the sweep for K = 4 with the four counts packed in two words of
// two 32-bit fields (h0 | h1<<32, h2 | h3<<32; N < 2^32): an event adds one
// precomputed pair of word deltas, +1 at its exit and −1 at the exit it
// leaves (exact in two's complement: every count stays in [0, N], so the
// packed words are always the counts' own representation). No histogram in
// memory, so no store-to-load chain between events.
//
//go:noinline
func sweep4(ev []uint64, c *Curve, cum *[4]float64, w0, w1 uint64, correct int64) {
	d := &sweep4Deltas
	tau, corr, out := c.Tau, c.Correct, c.Hist
	acc, mcost, speed, norm := c.Accuracy, c.MeanCost, c.Speedup, c.Norm
	nf, full, inf := float64(c.N), c.Full, math.Inf(1)
	p := 1
	for a, v := range ev {
		x := uint32(v) & 63
		w0 += d.w0[x]
		w1 += d.w1[x]
		correct += d.dc[x]
		if a+1 < len(ev) && uint32(ev[a+1]>>32) == uint32(v>>32) {
			continue // a tie: the point is written after its last event
		}
		h0, h1, h2, h3 := int64(uint32(w0)), int64(w0>>32), int64(uint32(w1)), int64(w1>>32)
		tau[p], corr[p] = fromDescKey(uint32(v>>32)), correct
		h := out[4*p : 4*p+4]
		h[0], h[1], h[2], h[3] = h0, h1, h2, h3
		// the derived columns from the counts in registers, CostModel.meanCost's sum in its
		// order (the same value); no loop-carried dependency, so the divisions overlap
		s := 0.0
		s += float64(h0) * cum[0]
		s += float64(h1) * cum[1]
		s += float64(h2) * cum[2]
		s += float64(h3) * cum[3]
		mc := s / nf
		sp := inf
		if mc > 0 {
			sp = full / mc
		}
		acc[p], mcost[p], speed[p] = float64(correct)/nf, mc, sp
		if norm != nil {
			norm[p] = mc / full
		}
		p++
	}
}

// sweep4Deltas maps an event's low 6 bits (k | o<<2 | (Δ+1)<<4, kb = 2) to its
// packed histogram deltas and its change of the correct count.
var sweep4Deltas = func() (t struct {
	w0, w1 [64]uint64
	dc     [64]int64
}) {
	for x := range 64 {
		k, o, d := x&3, x>>2&3, x>>4
		var w [2]uint64
		w[k/2] += 1 << (32 * (k % 2))
		w[o/2] -= 1 << (32 * (o % 2))
		t.w0[x], t.w1[x], t.dc[x] = w[0], w[1], int64(d-1)
	}
	return t
}()

// derive fills the accuracy, mean cost, speed-up and normalised cost of points
// [lo, hi) from their histograms, in a loop of its own: the divisions of
// independent points pipeline.
func derive(c *Curve, cost CostModel, lo, hi int) {
	K, nf, full, norm := c.K, float64(c.N), c.Full, c.Norm != nil
	for q := lo; q < hi; q++ {
		mc := cost.meanCost(c.Hist[q*K:(q+1)*K], c.N)
		sp := math.Inf(1)
		if mc > 0 {
			sp = full / mc
		}
		c.Accuracy[q], c.MeanCost[q], c.Speedup[q] = float64(c.Correct[q])/nf, mc, sp
		if norm {
			c.Norm[q] = mc / full
		}
	}
}

// curveScratch is ExactCurveInto's working memory (events and the sort's
// second buffer, one sample's keys, the histogram, the radix counts), pooled so that repeated curves allocate and zero nothing in steady
// state.
type curveScratch struct {
	ev, tmp []uint64
	keys    []uint32 // one sample's keys at exits 0..K−2 (buildEvents)
	rec     []uint64 // and whether each is a record (1) or not (0)
	hist    []int64  // the sweep's exit histogram
	cnt     [3 << 13]uint32
}

var curveScratchPool = sync.Pool{New: func() any { return new(curveScratch) }}

// grow returns s resized to n, reallocated only when its capacity is short
// (the contents are not kept).
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
