package vexp

import "math"

// Exp2 is the scalar version of the base-2 exponential documented in the package
// doc: 2^u for u in [−127, 127] (clamped outside), relative error ≤ 2.8 ulp.
func Exp2(u float32) float32 {
	if u < exp2Lo {
		u = exp2Lo
	}
	if u > exp2Hi {
		u = exp2Hi
	}
	t := u + expMagic
	n := t - expMagic
	f := u - n
	p := float32(expC5)
	p = p*f + expC4
	p = p*f + expC3
	p = p*f + expC2
	p = p*f + expC1
	p = p*f + 1
	return p * math.Float32frombits(math.Float32bits(t)<<23)
}

// Log2Scale converts a natural-exponent scale into the base-2 factor c = scale·log2(e)
// (exp((x−m)·scale) = Exp2((x−m)·c)).
func Log2Scale(scale float32) float32 { return float32(float64(scale) * math.Log2E) }

func maxCheckGeneric(x []float32) (m, bad float32) {
	m = float32(math.Inf(-1))
	for _, v := range x {
		if v > m {
			m = v
		}
		bad += v * 0
	}
	return m, bad
}

func expSumGeneric(dst, x []float32, m, scale float32) float32 {
	dst = dst[:len(x)]
	c := Log2Scale(scale)
	var s float32
	for i, v := range x {
		e := Exp2((v - m) * c)
		dst[i] = e
		s += e
	}
	return s
}

func scaleGeneric(dst []float32, a float32) {
	for i := range dst {
		dst[i] *= a
	}
}

func dotShiftGeneric(e, x []float32, m float32) float64 {
	e = e[:len(x)]
	mx := float64(m)
	var s0, s1, s2, s3 float64 // four partial sums: the adds pipeline
	j := 0
	for ; j+4 <= len(x); j += 4 {
		s0 += float64(e[j]) * (float64(x[j]) - mx)
		s1 += float64(e[j+1]) * (float64(x[j+1]) - mx)
		s2 += float64(e[j+2]) * (float64(x[j+2]) - mx)
		s3 += float64(e[j+3]) * (float64(x[j+3]) - mx)
	}
	for ; j < len(x); j++ {
		s0 += float64(e[j]) * (float64(x[j]) - mx)
	}
	return (s0 + s1) + (s2 + s3)
}
