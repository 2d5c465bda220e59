package policy

import (
	"math"
	"math/bits"
	"slices"
	"sync"
	"unsafe"

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
// Cost (N samples, E ≤ N(K−1) record events): one pass over the confidences
// builds the events, an LSD radix sort on their 32-bit keys (passes whose digit
// is the same for every key are skipped), one sweep that writes every column
// of the curve in place (no appends, no second pass for accuracy and cost).
func ExactCurve(s *Scores, labels []int32, cost CostModel) (*Curve, error) {
	return ExactCurveInto(s, labels, cost, nil)
}

// CurveColumns provides the storage of a curve's columns for P points and K
// exits: Tau, Correct, Accuracy, MeanCost and Speedup of length P, Hist of
// length P·K (the C ABI allocates them on the C heap, so exporting the curve
// copies nothing). nil in ExactCurveInto: Go slices.
type CurveColumns func(P, K int) (*Curve, error)

// ExactCurveInto is ExactCurve writing into the columns alloc returns.
func ExactCurveInto(s *Scores, labels []int32, cost CostModel, alloc CurveColumns) (*Curve, error) {
	if err := s.checkLabels(labels); err != nil {
		return nil, err
	}
	if err := cost.check(s.K); err != nil {
		return nil, err
	}
	K, N := s.K, s.N
	// Events: (descending-order key of the record value) << 32 | i << kb | k.
	// Record values are strict increases of the running maximum over exits
	// 0..K−2; k takes kb bits (no division to unpack it in the sweep).
	kb := uint(bits.Len(uint(max(K-2, 0))))
	if K > 1 && uint64(N)<<kb >= 1<<32 {
		return nil, xerr.Invalid("logits: N = %d samples with K = %d exits is too large for the curve (N·2^%d must be < 2^32)", N, K, kb)
	}
	sc := curveScratchPool.Get().(*curveScratch)
	defer curveScratchPool.Put(sc)
	sc.ev, sc.tmp = grow(sc.ev, N*(K-1)), grow(sc.tmp, N*(K-1))
	ev := sc.ev
	e := 0
	if K > 1 {
		c0 := s.Conf[0][:N]
		for i, v := range c0 {
			ev[e] = uint64(descKey(v))<<32 | uint64(i)<<kb
			e++
		}
		// records at exits 1..K−2 need the running maximum of the earlier exits,
		// kept as its key (the running minimum: descKey reverses the order), so that
		// the record test and the update are integer compare and min, without a
		// data-dependent branch (records are about as common as not: mispredicted).
		if K > 2 {
			sc.run = grow(sc.run, N)
			run := sc.run
			for i := range run {
				run[i] = uint32(ev[i] >> 32)
			}
			for k := 1; k < K-1; k++ {
				ck := s.Conf[k][:N]
				for i, v := range ck {
					key, r := descKey(v), run[i]
					ev[e] = uint64(key)<<32 | uint64(i)<<kb | uint64(k) // kept only if a record
					inc := 0
					if key < r {
						inc = 1
					}
					e += inc
					run[i] = min(r, key)
				}
			}
		}
	}
	ev = sortKeys(ev[:e], sc.tmp, &sc.cnt)

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
	sc.st = grow(sc.st, N)
	switch {
	case K+bits.Len(uint(K-1)) <= 16:
		sweepPacked(c, s, labels, ev, kb, unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(sc.st))), N))
	case K+bits.Len(uint(K-1)) <= 32:
		sweepPacked(c, s, labels, ev, kb, unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(sc.st))), N))
	case K+bits.Len(uint(K-1)) <= 64:
		sweepPacked(c, s, labels, ev, kb, sc.st)
	default:
		sweepLookup(c, s, labels, ev, kb)
	}
	// the derived columns in their own loop: independent divisions pipeline
	nf, full, norm := float64(N), c.Full, c.Norm != nil
	for q := range P {
		mc := cost.meanCost(c.Hist[q*K:(q+1)*K], N)
		sp := math.Inf(1)
		if mc > 0 {
			sp = full / mc
		}
		c.Accuracy[q], c.MeanCost[q], c.Speedup[q] = float64(c.Correct[q])/nf, mc, sp
		if norm {
			c.Norm[q] = mc / full
		}
	}
	return c, nil
}

// sweepPacked moves the samples through the sorted events with one word of
// state per sample: bit k (k < K) says the prediction at exit k is right, the
// top bits hold the current exit, so an event costs one random access (the
// sweep's cost at large N is those cache misses). It writes Tau, Correct and
// Hist of every point.
func sweepPacked[T uint16 | uint32 | uint64](c *Curve, s *Scores, labels []int32, ev []uint64, kb uint, st []T) {
	K, N := s.K, s.N
	cs := uint(unsafe.Sizeof(T(0)))*8 - uint(bits.Len(uint(K-1))) // shift of the current exit
	clear(st)
	for k := 0; k < K; k++ {
		pk := s.Pred[k][:N]
		for i, y := range labels[:N] {
			if pk[i] == y {
				st[i] |= 1 << k
			}
		}
	}
	var correct int64
	for i, v := range st {
		correct += int64(v >> (K - 1) & 1)
		st[i] = v | T(K-1)<<cs
	}
	w := curveWriter{c: c, hist: make([]int64, K)}
	w.hist[K-1] = int64(N)
	w.emit(float32(math.Inf(1)), correct)
	low, kmask := T(1)<<cs-1, uint32(1)<<kb-1
	for a := 0; a < len(ev); {
		key := uint32(ev[a] >> 32)
		for ; a < len(ev) && uint32(ev[a]>>32) == key; a++ {
			lo := uint32(ev[a])
			i, k := lo>>kb, lo&kmask
			v := st[i]
			old := v >> cs
			st[i] = v&low | T(k)<<cs
			w.hist[old]--
			w.hist[k]++
			correct += int64(v>>k&1) - int64(v>>old&1)
		}
		w.emit(fromDescKey(key), correct)
	}
}

// sweepLookup is sweepPacked for more exits than one word holds: the current
// exit in its own array, correctness looked up in the predictions.
func sweepLookup(c *Curve, s *Scores, labels []int32, ev []uint64, kb uint) {
	K, N := s.K, s.N
	cur := make([]int32, N)
	var correct int64
	for i := range cur {
		cur[i] = int32(K - 1)
		if s.Pred[K-1][i] == labels[i] {
			correct++
		}
	}
	w := curveWriter{c: c, hist: make([]int64, K)}
	w.hist[K-1] = int64(N)
	w.emit(float32(math.Inf(1)), correct)
	kmask := uint32(1)<<kb - 1
	for a := 0; a < len(ev); {
		key := uint32(ev[a] >> 32)
		for ; a < len(ev) && uint32(ev[a]>>32) == key; a++ {
			lo := uint32(ev[a])
			i, k := int(lo>>kb), int(lo&kmask)
			old := cur[i]
			cur[i] = int32(k)
			w.hist[old]--
			w.hist[k]++
			y := labels[i]
			if s.Pred[old][i] == y {
				correct--
			}
			if s.Pred[k][i] == y {
				correct++
			}
		}
		w.emit(fromDescKey(key), correct)
	}
}

// curveScratch is ExactCurveInto's working memory (events and the sort's
// second buffer, the running maximum, the sweep's state words, the radix
// counts), pooled so that repeated curves allocate and zero nothing in steady
// state.
type curveScratch struct {
	ev, tmp []uint64
	run     []uint32 // running maximum of the confidences, as keys
	st      []uint64 // N state words, viewed as uint16/uint32/uint64 by K
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

// curveWriter appends points to preallocated curve columns.
type curveWriter struct {
	c    *Curve
	hist []int64
	p    int
}

func (w *curveWriter) emit(tau float32, correct int64) {
	K := len(w.hist)
	w.c.Tau[w.p], w.c.Correct[w.p] = tau, correct
	dst := w.c.Hist[w.p*K : (w.p+1)*K]
	for k, h := range w.hist { // a loop, not copy: K is small and memmove's call costs more
		dst[k] = h
	}
	w.p++
}

// descKey maps a float32 (not NaN) to a uint32 whose ascending order is the
// float's descending order (−0 and +0 map to the same key).
func descKey(v float32) uint32 {
	if v == 0 {
		v = 0
	}
	b := math.Float32bits(v)
	b ^= uint32(int32(b)>>31) | 0x80000000 // negative: all bits flipped; else the sign bit set
	return ^b
}

func fromDescKey(k uint32) float32 {
	b := ^k
	if b&0x80000000 != 0 {
		b &^= 0x80000000
	} else {
		b = ^b
	}
	return math.Float32frombits(b)
}

// sortKeys sorts a by the upper 32 bits (the lower bits only travel along) and
// returns the sorted keys: a or tmp (len(tmp) ≥ len(a)), whichever the last
// pass wrote. LSD radix sort over the key bits that vary only: bits above the
// highest bit in which two keys differ are the same for every key and cost no
// pass. Digits are up to 11 bits (8 KB of counts per digit), or up to 13 bits
// once there are 2^14 keys or more (32 KB each, worth clearing to save a
// scatter pass: confidences in [0.01, 1] vary in 26 bits, two 13-bit passes
// instead of three 11-bit ones). One pass counts every digit; a digit that is
// the same for every key is skipped.
func sortKeys(a, tmp []uint64, store *[3 << 13]uint32) []uint64 {
	if len(a) < 1024 {
		slices.Sort(a)
		return a
	}
	k0 := uint32(a[0] >> 32)
	var diff uint32
	for _, v := range a {
		diff |= uint32(v>>32) ^ k0
	}
	b := uint(bits.Len32(diff))
	if b == 0 {
		return a // every key equal
	}
	width := uint(11)
	if len(a) >= 1<<14 {
		width = 13
	}
	passes := (b + width - 1) / width
	width = (b + passes - 1) / passes // balanced digits
	nb := 1 << width
	mask := uint64(nb - 1)
	cnt := store[:int(passes)*nb] // counts of every digit (len(a) < 2^32: see ExactCurveInto)
	clear(cnt)
	switch passes {
	case 1:
		for _, v := range a {
			cnt[(v>>32)&mask]++
		}
	case 2:
		c1 := cnt[nb:]
		for _, v := range a {
			cnt[(v>>32)&mask]++
			c1[(v>>(32+width))&mask]++
		}
	default:
		c1, c2 := cnt[nb:], cnt[2*nb:]
		for _, v := range a {
			cnt[(v>>32)&mask]++
			c1[(v>>(32+width))&mask]++
			c2[(v>>(32+2*width))&mask]++
		}
	}
	src, dst := a, tmp[:len(a)]
	for d := range passes {
		shift := 32 + d*width
		c := cnt[int(d)*nb : int(d+1)*nb]
		if int(c[(src[0]>>shift)&mask]) == len(src) {
			continue // one bucket: the order is already right for this digit
		}
		var sum uint32
		for i := range c {
			sum, c[i] = sum+c[i], sum
		}
		for _, v := range src {
			j := (v >> shift) & mask
			dst[c[j]] = v
			c[j]++
		}
		src, dst = dst, src
	}
	return src
}
