//go:build !amd64 || purego

package vexp

// Without the assembly (other architectures, -tags purego) the package functions
// use the generic code; these are never called.

const useAVX2 = false

var avx2Impl = Generic

func maxCheckAVX2(x []float32) (m, bad float32) { return maxCheckGeneric(x) }

func expSumAVX2Checked(dst, x []float32, m, scale float32) float32 {
	return expSumGeneric(dst, x, m, scale)
}

func scaleAVX2(dst []float32, a float32) { scaleGeneric(dst, a) }

func dotShiftAVX2Checked(e, x []float32, m float32) float64 { return dotShiftGeneric(e, x, m) }
