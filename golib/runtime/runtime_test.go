package runtime

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/exitnet/exitnet/golib/par"
	"github.com/exitnet/exitnet/golib/policy"
	"github.com/exitnet/exitnet/golib/xerr"
)

// forThreads runs f at 1 thread (loops below minChunk stay on the caller)
// and at 3 threads with a tiny minChunk, so even small test models split
// their loops across workers.
func forThreads(f func(threads int)) {
	defer par.SetThreads(par.Threads())
	defer func(c int) { minChunk = c }(minChunk)
	for _, threads := range []int{1, 3} {
		par.SetThreads(threads)
		minChunk = 1 << 17
		if threads > 1 {
			minChunk = 16
		}
		f(threads)
	}
}

func randInput(seed uint64, n, size int) []float32 {
	r := rand.New(rand.NewPCG(seed, 3))
	x := make([]float32, n*size)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

func loadEveryOp(t testing.TB) (*Model, *GraphV1, *modelBuilder) {
	b := newBuilder(1)
	g := everyOpGraph(b)
	m, err := Decode(b.encode(g))
	if err != nil {
		t.Fatal(err)
	}
	return m, g, b
}

// Every exit's logits equal the brute-force float64 interpreter (reference:
// refLogits in ref_test.go), for several thread counts and batch sizes (batch 1
// exercises the column/row split inside a sample).
func TestLogitsMatchReference(t *testing.T) {
	m, g, b := loadEveryOp(t)
	insz := 3 * 13 * 12
	forThreads(func(threads int) {
		for _, n := range []int{1, 2, 7} {
			x := randInput(uint64(n), n, insz)
			var res Result
			if err := m.Predict(&res, x, n, Options{Temperature: 1, ReturnLogits: true}); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < n; i++ {
				want := refLogits(g, b.weights, x[i*insz:(i+1)*insz])
				for k := range want {
					for c, w := range want[k] {
						got := float64(res.Logits[k][i*5+c])
						if math.Abs(got-w) > 1e-5+1e-4*math.Abs(w) {
							t.Fatalf("threads %d n %d sample %d exit %d class %d: got %g want %g", threads, n, i, k, c, got, w)
						}
					}
				}
				if res.Exit[i] != 2 {
					t.Fatalf("no thresholds: sample %d left at exit %d", i, res.Exit[i])
				}
			}
			if want := int64(n) * m.ExitCosts()[2]; res.MACs != want {
				t.Fatalf("MACs %d want %d", res.MACs, want)
			}
		}
	})
}

// With thresholds, the exits taken equal policy.ExitStep applied offline to
// the full logits (computed without early exit), for every measure; MACs equal
// the sum of the exit costs taken.
func TestDecisionsMatchOfflinePolicy(t *testing.T) {
	m, _, _ := loadEveryOp(t)
	const n = 300
	insz := 3 * 13 * 12
	x := randInput(9, n, insz)
	var full Result
	if err := m.Predict(&full, x, n, Options{Temperature: 1, ReturnLogits: true}); err != nil {
		t.Fatal(err)
	}
	costs := m.ExitCosts()
	for _, meas := range []policy.Measure{policy.MaxSoftmax, policy.NegEntropy, policy.Margin, policy.Patience} {
		// thresholds at the 60th percentile of each exit's offline confidence,
		// so every exit takes some samples
		tau := make([]float32, 2)
		for k := range tau {
			c, p, e := make([]float32, n), make([]int32, n), make([]bool, n)
			if err := policy.ExitStep(k, 3, full.Logits[k], n, 5, meas, float32(math.Inf(1)), 1, make([]int32, n), make([]int32, n), c, p, e); err != nil {
				t.Fatal(err)
			}
			slices.Sort(c)
			tau[k] = c[n*6/10]
		}
		if meas == policy.Patience {
			tau = []float32{2, 2}
		}
		// offline: every sample sees every exit
		exitAt := make([]int32, n)
		predAt := make([]int32, n)
		for i := range exitAt {
			exitAt[i] = -1
		}
		run, prev := make([]int32, n), make([]int32, n)
		conf, pred := make([]float32, n), make([]int32, n)
		ex := make([]bool, n)
		for k := 0; k < 3; k++ {
			t2 := float32(math.Inf(1))
			if k < 2 {
				t2 = tau[k]
			}
			if err := policy.ExitStep(k, 3, full.Logits[k], n, 5, meas, t2, 1, run, prev, conf, pred, ex); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < n; i++ {
				if exitAt[i] < 0 && ex[i] {
					exitAt[i], predAt[i] = int32(k), pred[i]
				}
			}
		}
		var res Result
		if err := m.Predict(&res, x, n, Options{Temperature: 1, Measure: meas, Thresholds: tau, ReturnLogits: true}); err != nil {
			t.Fatal(err)
		}
		var macs int64
		hist := [3]int{}
		for i := 0; i < n; i++ {
			if res.Exit[i] != exitAt[i] || res.Pred[i] != predAt[i] {
				// BLAS results may differ in the last bit with the batch composition
				// (compaction changes it): allow a flip only right at a threshold.
				k := min(res.Exit[i], exitAt[i])
				c1, p1, e1 := make([]float32, 1), make([]int32, 1), make([]bool, 1)
				_ = policy.ExitStep(int(k), 3, full.Logits[k][i*5:i*5+5], 1, 5, meas, float32(math.Inf(1)), 1, make([]int32, 1), make([]int32, 1), c1, p1, e1)
				if meas == policy.Patience || math.Abs(float64(c1[0]-tau[k])) > 1e-5 {
					t.Fatalf("%v sample %d: exit %d pred %d, offline exit %d pred %d", meas, i, res.Exit[i], res.Pred[i], exitAt[i], predAt[i])
				}
			}
			macs += costs[res.Exit[i]]
			hist[res.Exit[i]]++
			// logits after the exit taken are NaN; before, equal to the full run
			for k := 0; k < 3; k++ {
				for c := 0; c < 5; c++ {
					v, w := res.Logits[k][i*5+c], full.Logits[k][i*5+c]
					if k > int(res.Exit[i]) != math.IsNaN(float64(v)) {
						t.Fatalf("%v sample %d exit %d: logits[%d] = %g", meas, i, res.Exit[i], k, v)
					}
					if k <= int(res.Exit[i]) && math.Abs(float64(v-w)) > 1e-5+1e-5*math.Abs(float64(w)) {
						t.Fatalf("%v sample %d: compacted logits differ at exit %d: %g vs %g", meas, i, k, v, w)
					}
				}
			}
		}
		if res.MACs != macs {
			t.Fatalf("%v: MACs %d want %d", meas, res.MACs, macs)
		}
		if meas != policy.Patience && (hist[0] == 0 || hist[1] == 0 || hist[2] == 0) {
			t.Fatalf("%v: exit histogram %v (thresholds do not split the batch)", meas, hist)
		}
	}
}

// 8 goroutines sharing one Model get the single-thread results.
func TestConcurrentPredict(t *testing.T) {
	m, _, _ := loadEveryOp(t)
	insz := 3 * 13 * 12
	const n = 33
	x := randInput(5, n, insz)
	var want Result
	opts := Options{Temperature: 1, Thresholds: []float32{0.5, 0.5}, ReturnLogits: true}
	if err := m.Predict(&want, x, n, opts); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var res Result
			for rep := 0; rep < 5; rep++ {
				if err := m.Predict(&res, x, n, opts); err != nil {
					errs <- err.Error()
					return
				}
				for i := 0; i < n; i++ {
					if res.Pred[i] != want.Pred[i] || res.Exit[i] != want.Exit[i] || res.Conf[i] != want.Conf[i] {
						errs <- "result differs"
						return
					}
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

func TestPredictBadInput(t *testing.T) {
	m, _, _ := loadEveryOp(t)
	insz := 3 * 13 * 12
	x := randInput(1, 2, insz)
	var res Result
	cases := []struct {
		name string
		x    []float32
		n    int
		opts Options
		want string
	}{
		{"short", x[:insz+5], 2, Options{Temperature: 1}, "x:"},
		{"negative n", x, -1, Options{Temperature: 1}, "n:"},
		{"thresholds", x, 2, Options{Temperature: 1, Thresholds: []float32{0.1, 0.2, 0.3, 0.4}}, "thresholds:"},
		{"nan threshold", x, 2, Options{Temperature: 1, Thresholds: []float32{float32(math.NaN()), 0.2}}, "thresholds:"},
		{"temperature", x, 2, Options{Temperature: -1}, "temperature:"},
		{"measure", x, 2, Options{Temperature: 1, Measure: 17}, "measure:"},
	}
	for _, c := range cases {
		err := m.Predict(&res, c.x, c.n, c.opts)
		if xerr.CodeOf(err) != xerr.StatusInvalidArgument || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: got %v", c.name, err)
		}
	}
	nan := append([]float32(nil), x...)
	nan[insz+7] = float32(math.NaN())
	err := m.Predict(&res, nan, 2, Options{Temperature: 1})
	if xerr.CodeOf(err) != xerr.StatusInvalidArgument || !strings.Contains(err.Error(), "sample 1") {
		t.Errorf("NaN input: got %v", err)
	}
	if err := m.Predict(&res, nil, 0, Options{Temperature: 1}); err != nil || len(res.Pred) != 0 {
		t.Errorf("empty batch: %v", err)
	}
}

func TestLoadBadFiles(t *testing.T) {
	b := newBuilder(2)
	g := everyOpGraph(b)
	good := b.encode(g)
	mutate := func(f func(g *GraphV1)) []byte {
		b2 := newBuilder(2)
		g2 := everyOpGraph(b2)
		f(g2)
		return b2.encode(g2)
	}
	cases := []struct {
		name string
		data []byte
		code xerr.Status
		want string
	}{
		{"truncated", good[:len(good)/2], xerr.StatusIO, ""},
		{"empty", nil, xerr.StatusIO, ""},
		{"garbage", []byte(strings.Repeat("ARROW1", 100)), xerr.StatusIO, ""},
		{"huge input", mutate(func(g *GraphV1) { g.InputShape = []int{3, 1 << 30, 12} }), xerr.StatusIO, "input_shape"},
		{"huge channels", mutate(func(g *GraphV1) { g.Stages[0][0].OutChannels = 1 << 40 }), xerr.StatusIO, "out_channels"},
		{"unknown op", mutate(func(g *GraphV1) { g.Stages[1] = append(g.Stages[1], OpSpec{Op: "gelu"}) }), xerr.StatusNotSupported, `"gelu"`},
		{"wrong channels", mutate(func(g *GraphV1) { g.InputShape[0] = 4 }), xerr.StatusIO, "in_channels"},
		{"missing weight", mutate(func(g *GraphV1) { g.Heads[0][3].Weight = "nope" }), xerr.StatusIO, `"nope"`},
		{"head classes", mutate(func(g *GraphV1) { g.NumClasses = 6 }), xerr.StatusIO, "num_classes"},
	}
	for _, c := range cases {
		_, err := Decode(c.data)
		if xerr.CodeOf(err) != c.code || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v (status %v)", c.name, err, xerr.CodeOf(err))
		}
	}
	// every truncation point fails cleanly
	for cut := 0; cut < len(good); cut += 97 {
		if _, err := Decode(good[:cut]); err == nil {
			t.Fatalf("truncated at %d: no error", cut)
		}
	}
	// flipped bytes never panic
	r := rand.New(rand.NewPCG(4, 4))
	for i := 0; i < 300; i++ {
		bad := append([]byte(nil), good...)
		for j := 0; j < 4; j++ {
			bad[r.IntN(len(bad))] ^= byte(1 + r.IntN(255))
		}
		_, _ = Decode(bad)
	}
	// Load reports I/O errors with the path
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.arrow")); xerr.CodeOf(err) != xerr.StatusIO {
		t.Errorf("missing file: %v", err)
	}
	p := filepath.Join(dir, "m.arrow")
	if err := os.WriteFile(p, good, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if m.NumExits() != 3 || m.InputShape() != [3]int{3, 13, 12} || m.NumClasses() != 5 {
		t.Fatalf("getters: %d %v %d", m.NumExits(), m.InputShape(), m.NumClasses())
	}
}

// Exit costs equal hand-counted MACs of the everyOpGraph layers.
func TestExitCosts(t *testing.T) {
	m, _, _ := loadEveryOp(t)
	s0 := 8*13*12*3*9 + 8*13*12*4*9
	h0 := 8 * 5
	s1 := 8*7*6*1*9 + 8*7*6*8 + 12*4*3*2*9 + 12*4*3*12*9 + 12*4*3*8
	h1 := 240*16 + 16*5
	s2 := 24*3*2*1*9 + 48*20
	h2 := 20 * 5
	want := []int64{int64(s0 + h0), int64(s0 + h0 + s1 + h1), int64(s0 + h0 + s1 + h1 + s2 + h2)}
	got := m.ExitCosts()
	for k := range want {
		if got[k] != want[k] {
			t.Fatalf("exit costs %v want %v", got, want)
		}
	}
}

// Steady-state calls reuse the workspace and the Result: what is still
// allocated per call (closures for par.For) is small next to the activations.
func TestSteadyStateAllocs(t *testing.T) {
	m, _, _ := loadEveryOp(t)
	x := randInput(3, 64, 3*13*12)
	var res Result
	opts := Options{Temperature: 1, Thresholds: []float32{0.5, 0.5}}
	_ = m.Predict(&res, x, 64, opts)
	var before, after goruntime.MemStats
	goruntime.GC()
	goruntime.ReadMemStats(&before)
	const reps = 20
	for i := 0; i < reps; i++ {
		_ = m.Predict(&res, x, 64, opts)
	}
	goruntime.ReadMemStats(&after)
	perCall := (after.TotalAlloc - before.TotalAlloc) / reps
	act := 0
	for _, sz := range m.slots {
		act += 64 * sz * 4
	}
	// gonum's parallel Sgemm allocates its worker state per call (~130 KB here);
	// OpenBLAS in the shared library does not.
	if perCall > uint64(act/4) {
		t.Fatalf("%d bytes allocated per steady-state call (workspace is %d bytes)", perCall, act)
	}
}

// Corrupted files found by the Python test (byte flips in the schema) made
// arrow-go allocate a declared vector length; arrowx.CheckIPCFooter refuses them first.
func TestCorruptedSchemaLengths(t *testing.T) {
	b := newBuilder(2)
	good := b.encode(everyOpGraph(b))
	r := rand.New(rand.NewPCG(9, 9))
	tail := len(good) - 2048 // the footer and its schema are at the end
	for i := 0; i < 3000; i++ {
		bad := append([]byte(nil), good...)
		for j := 0; j < 3; j++ {
			bad[tail+r.IntN(len(good)-tail)] ^= byte(1 + r.IntN(255))
		}
		_, _ = Decode(bad)
	}
}

// conv → relu → 2×2 max-pool is fused into the conv epilogue (28→14→7→3: even and
// odd sizes); the result equals the brute-force reference, batch 1 and 5.
func TestFusedConvPool(t *testing.T) {
	b := newBuilder(11)
	pool := OpSpec{Op: "maxpool2d", Kernel: []int{2, 2}, Stride: []int{2, 2}, Padding: []int{0, 0}}
	g := &GraphV1{FormatVersion: 1, InputShape: []int{1, 28, 28}, NumClasses: 10,
		Stages: [][]OpSpec{{
			b.conv("c1", 1, 8, 3, 1, 1, 1, 1, true), {Op: "relu"}, pool,
			b.conv("c2", 8, 8, 3, 1, 1, 1, 1, false), pool, // no activation between
			b.conv("c3", 8, 6, 3, 1, 1, 1, 1, true), {Op: "relu6"}, pool,
		}},
		Heads: [][]OpSpec{{{Op: "flatten"}, b.linear("l", 6*9, 10)}}}
	m, err := Decode(b.encode(g))
	if err != nil {
		t.Fatal(err)
	}
	fused := 0
	for _, ins := range m.stages[0].code {
		if ins.pool2 {
			fused++
		}
	}
	if fused != 3 {
		t.Fatalf("%d convolutions fused with their pool, want 3", fused)
	}
	defer par.SetThreads(par.Threads())
	defer func(c int) { minChunk = c }(minChunk)
	par.SetThreads(2)
	minChunk = 64
	for _, n := range []int{1, 5} {
		x := randInput(uint64(n), n, 784)
		var res Result
		if err := m.Predict(&res, x, n, Options{Temperature: 1, ReturnLogits: true}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			want := refLogits(g, b.weights, x[i*784:(i+1)*784])[0]
			for c, w := range want {
				if got := float64(res.Logits[0][i*10+c]); math.Abs(got-w) > 1e-5+1e-4*math.Abs(w) {
					t.Fatalf("n %d sample %d class %d: %g want %g", n, i, c, got, w)
				}
			}
		}
	}
}
