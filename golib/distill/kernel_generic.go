package distill

import "math"

// expf is the scalar version of the exp approximation documented in kernel.go.
func expf(z float32) float32 {
	if z < expLo {
		z = expLo
	}
	if z > expHi {
		z = expHi
	}
	n := float32(math.RoundToEven(float64(z * expLog2e)))
	r := z - n*expC1
	r = r - n*expC2
	p := float32(expP0)
	p = p*r + expP1
	p = p*r + expP2
	p = p*r + expP3
	p = p*r + expP4
	p = p*r + expP5
	y := p*(r*r) + r + 1
	bits := uint32(int32(n)+127) << 23
	return y * math.Float32frombits(bits)
}

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
	var s float32
	for i, v := range x {
		e := expf((v - m) * scale)
		dst[i] = e
		s += e
	}
	return s
}

func expSumDotGeneric(dst, x, y []float32, m, scale float32) (sum, dot float32) {
	dst = dst[:len(x)]
	y = y[:len(x)]
	for i, v := range x {
		e := expf((v - m) * scale)
		dst[i] = e
		sum += e
		dot += e * (v - y[i])
	}
	return sum, dot
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
