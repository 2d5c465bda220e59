package policy

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/exitnet/exitnet/golib/par"
	"github.com/exitnet/exitnet/golib/xerr"
)

// Reference: refConf (float64 probabilities, then the measure). Tolerance 1e-6
// absolute: float32 output of a float64 computation.
func TestExitStepVsFloat64(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		n, c int
		T    float32
		ties bool
	}{{50, 10, 1, false}, {40, 1, 1, false}, {30, 2, 0.5, false}, {60, 7, 3, true}, {2000, 100, 1.5, false}} {
		l := randLogits(rng, 1, tc.n, tc.c, tc.ties)[0]
		for _, m := range []Measure{MaxSoftmax, NegEntropy, Margin} {
			conf := make([]float32, tc.n)
			pred := make([]int32, tc.n)
			ex := make([]bool, tc.n)
			tau := float32(0.5)
			if err := ExitStep(0, 3, l.Data, tc.n, tc.c, m, tau, tc.T, nil, nil, conf, pred, ex); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < tc.n; i++ {
				want, arg := refConf(l.Data[i*tc.c:(i+1)*tc.c], m, float64(tc.T))
				if math.Abs(float64(conf[i])-want) > 1e-6 {
					t.Fatalf("%v n=%d c=%d row %d: conf %v want %v", m, tc.n, tc.c, i, conf[i], want)
				}
				if int(pred[i]) != arg {
					t.Fatalf("%v row %d: pred %d want %d", m, i, pred[i], arg)
				}
				if ex[i] != (conf[i] >= tau) {
					t.Fatalf("%v row %d: exit %v with conf %v", m, i, ex[i], conf[i])
				}
			}
			// last exit always accepts
			ExitStep(2, 3, l.Data, tc.n, tc.c, m, float32(math.Inf(1)), tc.T, nil, nil, conf, pred, ex)
			for i := range ex[:tc.n] {
				if !ex[i] {
					t.Fatalf("last exit refused row %d", i)
				}
			}
		}
	}
}

func TestExitStepPatience(t *testing.T) {
	// predictions per exit for 3 rows (one-hot logits over 3 classes)
	preds := [][]int{{0, 1, 2}, {0, 2, 2}, {0, 1, 2}, {0, 1, 1}}
	want := [][]float32{{1, 1, 1}, {2, 1, 2}, {3, 1, 3}, {4, 2, 1}} // hand-counted runs
	K := len(preds)
	run, prev := make([]int32, 3), make([]int32, 3)
	conf, pred, ex := make([]float32, 3), make([]int32, 3), make([]bool, 3)
	for k := range K {
		l := make([]float32, 9)
		for i, p := range preds[k] {
			l[i*3+p] = 5
		}
		if err := ExitStep(k, K, l, 3, 3, Patience, 2, 1, run, prev, conf, pred, ex); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if conf[i] != want[k][i] || int(pred[i]) != preds[k][i] || ex[i] != (k == K-1 || want[k][i] >= 2) {
				t.Fatalf("exit %d row %d: conf %v pred %d exit %v", k, i, conf[i], pred[i], ex[i])
			}
		}
	}
}

func TestExitStepErrors(t *testing.T) {
	l := []float32{1, 2, 3, float32(math.NaN()), 0, 1}
	c, p, e := make([]float32, 2), make([]int32, 2), make([]bool, 2)
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"nan", ExitStep(0, 2, l, 2, 3, MaxSoftmax, 0.5, 1, nil, nil, c, p, e), "logits: row 1"},
		{"k", ExitStep(2, 2, l, 2, 3, MaxSoftmax, 0.5, 1, nil, nil, c, p, e), "k:"},
		{"len", ExitStep(0, 2, l, 3, 3, MaxSoftmax, 0.5, 1, nil, nil, c, p, e), "logits: length"},
		{"temp", ExitStep(0, 2, l[:3], 1, 3, MaxSoftmax, 0.5, 0, nil, nil, c, p, e), "temperature"},
		{"tau", ExitStep(0, 2, l[:3], 1, 3, MaxSoftmax, float32(math.NaN()), 1, nil, nil, c, p, e), "tau"},
		{"run", ExitStep(0, 2, l[:3], 1, 3, Patience, 1, 1, nil, nil, c, p, e), "run"},
		{"conf", ExitStep(0, 2, l[:3], 1, 3, MaxSoftmax, 1, 1, nil, nil, nil, p, e), "conf"},
	} {
		if tc.err == nil || !strings.HasPrefix(tc.err.Error(), tc.want) || xerr.CodeOf(tc.err) != xerr.StatusInvalidArgument {
			t.Errorf("%s: got %v, want prefix %q", tc.name, tc.err, tc.want)
		}
	}
	if _, err := ParseMeasure("softmax"); err == nil {
		t.Error("ParseMeasure accepted softmax")
	}
	for i, n := range []string{"max_softmax", "entropy", "margin", "patience"} {
		if m, err := ParseMeasure(n); err != nil || int(m) != i || m.String() != n {
			t.Errorf("ParseMeasure(%q) = %v, %v", n, m, err)
		}
	}
}

// Identical rows get bit-identical confidences wherever they sit in the batch
// and however the rows are split across threads (the exact curve's ties rely on it).
func TestExitStepIdenticalRows(t *testing.T) {
	saved := par.Threads()
	defer par.SetThreads(saved)
	par.SetThreads(2)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range []int{1, 7, 100, 300} {
		const n = 2000
		l := randLogits(rng, 1, n, c, false)[0]
		for _, i := range []int{1, 17, n / 2, n - 1} {
			copy(l.Data[i*c:(i+1)*c], l.Data[:c])
		}
		for _, m := range []Measure{MaxSoftmax, NegEntropy, Margin} {
			conf, pred, ex := make([]float32, n), make([]int32, n), make([]bool, n)
			if err := ExitStep(0, 2, l.Data, n, c, m, 0.5, 1.3, nil, nil, conf, pred, ex); err != nil {
				t.Fatal(err)
			}
			for _, i := range []int{1, 17, n / 2, n - 1} {
				if conf[i] != conf[0] || pred[i] != pred[0] {
					t.Fatalf("%v C=%d row %d: conf %v pred %d, row 0: %v %d", m, c, i, conf[i], pred[i], conf[0], pred[0])
				}
			}
		}
	}
}

// Extreme temperatures: T → 0 gives one-hot probabilities (ties split evenly),
// T → ∞ the uniform ones. Reference: refConf in float64, tolerance 1e-6.
func TestExitStepExtremeTemperature(t *testing.T) {
	l := []float32{1, 3, 2, 0, 3, 3, -1, 2, 0.5, -2, 4, 4.5}
	for _, T := range []float32{1e-30, 1e-40, math.SmallestNonzeroFloat32, 3e38, math.MaxFloat32} {
		for _, m := range []Measure{MaxSoftmax, NegEntropy, Margin} {
			conf, pred, ex := make([]float32, 3), make([]int32, 3), make([]bool, 3)
			if err := ExitStep(0, 2, l, 3, 4, m, 0.5, T, nil, nil, conf, pred, ex); err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				want, arg := refConf(l[i*4:(i+1)*4], m, float64(T))
				if math.Abs(float64(conf[i])-want) > 1e-6 || int(pred[i]) != arg {
					t.Fatalf("%v T=%g row %d: conf %v pred %d, want %v %d", m, T, i, conf[i], pred[i], want, arg)
				}
			}
		}
	}
}
