package policy

import (
	"math"
	"math/rand/v2"
	"sort"
)

// randLogits returns K exits of n×c logits; with ties, logits are small
// integers so confidences repeat across samples and exits.
func randLogits(rng *rand.Rand, K, n, c int, ties bool) []Matrix {
	out := make([]Matrix, K)
	for k := range out {
		d := make([]float32, n*c)
		for i := range d {
			if ties {
				d[i] = float32(rng.IntN(3))
			} else {
				d[i] = float32(rng.NormFloat64() * (1 + float64(k)))
			}
		}
		out[k] = Matrix{Data: d, Rows: n, Cols: c}
	}
	return out
}

func randLabels(rng *rand.Rand, n, c int) []int32 {
	y := make([]int32, n)
	for i := range y {
		y[i] = int32(rng.IntN(c))
	}
	return y
}

// refConf is an independent float64 reference: probabilities first, then the measure.
func refConf(z []float32, m Measure, T float64) (float64, int) {
	c := len(z)
	p := make([]float64, c)
	mx := math.Inf(-1)
	arg := 0
	for j, v := range z {
		if float64(v) > mx {
			mx, arg = float64(v), j
		}
	}
	s := 0.0
	for j, v := range z {
		p[j] = math.Exp((float64(v) - mx) / T)
		s += p[j]
	}
	for j := range p {
		p[j] /= s
	}
	switch m {
	case MaxSoftmax:
		return p[arg], arg
	case Margin:
		q := append([]float64(nil), p...)
		sort.Float64s(q)
		if c == 1 {
			return q[0], arg
		}
		return q[c-1] - q[c-2], arg
	case NegEntropy:
		if c == 1 {
			return 1, arg
		}
		h := 0.0
		for _, v := range p {
			if v > 0 {
				h -= v * math.Log(v)
			}
		}
		return 1 - h/math.Log(float64(c)), arg
	}
	return 0, arg
}

// bruteExit is the policy written out directly: first k < K−1 with conf ≥ τ_k.
func bruteExit(s *Scores, i int, tau []float32) int {
	for k := 0; k < s.K-1; k++ {
		if s.Conf[k][i] >= tau[k] {
			return k
		}
	}
	return s.K - 1
}

func bruteEval(s *Scores, labels []int32, tau []float32, cum []float64) (correct int64, hist []int64, mean float64) {
	hist = make([]int64, s.K)
	for i := 0; i < s.N; i++ {
		k := bruteExit(s, i, tau)
		hist[k]++
		if s.Pred[k][i] == labels[i] {
			correct++
		}
	}
	for k, h := range hist {
		mean += float64(h) * cum[k]
	}
	return correct, hist, mean / float64(s.N)
}

func fill(K int, v float32) []float32 {
	t := make([]float32, K)
	for k := range t {
		t[k] = v
	}
	return t
}
