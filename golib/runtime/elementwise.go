package runtime

import (
	"math"

	"github.com/exitnet/exitnet/golib/par"
)

// activation applied after an instruction's main computation (fused), or by a
// kAct instruction alone. Definitions (torch's):
//
//	relu(x)        = max(x, 0)
//	relu6(x)       = min(max(x, 0), 6)
//	sigmoid(x)     = 1 / (1 + e^−x)
//	silu(x)        = x · sigmoid(x)
//	hardsigmoid(x) = relu6(x + 3) / 6
//	hardswish(x)   = x · relu6(x + 3) / 6
//	gelu(x)        = x/2 · (1 + erf(x/√2))                         approximate "none"
//	gelu(x)        = x/2 · (1 + tanh(√(2/π) · (x + 0.044715·x³)))  approximate "tanh"
//
// The transcendental ones are evaluated in float64 and rounded once.
type activation uint8

const (
	actNone activation = iota
	actReLU
	actReLU6
	actSigmoid
	actSiLU
	actHardswish
	actHardsigmoid
	actGELU
	actGELUTanh
)

// biasAct adds a bias to a row and applies the activation (NaN passes
// through, as in torch).
func biasAct(row []float32, b float32, a activation) {
	if b != 0 {
		for i := range row {
			row[i] += b
		}
	}
	// builtin max/min are branch-free (a data-dependent branch costs ~4 ns per
	// element on random signs) and propagate NaN, as torch does
	switch a {
	case actNone:
	case actReLU:
		for i, v := range row {
			row[i] = max(v, 0)
		}
	case actReLU6:
		for i, v := range row {
			row[i] = min(max(v, 0), 6)
		}
	case actHardsigmoid:
		for i, v := range row {
			row[i] = min(max(v+3, 0), 6) / 6
		}
	case actHardswish:
		for i, v := range row {
			row[i] = v * min(max(v+3, 0), 6) / 6
		}
	case actSigmoid:
		for i, v := range row {
			row[i] = float32(1 / (1 + math.Exp(-float64(v))))
		}
	case actSiLU:
		for i, v := range row {
			x := float64(v)
			row[i] = float32(x / (1 + math.Exp(-x)))
		}
	case actGELU:
		for i, v := range row {
			x := float64(v)
			row[i] = float32(0.5 * x * (1 + math.Erf(x/math.Sqrt2)))
		}
	case actGELUTanh:
		const c = 0.7978845608028654 // √(2/π)
		for i, v := range row {
			x := float64(v)
			row[i] = float32(0.5 * x * (1 + math.Tanh(c*(x+0.044715*x*x*x))))
		}
	}
}

// scatterAct writes dst[i] = act(src[i] + b).
func scatterAct(dst, src []float32, b float32, a activation) {
	src = src[:len(dst)]
	switch a {
	case actReLU:
		for i, v := range src {
			dst[i] = max(v+b, 0)
		}
	case actReLU6:
		for i, v := range src {
			dst[i] = min(max(v+b, 0), 6)
		}
	default:
		for i, v := range src {
			dst[i] = v + b
		}
		biasAct(dst, 0, a)
	}
}

// elementwise runs kAct (out = act(in)), kAffine (out = in·α + β), kCopy and
// kAdd / kMul without broadcast (out = act(in ∘ in2)), parallel over elements.
func elementwise(ins *instr, in, in2, out []float32, rows int) {
	n := rows * ins.outS.size()
	par.For(n, minChunk, func(lo, hi int) {
		o, a := out[lo:hi], in[lo:hi]
		switch ins.kind {
		case kCopy:
			copy(o, a)
		case kAdd:
			b := in2[lo:hi]
			for i := range o {
				o[i] = a[i] + b[i]
			}
			biasAct(o, 0, ins.act)
		case kMul:
			b := in2[lo:hi]
			for i := range o {
				o[i] = a[i] * b[i]
			}
			biasAct(o, 0, ins.act)
		case kAffine:
			al, be := ins.alpha, ins.beta
			for i := range o {
				o[i] = a[i]*al + be
			}
		default:
			if &o[0] != &a[0] {
				copy(o, a)
			}
			biasAct(o, 0, ins.act)
		}
	})
}

// channelwise runs the per-channel ops, parallel over (sample, channel) planes
// of L = H·W elements:
//
//	kScaleShift        out[c,·] = act(in[c,·]·w[c] + b[c])
//	kAdd, broadcast    out[c,·] = act(in[c,·] + in2[c])
//	kMul, broadcast    out[c,·] = act(in[c,·] · in2[c])
func channelwise(ins *instr, in, in2, out []float32, rows int) {
	C := ins.outS.C
	L := ins.outS.H * ins.outS.W
	par.For(rows*C, grainFor(L), func(lo, hi int) {
		for pl := lo; pl < hi; pl++ {
			c := pl % C
			a, o := in[pl*L:(pl+1)*L], out[pl*L:(pl+1)*L]
			switch ins.kind {
			case kScaleShift:
				w, b := ins.w[c], ins.b[c]
				for i, v := range a {
					o[i] = v*w + b
				}
			case kAdd:
				b := in2[pl]
				for i, v := range a {
					o[i] = v + b
				}
			case kMul:
				b := in2[pl]
				for i, v := range a {
					o[i] = v * b
				}
			}
			biasAct(o, 0, ins.act)
		}
	})
}

// concat runs kCat: per sample, the inputs' channel blocks one after the other.
func concat(ins *instr, srcs [][]float32, out []float32, rows int) {
	L := ins.outS.H * ins.outS.W
	per := ins.outS.C * L
	par.For(rows, grainFor(per), func(lo, hi int) {
		for n := lo; n < hi; n++ {
			dst := out[n*per : (n+1)*per]
			off := 0
			for j, src := range srcs {
				sz := ins.srcC[j] * L
				copy(dst[off:off+sz], src[n*sz:(n+1)*sz])
				off += sz
			}
		}
	})
}
