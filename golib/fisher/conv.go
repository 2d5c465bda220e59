package fisher

import (
	"fmt"
	"math"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"

	"github.com/exitnet/exitnet/golib/memx"
	"github.com/exitnet/exitnet/golib/par"
	"github.com/exitnet/exitnet/golib/xerr"
)

// Conv2d is the geometry of a PyTorch nn.Conv2d (index 0: height, 1: width).
type Conv2d struct {
	Stride   [2]int // ≥ 1
	Padding  [2]int // ≥ 0 (zero padding)
	Dilation [2]int // ≥ 1
	Groups   int    // ≥ 1, divides Cin and Cout
	Kernel   [2]int // kh, kw ≥ 1
}

// outSize returns the output size along axis ax for input size in.
func (c Conv2d) outSize(ax, in int) int {
	return (in+2*c.Padding[ax]-c.Dilation[ax]*(c.Kernel[ax]-1)-1)/c.Stride[ax] + 1
}

// UpdateConv2d adds the exact sum of squared per-sample gradients of a Conv2d
// layer. x is N×Cin×H×W (layer inputs), g is N×Cout×Ho×Wo (per-sample output
// gradients, sum-reduced loss). For sample n and group γ, with U_n the im2col
// unfolding of x_n ((Cin/groups)·kh·kw × Ho·Wo) and G_n the γ rows of g_n:
//
//	∇W_n[γ] = G_n[γ] U_n[γ]ᵀ          (blas32 GEMM)
//	S_W += w_n ∇W_n∘∇W_n,  S_b += w_n (Σ_l g_n[:, l])²
//
// The weight parameter has Cout·(Cin/groups)·kh·kw elements (shape
// Cout×Cin/groups×kh×kw when 4-D). Work is parallel over samples with one
// sample's unfolded input and gradient per worker. On error nothing is added.
func (a *Accumulator) UpdateConv2d(weight, bias string, x []float32, xShape [4]int, g []float32, gShape [4]int, geo Conv2d, weights []float32) error {
	if err := a.perSampleOnly("update_conv2d"); err != nil {
		return err
	}
	n, cin, h, w := xShape[0], xShape[1], xShape[2], xShape[3]
	gn, cout, ho, wo := gShape[0], gShape[1], gShape[2], gShape[3]
	for _, d := range append(xShape[:], gShape[:]...) {
		if d < 0 {
			return xerr.Invalid("inputs: negative dimension in %v / %v", xShape, gShape)
		}
	}
	if n != gn {
		return xerr.Invalid("grad_outputs: %d samples, inputs have %d", gn, n)
	}
	if len(x) != n*cin*h*w {
		return xerr.Invalid("inputs: %d values for shape %v", len(x), xShape)
	}
	if len(g) != gn*cout*ho*wo {
		return xerr.Invalid("grad_outputs: %d values for shape %v", len(g), gShape)
	}
	for ax, nm := range [2]string{"height", "width"} {
		if geo.Stride[ax] < 1 {
			return xerr.Invalid("stride: %v must be >= 1", geo.Stride)
		}
		if geo.Dilation[ax] < 1 {
			return xerr.Invalid("dilation: %v must be >= 1", geo.Dilation)
		}
		if geo.Padding[ax] < 0 {
			return xerr.Invalid("padding: %v must be >= 0", geo.Padding)
		}
		if geo.Kernel[ax] < 1 {
			return xerr.Invalid("kernel: %v must be >= 1", geo.Kernel)
		}
		in, got := []int{h, w}[ax], []int{ho, wo}[ax]
		if want := geo.outSize(ax, in); want < 1 || want != got {
			return xerr.Invalid("grad_outputs: output %s %d, but input %s %d with kernel %d, stride %d, padding %d, dilation %d gives %d",
				nm, got, nm, in, geo.Kernel[ax], geo.Stride[ax], geo.Padding[ax], geo.Dilation[ax], want)
		}
	}
	if geo.Groups < 1 || cin%geo.Groups != 0 || cout%geo.Groups != 0 {
		return xerr.Invalid("groups: %d must be >= 1 and divide in_channels %d and out_channels %d", geo.Groups, cin, cout)
	}
	cig, cog := cin/geo.Groups, cout/geo.Groups
	kk := cig * geo.Kernel[0] * geo.Kernel[1]
	wlo, whi, err := a.layout.span("weight", weight, cout*kk)
	if err != nil {
		return err
	}
	if sh := a.layout.params[a.layout.index[weight]].Shape; len(sh) == 4 &&
		(sh[0] != cout || sh[1] != cig || sh[2] != geo.Kernel[0] || sh[3] != geo.Kernel[1]) {
		return xerr.Invalid("weight: parameter %q has shape %v, the inputs and geometry imply [%d %d %d %d]",
			weight, sh, cout, cig, geo.Kernel[0], geo.Kernel[1])
	}
	blo, bhi := 0, 0
	if bias != "" {
		if blo, bhi, err = a.layout.span("bias", bias, cout); err != nil {
			return err
		}
	}
	if err := checkWeights(weights, n); err != nil {
		return err
	}
	if i := firstNonFinite32(x); i >= 0 {
		return xerr.Invalid("inputs: non-finite value %v at flat index %d (layer %q)", x[i], i, weight)
	}
	if i := firstNonFinite32(g); i >= 0 {
		return xerr.Invalid("grad_outputs: non-finite value %v at flat index %d (layer %q)", g[i], i, weight)
	}
	if n == 0 {
		return nil
	}
	L := ho * wo
	// Each worker unfolds one sample (kk×L patches); with a large padding or
	// dilation that is far more than the input, so it is checked first.
	if err := memx.Check(fmt.Sprintf("inputs: the unfolded patches of layer %q", weight), 4, par.Threads()+1, kk, L); err != nil {
		return err
	}
	total := make([]float64, cout*kk+cout) // weight then bias
	var mu sync.Mutex
	par.For(n, 1, func(lo, hi int) {
		u := make([]float32, kk*L)
		d := make([]float32, cout*kk)
		part := make([]float64, cout*kk+cout)
		for s := lo; s < hi; s++ {
			ws := 1.0
			if weights != nil {
				ws = float64(weights[s])
			}
			xs := x[s*cin*h*w : (s+1)*cin*h*w]
			gs := g[s*cout*L : (s+1)*cout*L]
			for gi := 0; gi < geo.Groups; gi++ {
				im2col(u, xs[gi*cig*h*w:(gi+1)*cig*h*w], cig, h, w, ho, wo, geo)
				blas32.Gemm(blas.NoTrans, blas.Trans, 1,
					blas32.General{Rows: cog, Cols: L, Stride: L, Data: gs[gi*cog*L : (gi+1)*cog*L]},
					blas32.General{Rows: kk, Cols: L, Stride: L, Data: u},
					0, blas32.General{Rows: cog, Cols: kk, Stride: kk, Data: d[gi*cog*kk : (gi+1)*cog*kk]})
			}
			for i, v := range d {
				f := float64(v)
				part[i] += ws * f * f
			}
			if bias != "" {
				for o := 0; o < cout; o++ {
					var sum float64
					for _, v := range gs[o*L : (o+1)*L] {
						sum += float64(v)
					}
					part[cout*kk+o] += ws * sum * sum
				}
			}
		}
		mu.Lock()
		for i, v := range part {
			total[i] += v
		}
		mu.Unlock()
	})
	for _, v := range total {
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return xerr.Invalid("grad_outputs: squared gradients of parameter %q overflow", weight)
		}
	}
	dst := a.sums[wlo:whi]
	for i := range dst {
		dst[i] += total[i]
	}
	if bias != "" {
		bd := a.sums[blo:bhi]
		for i := range bd {
			bd[i] += total[cout*kk+i]
		}
	}
	return nil
}

// im2col writes the unfolded input of one sample and one group into u
// ((cig·kh·kw) × (ho·wo), row index (c·kh + i)·kw + j), zero outside the image.
func im2col(u, x []float32, cig, h, w, ho, wo int, geo Conv2d) {
	kh, kw := geo.Kernel[0], geo.Kernel[1]
	sh, sw := geo.Stride[0], geo.Stride[1]
	ph, pw := geo.Padding[0], geo.Padding[1]
	dh, dw := geo.Dilation[0], geo.Dilation[1]
	L := ho * wo
	for c := 0; c < cig; c++ {
		xc := x[c*h*w : (c+1)*h*w]
		for i := 0; i < kh; i++ {
			for j := 0; j < kw; j++ {
				row := u[((c*kh+i)*kw+j)*L : ((c*kh+i)*kw+j+1)*L]
				for oh := 0; oh < ho; oh++ {
					ih := oh*sh - ph + i*dh
					dst := row[oh*wo : (oh+1)*wo]
					if ih < 0 || ih >= h {
						clear(dst)
						continue
					}
					xr := xc[ih*w : (ih+1)*w]
					for ow := range dst {
						iw := ow*sw - pw + j*dw
						if iw < 0 || iw >= w {
							dst[ow] = 0
						} else {
							dst[ow] = xr[iw]
						}
					}
				}
			}
		}
	}
}
