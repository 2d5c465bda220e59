package distill

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/exitnet/exitnet/golib/par"
	"github.com/exitnet/exitnet/golib/xerr"
)

// refSoftmax is the float64 reference: softmax(z/T) with log-sum-exp.
func refLogSoftmax(z []float32, T float64) []float64 {
	m := math.Inf(-1)
	for _, v := range z {
		m = math.Max(m, float64(v)/T)
	}
	var s float64
	for _, v := range z {
		s += math.Exp(float64(v)/T - m)
	}
	out := make([]float64, len(z))
	for i, v := range z {
		out[i] = float64(v)/T - m - math.Log(s)
	}
	return out
}

// refKD is the float64 reference loss, straight from the definition
// T²·(1/N)Σ_i Σ_j q_ij(log q_ij − log p_ij), and its analytic gradient (T/N)(p−q).
func refKD(s, t []float32, rows, cols int, T float64) (float64, []float64) {
	var loss float64
	grad := make([]float64, rows*cols)
	for r := 0; r < rows; r++ {
		lp := refLogSoftmax(s[r*cols:(r+1)*cols], T)
		lq := refLogSoftmax(t[r*cols:(r+1)*cols], T)
		for j := range lp {
			q := math.Exp(lq[j])
			if q > 0 {
				loss += q * (lq[j] - lp[j])
			}
			grad[r*cols+j] = T / float64(rows) * (math.Exp(lp[j]) - q)
		}
	}
	return T * T * loss / float64(rows), grad
}

func randLogits(rng *rand.Rand, n int, scale float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * scale)
	}
	return x
}

func TestSoftTargetsVsFloat64(t *testing.T) {
	// Expected values: float64 log-sum-exp reference (refLogSoftmax).
	cases := []struct {
		rows, cols int
		T, scale   float64
		tol        float64
	}{
		{1, 1, 1, 1, 1e-7},
		{3, 7, 2, 3, 3e-7},
		{5, 10, 1, 10, 3e-7},
		{17, 100, 2, 5, 3e-7},
		{4, 1000, 0.5, 20, 3e-7},
		{2, 33, 1e-3, 1, 3e-7}, // very low temperature: nearly one-hot
		{2, 33, 1e4, 1, 3e-7},  // very high temperature: nearly uniform
		{3, 9, 2, 1e30, 3e-7},  // huge logits: max subtraction keeps it finite
	}
	withKernels(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(5, 6))
		for _, c := range cases {
			z := randLogits(rng, c.rows*c.cols, c.scale)
			dst := make([]float32, len(z))
			if err := SoftTargets(dst, z, c.rows, c.cols, c.T); err != nil {
				t.Fatal(err)
			}
			for r := 0; r < c.rows; r++ {
				ref := refLogSoftmax(z[r*c.cols:(r+1)*c.cols], c.T)
				for j, l := range ref {
					got, want := float64(dst[r*c.cols+j]), math.Exp(l)
					if math.Abs(got-want) > c.tol*math.Max(want, 1e-30)+1e-37 && math.Abs(got-want) > 1e-7 {
						t.Fatalf("%+v row %d col %d: %g want %g", c, r, j, got, want)
					}
				}
			}
			// In place gives the same result.
			in := append([]float32(nil), z...)
			if err := SoftTargets(in, in, c.rows, c.cols, c.T); err != nil {
				t.Fatal(err)
			}
			for i := range in {
				if in[i] != dst[i] {
					t.Fatalf("%+v: in-place result differs at %d", c, i)
				}
			}
		}
	})
}

func TestKDLossVsFloat64(t *testing.T) {
	// Expected values: float64 reference from the definition (refKD); the
	// gradient is also checked by central finite differences of refKD below.
	cases := []struct {
		rows, cols int
		T, scale   float64
		tol        float64 // relative tolerance on the loss
	}{
		{1, 1, 2, 1, 1e-6},
		{1, 2, 1, 1, 1e-5},
		{3, 7, 2, 3, 1e-5},
		{8, 10, 1, 5, 1e-5},
		{64, 100, 2, 4, 1e-5},
		{65, 100, 4, 4, 1e-5},
		{130, 9, 2, 2, 1e-5},
		{3, 1000, 2, 10, 1e-5},
		{4, 13, 0.1, 1, 1e-4},
		{4, 13, 100, 1, 1e-4},
		{5, 8, 2, 3, 1e-5},  // no tail
		{5, 16, 2, 3, 1e-5}, // no tail, two vectors
		{70, 24, 2, 3, 1e-5},
	}
	withKernels(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(7, 8))
		for _, c := range cases {
			s := randLogits(rng, c.rows*c.cols, c.scale)
			te := randLogits(rng, c.rows*c.cols, c.scale)
			grad := make([]float32, len(s))
			loss, err := KDLoss(grad, s, te, c.rows, c.cols, c.T)
			if err != nil {
				t.Fatal(err)
			}
			want, wantGrad := refKD(s, te, c.rows, c.cols, c.T)
			// Absolute slack: float32 conditioning. Each per-row term (log-partition sums,
			// logits/T) carries ~1e-7 relative error and the loss multiplies them by T²
			// (torch in float32 has the same error; the Python tests measure both).
			if math.Abs(loss-want) > c.tol*want+2e-7*c.T*c.T*(1+4*c.scale/c.T) {
				t.Fatalf("%+v: loss %g want %g", c, loss, want)
			}
			gmax := 0.0
			for _, g := range wantGrad {
				gmax = math.Max(gmax, math.Abs(g))
			}
			for i := range grad {
				if math.Abs(float64(grad[i])-wantGrad[i]) > 1e-5*gmax+1e-9 {
					t.Fatalf("%+v: grad[%d] %g want %g", c, i, grad[i], wantGrad[i])
				}
			}
			// Loss only (grad nil) gives the same loss.
			l2, err := KDLoss(nil, s, te, c.rows, c.cols, c.T)
			if err != nil || l2 != loss {
				t.Fatalf("%+v: loss-only %g (%v), with grad %g", c, l2, err, loss)
			}
		}
	})
}

func TestKDLossIdenticalIsZero(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	s := randLogits(rng, 5*40, 6)
	g := make([]float32, len(s))
	loss, err := KDLoss(g, s, s, 5, 40, 2)
	if err != nil {
		t.Fatal(err)
	}
	if loss < 0 || loss > 1e-6 {
		t.Fatalf("KL of identical rows = %g, want ~0 and ≥ 0", loss)
	}
	for i, v := range g {
		if math.Abs(float64(v)) > 1e-7 {
			t.Fatalf("grad[%d] = %g, want ~0", i, v)
		}
	}
}

func TestKDLossFiniteDifferences(t *testing.T) {
	// The analytic gradient against central differences of the float64 reference loss.
	rng := rand.New(rand.NewPCG(11, 12))
	const rows, cols, T = 3, 6, 2.0
	s := randLogits(rng, rows*cols, 2)
	te := randLogits(rng, rows*cols, 2)
	grad := make([]float32, rows*cols)
	if _, err := KDLoss(grad, s, te, rows, cols, T); err != nil {
		t.Fatal(err)
	}
	for i := range s {
		const h = 1e-2
		sp := append([]float32(nil), s...)
		sm := append([]float32(nil), s...)
		sp[i] += h
		sm[i] -= h
		lp, _ := refKD(sp, te, rows, cols, T)
		lm, _ := refKD(sm, te, rows, cols, T)
		h2 := float64(sp[i]) - float64(sm[i])
		fd := (lp - lm) / h2
		if math.Abs(fd-float64(grad[i])) > 1e-4 {
			t.Fatalf("grad[%d] = %g, finite difference %g", i, grad[i], fd)
		}
	}
}

func wantInvalid(t *testing.T, err error, words ...string) {
	t.Helper()
	var e *xerr.Error
	if !errors.As(err, &e) || e.Code != xerr.StatusInvalidArgument {
		t.Fatalf("want invalid-argument error, got %v", err)
	}
	for _, w := range words {
		if !strings.Contains(e.Msg, w) {
			t.Fatalf("message %q does not mention %q", e.Msg, w)
		}
	}
}

func TestBadInputs(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	ok := []float32{1, 2, 3, 4, 5, 6}
	g := make([]float32, 6)
	for _, T := range []float64{0, -1, math.NaN(), math.Inf(1), math.Inf(-1), 1e-300, 1e300} {
		_, err := KDLoss(g, ok, ok, 2, 3, T)
		wantInvalid(t, err, "temperature")
		wantInvalid(t, SoftTargets(g, ok, 2, 3, T), "temperature")
	}
	_, err := KDLoss(g, ok, ok[:3], 2, 3, 1)
	wantInvalid(t, err, "teacher")
	_, err = KDLoss(g, ok, ok, 3, 3, 1)
	wantInvalid(t, err, "student")
	_, err = KDLoss(g[:5], ok, ok, 2, 3, 1)
	wantInvalid(t, err, "grad")
	_, err = KDLoss(nil, nil, nil, 0, 3, 1)
	wantInvalid(t, err, "empty batch")
	_, err = KDLoss(nil, ok, ok, 6, 0, 1)
	wantInvalid(t, err, "student")
	_, err = KDLoss(nil, ok, ok, -2, -3, 1)
	wantInvalid(t, err, "student")
	wantInvalid(t, SoftTargets(g[:4], ok, 2, 3, 1), "dst")
	wantInvalid(t, SoftTargets(g, ok, 3, 3, 1), "logits")
	if err := SoftTargets(nil, nil, 0, 3, 1); err != nil {
		t.Fatalf("empty SoftTargets: %v", err)
	}
	withKernels(t, func(t *testing.T) {
		for _, v := range []float32{nan, inf, -inf} {
			bad := append([]float32(nil), ok...)
			bad[4] = v
			_, err := KDLoss(g, bad, ok, 2, 3, 2)
			wantInvalid(t, err, "student", "row 1", "column 1")
			_, err = KDLoss(g, ok, bad, 2, 3, 2)
			wantInvalid(t, err, "teacher", "row 1", "column 1")
			wantInvalid(t, SoftTargets(g, bad, 2, 3, 2), "logits", "row 1", "column 1")
		}
		// Finite but extreme logits whose difference overflows float32.
		big := []float32{3e38, -3e38}
		_, err := KDLoss(nil, big, []float32{-3e38, 3e38}, 1, 2, 1)
		if err != nil {
			wantInvalid(t, err, "overflow")
		}
	})
}

func TestKDNonFiniteEveryPosition(t *testing.T) {
	// Every row length up to 20 and every position: the kernels flag it and the
	// error names the right argument, row and column.
	withKernels(t, func(t *testing.T) {
		for cols := 1; cols <= 20; cols++ {
			for pos := 0; pos < cols; pos++ {
				s := make([]float32, 2*cols)
				te := make([]float32, 2*cols)
				for i := range s {
					s[i], te[i] = float32(i%5), float32(i%3)
				}
				bad := append([]float32(nil), s...)
				bad[cols+pos] = float32(math.NaN())
				_, err := KDLoss(make([]float32, 2*cols), bad, te, 2, cols, 2)
				wantInvalid(t, err, "student: row 1, column "+itoa(pos)+" ")
				_, err = KDLoss(nil, s, bad, 2, cols, 2)
				wantInvalid(t, err, "teacher: row 1, column "+itoa(pos)+" ")
			}
		}
	})
}

func TestThreadCountIndependent(t *testing.T) {
	// Same bits with 1 worker, 4 workers, and 8 goroutines calling at once.
	rng := rand.New(rand.NewPCG(13, 14))
	const rows, cols = 1000, 100
	s := randLogits(rng, rows*cols, 3)
	te := randLogits(rng, rows*cols, 3)
	saved, savedMin := par.Threads(), ParallelMinElems
	defer func() { par.SetThreads(saved); ParallelMinElems = savedMin }()
	ParallelMinElems = 1000
	par.SetThreads(1)
	g1 := make([]float32, rows*cols)
	l1, err := KDLoss(g1, s, te, rows, cols, 2)
	if err != nil {
		t.Fatal(err)
	}
	p1 := make([]float32, rows*cols)
	if err := SoftTargets(p1, s, rows, cols, 2); err != nil {
		t.Fatal(err)
	}
	par.SetThreads(4)
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := make([]float32, rows*cols)
			l, err := KDLoss(g, s, te, rows, cols, 2)
			if err != nil || l != l1 {
				errs <- "loss differs"
				return
			}
			p := make([]float32, rows*cols)
			if err := SoftTargets(p, s, rows, cols, 2); err != nil {
				errs <- err.Error()
				return
			}
			for i := range g {
				if g[i] != g1[i] || p[i] != p1[i] {
					errs <- "grad or soft targets differ"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

func BenchmarkKDLoss(b *testing.B) {
	saved := par.Threads()
	defer par.SetThreads(saved)
	par.SetThreads(1)
	for _, sz := range []struct{ rows, cols int }{{64, 10}, {256, 100}, {4096, 100}, {1024, 1000}} {
		rng := rand.New(rand.NewPCG(1, 1))
		s := randLogits(rng, sz.rows*sz.cols, 3)
		te := randLogits(rng, sz.rows*sz.cols, 3)
		g := make([]float32, len(s))
		for _, k := range allKernels() {
			b.Run(k.name+"/"+itoa(sz.rows)+"x"+itoa(sz.cols), func(b *testing.B) {
				old := kern
				kern = k
				defer func() { kern = old }()
				b.SetBytes(int64(len(s) * 4 * 3))
				for b.Loop() {
					if _, err := KDLoss(g, s, te, sz.rows, sz.cols, 2); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(s)), "ns/elem")
			})
		}
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var buf [20]byte
	i := len(buf)
	for ; n > 0; n /= 10 {
		i--
		buf[i] = byte('0' + n%10)
	}
	return string(buf[i:])
}
