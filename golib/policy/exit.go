package policy

import (
	"math"
	"sync"

	"github.com/exitnet/exitnet/golib/internal/vexp"
	"github.com/exitnet/exitnet/golib/par"
	"github.com/exitnet/exitnet/golib/xerr"
)

// Measure names a per-exit confidence measure. Every measure is oriented so that
// a higher value means "more confident"; a sample leaves at exit k when its
// confidence is at least the threshold τ_k.
type Measure int

const (
	// MaxSoftmax is the largest class probability, max_c p_c, in [1/C, 1].
	MaxSoftmax Measure = iota
	// NegEntropy is the normalised negative entropy, shifted to [0, 1]:
	//	conf = 1 − H(p)/log C,   H(p) = −Σ_c p_c log p_c
	// (1 for a one-hot p, 0 for the uniform one; conf = 1 when C = 1).
	// This is −H/log C plus one: same ordering, thresholds on a [0, 1] scale.
	NegEntropy
	// Margin is the top-1 minus the top-2 probability, p_(1) − p_(2), in [0, 1]
	// (0 when the two largest logits are equal; p_(1) = 1 when C = 1).
	Margin
	// Patience is the number of consecutive exits, ending at the current one,
	// that predicted the same class (1 at the first exit). Threshold τ = p means
	// "leave once p consecutive exits agree".
	Patience
)

var measureNames = [...]string{"max_softmax", "entropy", "margin", "patience"}

// String returns the name ParseMeasure accepts.
func (m Measure) String() string {
	if m >= 0 && int(m) < len(measureNames) {
		return measureNames[m]
	}
	return "Measure(?)"
}

// ParseMeasure maps "max_softmax", "entropy", "margin", "patience" to a Measure.
func ParseMeasure(s string) (Measure, error) {
	for i, n := range measureNames {
		if s == n {
			return Measure(i), nil
		}
	}
	return 0, xerr.Invalid("measure: %q is not one of max_softmax, entropy, margin, patience", s)
}

func (m Measure) valid() bool { return m >= MaxSoftmax && m <= Patience }

// ExitStep decides, for the rows still running at exit k (0-based) of K exits, which leave now.
//
// logits: rows×classes row-major float32. temperature > 0 divides logits first (1 = none).
// conf[i], pred[i] are written for every row; exit[i] is conf[i] >= tau, and always true when k == K-1.
// For Patience, conf[i] is the number of consecutive exits (ending at k) with the same prediction,
// kept in run[i]/prevPred[i] (in/out per row; pass run[i]=0 at k=0); the other measures ignore them
// (they may be nil).
//
// The exponentials exp((z − max z)/T) are float32 (golib/internal/vexp, relative error ≤ 3 ulp
// plus |z − max z|/T·1.2e−7), their sum too; the entropy's Σ p·log p is accumulated in float64.
// Identical rows give identical confidences. pred is the first index of the largest logit
// (numpy argmax). A NaN or infinite logit is an error naming the row; rows before it may
// already have been written.
func ExitStep(k, K int, logits []float32, rows, classes int, m Measure, tau, temperature float32,
	run, prevPred []int32, conf []float32, pred []int32, exit []bool) error {
	if K < 1 {
		return xerr.Invalid("K: %d exits, need at least 1", K)
	}
	if k < 0 || k >= K {
		return xerr.Invalid("k: exit %d out of range [0, %d)", k, K)
	}
	if rows < 0 {
		return xerr.Invalid("rows: %d is negative", rows)
	}
	if classes < 1 {
		return xerr.Invalid("classes: %d, need at least 1", classes)
	}
	if len(logits) != rows*classes {
		return xerr.Invalid("logits: length %d, want rows×classes = %d×%d = %d", len(logits), rows, classes, rows*classes)
	}
	if !m.valid() {
		return xerr.Invalid("measure: unknown value %d", int(m))
	}
	if math.IsNaN(float64(tau)) {
		return xerr.Invalid("tau: NaN")
	}
	if !(temperature > 0) || math.IsInf(float64(temperature), 0) {
		return xerr.Invalid("temperature: %g, need a finite value > 0", temperature)
	}
	if len(conf) < rows {
		return xerr.Invalid("conf: length %d < rows %d", len(conf), rows)
	}
	if len(pred) < rows {
		return xerr.Invalid("pred: length %d < rows %d", len(pred), rows)
	}
	if len(exit) < rows {
		return xerr.Invalid("exit: length %d < rows %d", len(exit), rows)
	}
	if m == Patience {
		if len(run) < rows {
			return xerr.Invalid("run: length %d < rows %d (needed for patience)", len(run), rows)
		}
		if len(prevPred) < rows {
			return xerr.Invalid("prevPred: length %d < rows %d (needed for patience)", len(prevPred), rows)
		}
	}
	last := k == K-1
	invT := 1 / float64(temperature)
	bad := rowConfBatch(conf, pred, logits, rows, classes, m, invT)
	if bad >= 0 {
		return xerr.Invalid("logits: row %d has a NaN or infinite value", bad)
	}
	for i := 0; i < rows; i++ {
		if m == Patience {
			if run[i] > 0 && k > 0 && pred[i] == prevPred[i] {
				run[i]++
			} else {
				run[i] = 1
			}
			prevPred[i] = pred[i]
			conf[i] = float32(run[i])
		}
		exit[i] = last || conf[i] >= tau
	}
	return nil
}

// rowConfBatch fills conf and pred for rows rows of logits (in parallel for large
// inputs) and returns the smallest row index holding a non-finite value, or -1.
// For Patience, conf is left for the caller (pred is filled).
func rowConfBatch(conf []float32, pred []int32, logits []float32, rows, classes int, m Measure, invT float64) int {
	grain := 1 + (1<<16)/classes
	// exp((z−m)·scale) in float32: an infinite scale (T below ~3e−39) would turn
	// the row maximum's 0·scale into NaN; any huge finite scale gives the same
	// one-hot exponentials.
	scale := float32(min(invT, math.MaxFloat32/4))
	var bad []int
	var mu sync.Mutex
	par.For(rows, grain, func(lo, hi int) {
		var buf [256]float32 // scratch row of exponentials (on the stack for C ≤ 256)
		e := buf[:]
		if classes > len(buf) {
			e = make([]float32, classes)
		}
		for i := lo; i < hi; i++ {
			c, p, ok := rowConf(e, logits[i*classes:(i+1)*classes], m, scale, invT)
			if !ok {
				mu.Lock()
				bad = append(bad, i)
				mu.Unlock()
				return
			}
			conf[i], pred[i] = c, p
		}
	})
	first := -1
	for _, b := range bad {
		if first < 0 || b < first {
			first = b
		}
	}
	return first
}

// rowConf returns the confidence (for Patience: 0) and the argmax of one row of
// logits z, using e (len(e) ≥ len(z)) as scratch.
//
// With m = max z, e_c = exp((z_c − m)·scale) (float32, vexp.ExpSum; scale =
// invT rounded to float32) and Z = Σ_c e_c (float32), p_c = e_c/Z:
//
//	max softmax = 1/Z
//	margin      = (1 − e_(2))/Z                 e_(2) = the second-largest e_c (0 when C = 1)
//	1 − H/log C = 1 − (log Z − Σ_c e_c d_c / Z)/log C,   d_c = (z_c − m)·invT
//
// with Σ_c e_c d_c accumulated in float64 (vexp.DotShift). The argmax is the first index of m.
func rowConf(e, z []float32, m Measure, scale float32, invT float64) (float32, int32, bool) {
	zmax, bad := vexp.MaxCheck(z)
	if bad != 0 { // NaN or ±Inf
		return 0, 0, false
	}
	arg := 0
	for j, v := range z {
		if v == zmax {
			arg = j
			break
		}
	}
	if m == Patience { // the caller counts runs
		return 0, int32(arg), true
	}
	e = e[:len(z)]
	s := float64(vexp.ExpSum(e, z, zmax, scale))
	switch m {
	case MaxSoftmax:
		return float32(1 / s), int32(arg), true
	case Margin:
		e[arg] = 0 // e ≥ 0: the largest of the others
		e2, _ := vexp.MaxCheck(e)
		return float32((1 - float64(e2)) / s), int32(arg), true
	default: // NegEntropy
		if len(z) == 1 {
			return 1, int32(arg), true
		}
		h := math.Log(s) - vexp.DotShift(e, z, zmax)*invT/s
		c := 1 - h/math.Log(float64(len(z)))
		if c < 0 { // rounding at the uniform distribution
			c = 0
		}
		return float32(c), int32(arg), true
	}
}
