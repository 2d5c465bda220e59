package fisher

import (
	"github.com/exitnet/exitnet/golib/xerr"
)

// UpdateSquared adds already-squared gradients to the named parameter.
//
// Granularity "per_sample": sq = Σ_{n∈batch} g_n∘g_n summed by the caller over
// n samples (for example the γ/β gradients of a normalisation layer);
// S += sq. n is only checked (n ≥ 1).
//
// Granularity "batched": sq = m_b∘m_b, the squared minibatch gradient of the
// mean-reduced loss over a batch of n samples; S += n·sq, so that with
// AddSamples(n) per batch F = Σ_b n_b m_b² / Σ_b n_b (see the package doc).
//
// sq must be finite and ≥ 0. It does not count samples. On error nothing is added.
func (a *Accumulator) UpdateSquared(name string, sq []float32, n int64) error {
	if err := a.usable(); err != nil {
		return err
	}
	lo, hi, err := a.layout.span("param", name, len(sq))
	if err != nil {
		return err
	}
	if n < 1 {
		return xerr.Invalid("n: %d samples; must be >= 1", n)
	}
	for i, v := range sq {
		if !(v >= 0) || v-v != 0 {
			return xerr.Invalid("sq_sum: element %d of parameter %q is %v; squared gradients must be finite and >= 0", i, name, v)
		}
	}
	scale := 1.0
	if a.labelMode == LabelBatched {
		scale = float64(n)
	}
	return addChecked(a.sums[lo:hi], sq, scale, "sq_sum", name)
}
