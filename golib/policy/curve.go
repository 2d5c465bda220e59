package policy

import (
	"math"
	"slices"

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
	Hist     []int64 // len(Tau)×K, row-major: Hist[p*K+k]
	Full     float64 // cost of the full network
	First    float64 // cost of leaving at exit 0
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
func ExactCurve(s *Scores, labels []int32, cost CostModel) (*Curve, error) {
	if err := s.checkLabels(labels); err != nil {
		return nil, err
	}
	if err := cost.check(s.K); err != nil {
		return nil, err
	}
	K, N := s.K, s.N
	// Events: (descending-order key of the record value) << 32 | event id,
	// event id = i*(K−1) + k. Record values are strict increases of the
	// running maximum over exits 0..K−2.
	if uint64(N)*uint64(K) >= 1<<32 {
		return nil, xerr.Invalid("logits: N·K = %d too large for the curve (max 2^32)", uint64(N)*uint64(K))
	}
	ev := make([]uint64, 0, N*(K-1))
	for i := 0; i < N; i++ {
		m := float32(math.Inf(-1))
		for k := 0; k < K-1; k++ {
			if v := s.Conf[k][i]; v > m {
				m = v
				ev = append(ev, uint64(descKey(v))<<32|uint64(i*(K-1)+k))
			}
		}
	}
	sortKeys(ev)

	cur := make([]int32, N) // current exit of each sample
	hist := make([]int64, K)
	hist[K-1] = int64(N)
	var correct int64
	for i := 0; i < N; i++ {
		if s.Pred[K-1][i] == labels[i] {
			correct++
		}
		cur[i] = int32(K - 1)
	}
	c := &Curve{K: K, N: N, Full: cost.Full(), First: cost.Cum[0]}
	est := len(ev) + 1
	c.Tau = make([]float32, 0, est)
	c.Correct = make([]int64, 0, est)
	c.Hist = make([]int64, 0, est*K)
	emit := func(tau float32) {
		c.Tau = append(c.Tau, tau)
		c.Correct = append(c.Correct, correct)
		c.Hist = append(c.Hist, hist...)
	}
	emit(float32(math.Inf(1)))
	for a := 0; a < len(ev); {
		key := uint32(ev[a] >> 32)
		for ; a < len(ev) && uint32(ev[a]>>32) == key; a++ {
			id := int(uint32(ev[a]))
			i, k := id/(K-1), id%(K-1)
			old := cur[i]
			cur[i] = int32(k)
			hist[old]--
			hist[k]++
			y := labels[i]
			if s.Pred[old][i] == y {
				correct--
			}
			if s.Pred[k][i] == y {
				correct++
			}
		}
		emit(fromDescKey(key))
	}
	P := len(c.Tau)
	c.Accuracy = make([]float64, P)
	c.MeanCost = make([]float64, P)
	c.Speedup = make([]float64, P)
	for p := range P {
		pt := makePoint(0, c.Correct[p], c.Hist[p*K:(p+1)*K], N, cost)
		c.Accuracy[p], c.MeanCost[p], c.Speedup[p] = pt.Accuracy, pt.MeanCost, pt.Speedup
	}
	return c, nil
}

// descKey maps a float32 (not NaN) to a uint32 whose ascending order is the
// float's descending order (−0 and +0 map to the same key).
func descKey(v float32) uint32 {
	if v == 0 {
		v = 0
	}
	b := math.Float32bits(v)
	if b&0x80000000 != 0 {
		b = ^b
	} else {
		b |= 0x80000000
	}
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

// sortKeys sorts by the upper 32 bits (the lower bits only need to travel
// along): LSD radix sort with 11-, 11- and 10-bit digits for large inputs.
func sortKeys(a []uint64) {
	if len(a) < 1024 {
		slices.Sort(a)
		return
	}
	tmp := make([]uint64, len(a))
	var cnt [1 << 11]int
	src, dst := a, tmp
	for _, shift := range [...]uint{32, 43, 54} {
		clear(cnt[:])
		for _, v := range src {
			cnt[(v>>shift)&0x7ff]++
		}
		sum := 0
		for d := range cnt {
			sum, cnt[d] = sum+cnt[d], sum
		}
		for _, v := range src {
			d := (v >> shift) & 0x7ff
			dst[cnt[d]] = v
			cnt[d]++
		}
		src, dst = dst, src
	}
	copy(a, src) // three passes: the result is in tmp
}
