package policy

import (
	"math"

	"github.com/exitnet/exitnet/golib/xerr"
)

// Matrix is a borrowed row-major float32 matrix (logits of one exit).
type Matrix struct {
	Data       []float32
	Rows, Cols int
}

// Scores holds the confidences and predictions of N samples at K exits,
// exit-major: Conf[k][i], Pred[k][i]. C is the number of classes.
type Scores struct {
	K, N, C int
	Measure Measure
	Conf    [][]float32
	Pred    [][]int32
}

// ComputeScores computes the confidence (measure m) and prediction of every
// sample at every exit. logits has one N×C matrix per exit; temps is nil (no
// temperature) or has one T_k > 0 per exit. It runs ExitStep for each exit,
// the same per-exit code the runtime uses, so offline simulation and real
// early exit agree bit for bit.
func ComputeScores(logits []Matrix, m Measure, temps []float32) (*Scores, error) {
	K := len(logits)
	if K == 0 {
		return nil, xerr.Invalid("logits: no exits (empty list)")
	}
	n, c := logits[0].Rows, logits[0].Cols
	for k, l := range logits {
		if l.Rows != n || l.Cols != c {
			return nil, xerr.Invalid("logits: exit %d is %d×%d, exit 0 is %d×%d (every exit needs the same N and C)", k, l.Rows, l.Cols, n, c)
		}
		if len(l.Data) != l.Rows*l.Cols {
			return nil, xerr.Invalid("logits: exit %d has %d values, want %d×%d", k, len(l.Data), l.Rows, l.Cols)
		}
	}
	if n == 0 {
		return nil, xerr.Invalid("logits: no samples (N = 0)")
	}
	if c == 0 {
		return nil, xerr.Invalid("logits: no classes (C = 0)")
	}
	if !m.valid() {
		return nil, xerr.Invalid("measure: unknown value %d", int(m))
	}
	if temps != nil && len(temps) != K {
		return nil, xerr.Invalid("temperature: %d values for %d exits (need one per exit, or none)", len(temps), K)
	}
	for k, t := range temps {
		if !(t > 0) || math.IsInf(float64(t), 0) {
			return nil, xerr.Invalid("temperature: exit %d has %g, need a finite value > 0", k, t)
		}
	}
	s := &Scores{K: K, N: n, C: c, Measure: m, Conf: make([][]float32, K), Pred: make([][]int32, K)}
	var run, prev []int32
	if m == Patience {
		run, prev = make([]int32, n), make([]int32, n)
	}
	exit := make([]bool, n)
	for k := range K {
		s.Conf[k] = make([]float32, n)
		s.Pred[k] = make([]int32, n)
		t := float32(1)
		if temps != nil {
			t = temps[k]
		}
		if err := ExitStep(k, K, logits[k].Data, n, c, m, float32(math.Inf(1)), t, run, prev, s.Conf[k], s.Pred[k], exit); err != nil {
			return nil, xerr.Wrap(err, "exit %d", k)
		}
	}
	return s, nil
}

// NewScores wraps precomputed confidences and predictions (exit-major, K
// slices of N), for callers that bring their own confidence. NaN confidences
// and predictions outside [0, C) are errors.
func NewScores(conf [][]float32, pred [][]int32, c int) (*Scores, error) {
	K := len(conf)
	if K == 0 {
		return nil, xerr.Invalid("conf: no exits (empty list)")
	}
	if len(pred) != K {
		return nil, xerr.Invalid("pred: %d exits, conf has %d", len(pred), K)
	}
	n := len(conf[0])
	if n == 0 {
		return nil, xerr.Invalid("conf: no samples (N = 0)")
	}
	if c < 1 {
		return nil, xerr.Invalid("classes: %d, need at least 1", c)
	}
	for k := range K {
		if len(conf[k]) != n || len(pred[k]) != n {
			return nil, xerr.Invalid("conf: exit %d has %d confidences and %d predictions, exit 0 has %d", k, len(conf[k]), len(pred[k]), n)
		}
		// one branch-free pass flags a bad row; a second finds the first one for the error
		pk, bad := pred[k][:n], uint64(0)
		for i, v := range conf[k] {
			bad |= b2u(v != v) | b2u(uint64(int64(pk[i])) >= uint64(c))
		}
		if bad == 0 {
			continue
		}
		for i, v := range conf[k] {
			if v != v {
				return nil, xerr.Invalid("conf: NaN at exit %d, row %d", k, i)
			}
			if p := pk[i]; p < 0 || int(p) >= c {
				return nil, xerr.Invalid("pred: %d at exit %d, row %d is outside [0, %d)", p, k, i, c)
			}
		}
	}
	return &Scores{K: K, N: n, C: c, Measure: -1, Conf: conf, Pred: pred}, nil
}

// checkLabels validates labels against the scores (length N, values in [0, C)).
func (s *Scores) checkLabels(labels []int32) error {
	if len(labels) != s.N {
		return xerr.Invalid("labels: %d values for %d samples", len(labels), s.N)
	}
	for i, y := range labels {
		if y < 0 || int(y) >= s.C {
			return xerr.Invalid("labels: %d at row %d is outside [0, %d)", y, i, s.C)
		}
	}
	return nil
}
