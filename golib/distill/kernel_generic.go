package distill

import "github.com/exitnet/exitnet/golib/internal/vexp"

func axpbyGeneric(dst, e []float32, a, b float32) {
	e = e[:len(dst)]
	for i := range dst {
		dst[i] = a*dst[i] - b*e[i]
	}
}

func max2Generic(s, t []float32) (ms, mt float32) {
	ms, _ = vexp.Generic.MaxCheck(s)
	mt, _ = vexp.Generic.MaxCheck(t[:len(s)])
	return ms, mt
}

func kdExpGeneric(es, et, s, t []float32, ms, mt, scale float32) (zs, zt, dot float32) {
	n := len(s)
	es, et, t = es[:n], et[:n], t[:n]
	c := vexp.Log2Scale(scale)
	for i, sv := range s {
		a := vexp.Exp2((sv - ms) * c)
		b := vexp.Exp2((t[i] - mt) * c)
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
