package fisher

import (
	"math"

	"github.com/exitnet/exitnet/golib/par"
	"github.com/exitnet/exitnet/golib/xerr"
)

func checkLogits(logits []float32, rows, classes int) error {
	if rows < 0 || classes < 1 {
		return xerr.Invalid("logits: shape %d×%d; need rows >= 0 and classes >= 1", rows, classes)
	}
	if len(logits) != rows*classes {
		return xerr.Invalid("logits: %d values for a %d×%d matrix", len(logits), rows, classes)
	}
	if i := firstNonFinite32(logits); i >= 0 {
		return xerr.Invalid("logits: non-finite value %v at row %d, class %d", logits[i], i/classes, i%classes)
	}
	return nil
}

// softmaxRow writes p = softmax(z) in float64 into p.
func softmaxRow(p []float64, z []float32) {
	m := float64(z[0])
	for _, v := range z {
		m = math.Max(m, float64(v))
	}
	var s float64
	for i, v := range z {
		e := math.Exp(float64(v) - m)
		p[i] = e
		s += e
	}
	for i := range p {
		p[i] /= s
	}
}

// ClassProbs writes p(c|x) = softmax(logits) row by row into dst (rows×classes),
// computed in float64. These are the per-row weights of label mode "exact".
func ClassProbs(dst, logits []float32, rows, classes int) error {
	if err := checkLogits(logits, rows, classes); err != nil {
		return err
	}
	if len(dst) != rows*classes {
		return xerr.Invalid("dst: %d values for a %d×%d matrix", len(dst), rows, classes)
	}
	par.For(rows, 256, func(lo, hi int) {
		p := make([]float64, classes)
		for r := lo; r < hi; r++ {
			softmaxRow(p, logits[r*classes:(r+1)*classes])
			for c, v := range p {
				dst[r*classes+c] = float32(v)
			}
		}
	})
	return nil
}

// splitmix64 is the SplitMix64 finaliser: a bijective 64-bit mixer.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// SampleLabels draws one label per row from softmax(logits) (label mode
// "sampled"). Row r uses the uniform u_r = splitmix64(splitmix64(seed) ^ r)
// scaled to [0, 1) (53 bits) and returns the first class whose cumulative
// probability exceeds u_r, so the result depends only on (seed, row, logits),
// not on the thread count or the batch a row arrives in (pass the global row
// index through rowOffset to make chunked calls agree with one call).
func SampleLabels(dst []int32, logits []float32, rows, classes int, seed, rowOffset uint64) error {
	if err := checkLogits(logits, rows, classes); err != nil {
		return err
	}
	if len(dst) != rows {
		return xerr.Invalid("dst: %d labels for %d rows", len(dst), rows)
	}
	if classes > math.MaxInt32 {
		return xerr.Invalid("logits: %d classes do not fit int32 labels", classes)
	}
	key := splitmix64(seed)
	par.For(rows, 256, func(lo, hi int) {
		p := make([]float64, classes)
		for r := lo; r < hi; r++ {
			softmaxRow(p, logits[r*classes:(r+1)*classes])
			u := float64(splitmix64(key^(uint64(r)+rowOffset))>>11) * (1.0 / (1 << 53))
			label := classes - 1
			var cum float64
			for c, v := range p {
				cum += v
				if u < cum {
					label = c
					break
				}
			}
			dst[r] = int32(label)
		}
	})
	return nil
}
