package distill

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/exitnet/exitnet/golib/internal/vexp"
)

// The row primitives (maxCheck, expSum, scale) are vexp's and tested there
// against math.Exp; here: the KD kernel's inlined exponential against them.

// allKernels lists the implementations this CPU can run (the generic one always).
func allKernels() []kernels {
	ks := []kernels{genericKernels}
	if kern.name != genericKernels.name {
		ks = append(ks, kern)
	}
	return ks
}

// withKernels runs f once per available kernel implementation, restoring kern.
func withKernels(t *testing.T, f func(t *testing.T)) {
	saved := kern
	defer func() { kern = saved }()
	for _, k := range allKernels() {
		kern = k
		t.Run(k.name, f)
	}
}

// TestKDRowsExpMatchesVexp: with gscale = 0 kdRows leaves the student's
// exponentials in g; they, the maxima and zs must equal vexp's MaxCheck and
// ExpSum of the same implementation bit for bit (kernel_amd64.s inlines vexp's
// exponential and its constants). Ragged lengths 1..41, scales 1 and 1/3.
func TestKDRowsExpMatchesVexp(t *testing.T) {
	withKernels(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(5, 6))
		for cols := 1; cols <= 41; cols++ {
			for _, scale := range []float32{1, 1.0 / 3} {
				const rows = 3
				s := make([]float32, rows*cols)
				te := make([]float32, rows*cols)
				for i := range s {
					s[i] = float32(rng.NormFloat64() * 20)
					te[i] = float32(rng.NormFloat64() * 20)
				}
				g := make([]float32, rows*cols)
				et := make([]float32, cols)
				st := make([]float32, 5*rows)
				kern.kdRows(g, et, s, te, rows, cols, cols, scale, 0, st)
				want := make([]float32, cols)
				for r := range rows {
					row := s[r*cols : (r+1)*cols]
					m, _ := kern.maxCheck(row)
					z := kern.expSum(want, row, m, scale)
					if st[5*r] != m || st[5*r+2] != z {
						t.Fatalf("cols=%d scale=%g row %d: max %g sum %g, want %g %g", cols, scale, r, st[5*r], st[5*r+2], m, z)
					}
					for j, w := range want {
						if g[r*cols+j] != w {
							t.Fatalf("cols=%d scale=%g row %d col %d: exp %g, want %g (bits %#x, %#x)", cols, scale, r, j,
								g[r*cols+j], w, math.Float32bits(g[r*cols+j]), math.Float32bits(w))
						}
					}
				}
			}
		}
	})
}

// TestKernelsAreVexp: the active kernels' row primitives are vexp's.
func TestKernelsAreVexp(t *testing.T) {
	if KernelName() != vexp.Name() {
		t.Fatalf("distill kernels %q, vexp %q", KernelName(), vexp.Name())
	}
}
