//go:build amd64 && !purego

package vexp

import "golang.org/x/sys/cpu"

//go:noescape
func maxCheckAVX2(x []float32) (m, bad float32)

//go:noescape
func expSumAVX2(dst, x []float32, m, scale float32) float32

//go:noescape
func scaleAVX2(dst []float32, a float32)

//go:noescape
func dotShiftAVX2(e, x []float32, m float32) float64

// expSumAVX2Checked: the assembly takes c = scale·log2 e (see exp.go) and
// trusts its lengths.
func expSumAVX2Checked(dst, x []float32, m, scale float32) float32 {
	return expSumAVX2(dst[:len(x)], x, m, Log2Scale(scale))
}

// dotShiftAVX2Checked: the assembly takes whole blocks of 8; the tail is added
// here, in order.
func dotShiftAVX2Checked(e, x []float32, m float32) float64 {
	e = e[:len(x)]
	n := len(x) &^ 7
	s := dotShiftAVX2(e[:n], x[:n], m)
	mx := float64(m)
	for j := n; j < len(x); j++ {
		s += float64(e[j]) * (float64(x[j]) - mx)
	}
	return s
}

var avx2Impl = Impl{
	Name:     "avx2",
	MaxCheck: maxCheckAVX2,
	ExpSum:   expSumAVX2Checked,
	Scale:    scaleAVX2,
	DotShift: dotShiftAVX2Checked,
}

// useAVX2 selects the assembly (AVX2 and FMA both present).
var useAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA
