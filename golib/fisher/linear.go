package fisher

import (
	"math"

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
	if n == 0 {
		return nil
	}
	// One pass over each factor squares it into reused scratch, checks finiteness
	// and finds the largest square; the bound n·max(A²)·max(wG²) then proves the
	// float32 GEMM cannot overflow, so its result needs no second scan.
	asq, gsq, c, bsum := a.linearScratch(n*in, n*out, out*in, out)
	ma, bad := sqScaleMax(asq, A, 1)
	if bad {
		if i := firstNonFinite32(A); i >= 0 {
			return xerr.Invalid("inputs: non-finite value %v at row %d, column %d (layer %q)", A[i], i/max(in, 1), i%max(in, 1), weight)
		}
		return xerr.Invalid("inputs: squared inputs of layer %q overflow float32", weight)
	}
	var mg float32
	clear(bsum)
	for r := 0; r < n; r++ {
		w := float32(1)
		if weights != nil {
			w = weights[r]
		}
		row := G[r*out : (r+1)*out]
		m, bad := sqScaleMax(gsq[r*out:(r+1)*out], row, w)
		if bad {
			if i := firstNonFinite32(row); i >= 0 {
				return xerr.Invalid("grad_outputs: non-finite value %v at row %d, column %d (layer %q)", row[i], r, i, weight)
			}
			return xerr.Invalid("grad_outputs: squared gradients of parameter %q overflow float32", weight)
		}
		mg = max(mg, m)
		if bias != "" {
			addF32(bsum, gsq[r*out:(r+1)*out])
		}
	}
	if out > 0 && in > 0 {
		blas32.Gemm(blas.Trans, blas.NoTrans, 1,
			blas32.General{Rows: n, Cols: out, Stride: out, Data: gsq},
			blas32.General{Rows: n, Cols: in, Stride: in, Data: asq},
			0, blas32.General{Rows: out, Cols: in, Stride: in, Data: c})
		if !gemmCannotOverflow(n, ma, mg) {
			if i := firstNonFinite32(c); i >= 0 {
				return xerr.Invalid("grad_outputs: squared gradients of parameter %q overflow float32", weight)
			}
		}
		addF32(a.sums[wlo:whi], c)
	}
	if bias != "" {
		bd := a.sums[blo:bhi]
		for i, v := range bsum {
			bd[i] += v
		}
	}
	return nil
}

// gemmCannotOverflow reports whether every entry of (w∘G∘G)ᵀ(A∘A), a sum of n
// non-negative products each at most ma·mg, stays finite in float32: the bound
// n·ma·mg, widened by the rounding of n float32 additions ((1+2⁻²³)ⁿ ≤ 1+2n·2⁻²³
// for n < 2²²), is below MaxFloat32.
func gemmCannotOverflow(n int, ma, mg float32) bool {
	if n >= 1<<22 {
		return false
	}
	b := float64(n) * float64(ma) * float64(mg) * (1 + float64(2*n+2)*0x1p-23)
	return b < math.MaxFloat32
}

// linearScratch returns reused buffers for UpdateLinear (grown, never shrunk:
// an accumulator keeps the scratch of its largest layer between batches).
func (a *Accumulator) linearScratch(na, ng, nc, nb int) (asq, gsq, c []float32, bsum []float64) {
	if t := na + ng + nc; cap(a.scratch32) < t {
		a.scratch32 = make([]float32, t)
	}
	if cap(a.scratch64) < nb {
		a.scratch64 = make([]float64, nb)
	}
	s := a.scratch32[:na+ng+nc]
	return s[:na:na], s[na : na+ng : na+ng], s[na+ng:], a.scratch64[:nb]
}
