package distill

import "math"

// exp2f is the scalar version of the base-2 exponential documented in kernel.go.
func exp2f(u float32) float32 {
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

// log2Scale converts a natural-exponent scale into the base-2 factor c = scale·log2(e).
func log2Scale(scale float32) float32 { return float32(float64(scale) * math.Log2E) }

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
	c := log2Scale(scale)
	var s float32
	for i, v := range x {
		e := exp2f((v - m) * c)
		dst[i] = e
		s += e
	}
	return s
}

func axpbyGeneric(dst, e []float32, a, b float32) {
	e = e[:len(dst)]
	for i := range dst {
		dst[i] = a*dst[i] - b*e[i]
	}
}

func scaleGeneric(dst []float32, a float32) {
	for i := range dst {
		dst[i] *= a
	}
}

func max2Generic(s, t []float32) (ms, mt float32) {
	ms, _ = maxCheckGeneric(s)
	mt, _ = maxCheckGeneric(t[:len(s)])
	return ms, mt
}

func kdExpGeneric(es, et, s, t []float32, ms, mt, scale float32) (zs, zt, dot float32) {
	n := len(s)
	es, et, t = es[:n], et[:n], t[:n]
	c := log2Scale(scale)
	for i, sv := range s {
		a := exp2f((sv - ms) * c)
		b := exp2f((t[i] - mt) * c)
		es[i], et[i] = a, b
		zs += a
		zt += b
		dot += b * (t[i] - sv)
	}
	return zs, zt, dot
}

// kdRowGeneric is one row of kdRowsGeneric.
func kdRowGeneric(g, et, s, t []float32, scale, gscale float32) (ms, mt, zs, zt, dot float32) {
	ms, mt = max2Generic(s, t)
	zs, zt, dot = kdExpGeneric(g, et, s, t, ms, mt, scale)
	if gscale != 0 {
		axpbyGeneric(g[:len(s)], et, gscale/zs, gscale/zt)
	}
	return ms, mt, zs, zt, dot
}

func kdRowsGeneric(g, et, s, t []float32, rows, cols, gstride int, scale, gscale float32, stats []float32) {
	for r := 0; r < rows; r++ {
		ms, mt, zs, zt, dot := kdRowGeneric(g[r*gstride:r*gstride+cols], et, s[r*cols:(r+1)*cols], t[r*cols:(r+1)*cols], scale, gscale)
		copy(stats[5*r:5*r+5], []float32{ms, mt, zs, zt, dot})
	}
}
