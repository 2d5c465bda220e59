package fisher

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"

	"github.com/exitnet/exitnet/golib/xerr"
)

// UpdateLinear adds the exact sum of squared per-sample gradients of a Linear
// layer y = W a + b (W: out×in, PyTorch layout) from its factors:
//
//	S_W += (w∘G∘G)ᵀ (A∘A)      one GEMM through blas32 (out×in)
//	S_b += Σ_n w_n G_n∘G_n
//
// A is n×in (layer inputs), G is n×out (per-sample gradients of the loss with
// respect to y, from a sum-reduced loss). bias "" means no bias. weights is nil
// or n values ≥ 0 (label mode "exact": one row per (sample, class) pair, weighted
// by p(c|x)). It does not count samples. On error nothing is added.
func (a *Accumulator) UpdateLinear(weight, bias string, A, G []float32, n, in, out int, weights []float32) error {
	if err := a.perSampleOnly("update_linear"); err != nil {
		return err
	}
	if n < 0 || in < 0 || out < 0 {
		return xerr.Invalid("inputs: negative shape (n=%d, in=%d, out=%d)", n, in, out)
	}
	if len(A) != n*in {
		return xerr.Invalid("inputs: %d values for a %d×%d matrix", len(A), n, in)
	}
	if len(G) != n*out {
		return xerr.Invalid("grad_outputs: %d values for a %d×%d matrix", len(G), n, out)
	}
	wlo, whi, err := a.layout.span("weight", weight, out*in)
	if err != nil {
		return err
	}
	if sh := a.layout.params[a.layout.index[weight]].Shape; len(sh) == 2 && (sh[0] != out || sh[1] != in) {
		return xerr.Invalid("weight: parameter %q has shape %v, the factors imply [%d %d] (out×in)", weight, sh, out, in)
	}
	blo, bhi := 0, 0
	if bias != "" {
		if blo, bhi, err = a.layout.span("bias", bias, out); err != nil {
			return err
		}
	}
	if err := checkWeights(weights, n); err != nil {
		return err
	}
	if i := firstNonFinite32(A); i >= 0 {
		return xerr.Invalid("inputs: non-finite value %v at row %d, column %d (layer %q)", A[i], i/max(in, 1), i%max(in, 1), weight)
	}
	if i := firstNonFinite32(G); i >= 0 {
		return xerr.Invalid("grad_outputs: non-finite value %v at row %d, column %d (layer %q)", G[i], i/max(out, 1), i%max(out, 1), weight)
	}
	if n == 0 {
		return nil
	}
	asq := make([]float32, n*in)
	for i, v := range A {
		asq[i] = v * v
	}
	gsq := make([]float32, n*out)
	for r := 0; r < n; r++ {
		w := float32(1)
		if weights != nil {
			w = weights[r]
		}
		row := G[r*out : (r+1)*out]
		dst := gsq[r*out : (r+1)*out]
		for j, v := range row {
			dst[j] = w * v * v
		}
	}
	c := make([]float32, out*in)
	if out > 0 && in > 0 {
		blas32.Gemm(blas.Trans, blas.NoTrans, 1,
			blas32.General{Rows: n, Cols: out, Stride: out, Data: gsq},
			blas32.General{Rows: n, Cols: in, Stride: in, Data: asq},
			0, blas32.General{Rows: out, Cols: in, Stride: in, Data: c})
	}
	if i := firstNonFinite32(c); i >= 0 {
		return xerr.Invalid("grad_outputs: squared gradients of parameter %q overflow float32", weight)
	}
	var bsum []float64
	if bias != "" {
		bsum = make([]float64, out)
		for r := 0; r < n; r++ {
			for j, v := range gsq[r*out : (r+1)*out] {
				bsum[j] += float64(v)
			}
		}
	}
	dst := a.sums[wlo:whi]
	for i, v := range c {
		dst[i] += float64(v)
	}
	if bias != "" {
		bd := a.sums[blo:bhi]
		for i, v := range bsum {
			bd[i] += v
		}
	}
	return nil
}
