package fisher

import (
	"math"

	"github.com/exitnet/exitnet/golib/memx"
	"github.com/exitnet/exitnet/golib/xerr"
)

// Label modes, granularities and the normalisation stored with every Fisher.
const (
	LabelEmpirical = "empirical"
	LabelSampled   = "sampled"
	LabelArgmax    = "argmax"
	LabelExact     = "exact"
	LabelBatched   = "batched"

	GranularityPerSample = "per_sample"
	GranularityBatched   = "batched"

	NormalisationMean = "mean_over_samples"
)

// ValidLabelMode reports whether m is one of the label modes above.
func ValidLabelMode(m string) bool {
	switch m {
	case LabelEmpirical, LabelSampled, LabelArgmax, LabelExact, LabelBatched:
		return true
	}
	return false
}

// Accumulator sums squared per-sample gradients over a Layout (see the package
// doc for the formulas). It is not safe for concurrent use; updates use
// par.For internally.
type Accumulator struct {
	layout    *Layout
	labelMode string
	sums      []float64
	count     int64
	broken    string // set when an update failed half-way; cleared by Reset

	scratch32 []float32 // UpdateLinear's squared factors and GEMM result (reused)
	scratch64 []float64 // UpdateLinear's bias sums (reused)
}

// New returns an empty accumulator. labelMode "batched" selects the batched
// granularity; every other valid mode is per-sample.
func New(layout *Layout, labelMode string) (*Accumulator, error) {
	if layout == nil {
		return nil, xerr.Invalid("layout: nil")
	}
	if !ValidLabelMode(labelMode) {
		return nil, xerr.Invalid("label_mode: %q is not one of empirical, sampled, argmax, exact, batched", labelMode)
	}
	sums, err := memx.Make[float64]("layout: the accumulator's float64 sums", layout.Size())
	if err != nil {
		return nil, err
	}
	return &Accumulator{layout: layout, labelMode: labelMode, sums: sums}, nil
}

// Layout returns the accumulator's layout.
func (a *Accumulator) Layout() *Layout { return a.layout }

// LabelMode returns the label mode given to New.
func (a *Accumulator) LabelMode() string { return a.labelMode }

// Granularity is "batched" for label mode "batched", else "per_sample".
func (a *Accumulator) Granularity() string {
	if a.labelMode == LabelBatched {
		return GranularityBatched
	}
	return GranularityPerSample
}

// Normalisation is always "mean_over_samples": Compute divides by the count.
func (a *Accumulator) Normalisation() string { return NormalisationMean }

// NumSamples returns the sample count N.
func (a *Accumulator) NumSamples() int64 { return a.count }

// Sums returns the raw float64 sums S (aliased: do not modify; valid until the next call).
func (a *Accumulator) Sums() []float64 { return a.sums }

// AddSamples adds n ≥ 0 to the sample count.
func (a *Accumulator) AddSamples(n int64) error {
	if err := a.usable(); err != nil {
		return err
	}
	if n < 0 {
		return xerr.Invalid("n: %d samples is negative", n)
	}
	if a.count > math.MaxInt64-n {
		return xerr.Invalid("n: sample count overflows int64")
	}
	a.count += n
	return nil
}

// Compute writes F = S / N into dst (len Layout().Size()). It fails with
// INVALID_STATE if no samples were counted.
func (a *Accumulator) Compute(dst []float32) error {
	if err := a.usable(); err != nil {
		return err
	}
	if a.count == 0 {
		return xerr.State("compute: no samples counted (call AddSamples after the updates of each batch)")
	}
	if len(dst) != len(a.sums) {
		return xerr.Invalid("dst: %d elements, layout has %d", len(dst), len(a.sums))
	}
	inv := 1 / float64(a.count)
	for i, s := range a.sums {
		v := s * inv
		if v > math.MaxFloat32 {
			return xerr.Invalid("compute: element %d of the Fisher is %g, beyond float32 (the sums are too large for the %d counted samples)", i, v, a.count)
		}
		dst[i] = float32(v)
	}
	return nil
}

// Reset zeroes the sums and the count (and clears a failed update).
func (a *Accumulator) Reset() {
	clear(a.sums)
	a.count = 0
	a.broken = ""
}

// Merge adds other's sums and count into a. Both must have equal layouts and
// label modes. Merging is exact up to one float64 rounding per element, so
// chunks or data-parallel ranks combine into the one-pass result.
func (a *Accumulator) Merge(other *Accumulator) error {
	if other == nil {
		return xerr.Invalid("other: nil accumulator")
	}
	if err := a.usable(); err != nil {
		return err
	}
	if err := other.usable(); err != nil {
		return xerr.Wrap(err, "other")
	}
	if !a.layout.Equal(other.layout) {
		return xerr.Invalid("other: layout differs (%d params, %d elements vs %d params, %d elements)",
			other.layout.Len(), other.layout.Size(), a.layout.Len(), a.layout.Size())
	}
	if a.labelMode != other.labelMode {
		return xerr.Invalid("other: label mode %q differs from %q", other.labelMode, a.labelMode)
	}
	if a.count > math.MaxInt64-other.count {
		return xerr.Invalid("other: sample count overflows int64")
	}
	for i, s := range other.sums {
		a.sums[i] += s
	}
	a.count += other.count
	return nil
}

// SetState replaces the sums and the count (for example after an all-reduce
// of State across data-parallel ranks). sums must be finite and ≥ 0.
func (a *Accumulator) SetState(sums []float64, count int64) error {
	if len(sums) != len(a.sums) {
		return xerr.Invalid("sums: %d elements, layout has %d", len(sums), len(a.sums))
	}
	if count < 0 {
		return xerr.Invalid("count: %d is negative", count)
	}
	for i, s := range sums {
		if !(s >= 0) || math.IsInf(s, 1) {
			return xerr.Invalid("sums: element %d (parameter %q) is %v; sums must be finite and non-negative", i, a.nameAt(i), s)
		}
	}
	copy(a.sums, sums)
	a.count = count
	a.broken = ""
	return nil
}

// nameAt returns the name of the parameter holding flat element i.
func (a *Accumulator) nameAt(i int) string {
	l := a.layout
	lo, hi := 0, l.Len()
	for lo < hi {
		m := (lo + hi) / 2
		if l.offsets[m+1] <= i {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < l.Len() {
		return l.params[lo].Name
	}
	return "?"
}

func (a *Accumulator) usable() error {
	if a.broken != "" {
		return xerr.State("accumulator: a previous update failed part-way (%s); call Reset", a.broken)
	}
	return nil
}

func (a *Accumulator) perSampleOnly(what string) error {
	if err := a.usable(); err != nil {
		return err
	}
	if a.labelMode == LabelBatched {
		return xerr.State("%s: a batched accumulator takes squared minibatch gradients through UpdateSquared only", what)
	}
	return nil
}

// checkWeights validates optional per-row weights: nil or n finite values ≥ 0.
func checkWeights(w []float32, n int) error {
	if w == nil {
		return nil
	}
	if len(w) != n {
		return xerr.Invalid("weights: %d values for %d rows", len(w), n)
	}
	for i, v := range w {
		if !(v >= 0) || math.IsInf(float64(v), 1) {
			return xerr.Invalid("weights: row %d is %v; weights must be finite and >= 0", i, v)
		}
	}
	return nil
}

// firstNonFinite32 returns the index of the first NaN or ±Inf in x, or -1.
func firstNonFinite32(x []float32) int {
	for i, v := range x {
		if v-v != 0 {
			return i
		}
	}
	return -1
}

// addChecked adds src (float32) into dst after checking src is finite; name is
// used in the error.
func addChecked(dst []float64, src []float32, scale float64, arg, name string) error {
	if i := firstNonFinite32(src); i >= 0 {
		return xerr.Invalid("%s: non-finite value %v in the contribution to parameter %q (element %d)", arg, src[i], name, i)
	}
	for i, v := range src {
		if d := dst[i] + scale*float64(v); d <= math.MaxFloat64 {
			dst[i] = d
		} else {
			// Earlier elements are already added: roll them back so a refused
			// update leaves the sums unchanged.
			for j := range i {
				dst[j] -= scale * float64(src[j])
			}
			return xerr.Invalid("%s: the sum of parameter %q element %d overflows float64 (scale %g)", arg, name, i, scale)
		}
	}
	return nil
}
