package fisher

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/exitnet/exitnet/golib/internal/fsx"
	"github.com/exitnet/exitnet/golib/par"
	"github.com/exitnet/exitnet/golib/xerr"
)

func TestClassProbsAndSampleLabels(t *testing.T) {
	logits := []float32{0, 0, 0, 1000, 0, -1000, 2, 1, 0}
	p := make([]float32, 9)
	if err := ClassProbs(p, logits, 3, 3); err != nil {
		t.Fatal(err)
	}
	// Expected: softmax by hand.
	e := []float64{math.Exp(2), math.Exp(1), 1}
	s := e[0] + e[1] + e[2]
	want := []float64{1. / 3, 1. / 3, 1. / 3, 1, 0, 0, e[0] / s, e[1] / s, e[2] / s}
	for i := range p {
		if math.Abs(float64(p[i])-want[i]) > 1e-7 {
			t.Fatalf("p[%d] = %v want %v", i, p[i], want[i])
		}
	}
	// Sampling: frequencies match the probabilities (4σ), deterministic, chunk-invariant.
	const rows = 20000
	lg := make([]float32, rows*3)
	for r := 0; r < rows; r++ {
		copy(lg[r*3:], logits[6:9])
	}
	l1 := make([]int32, rows)
	if err := SampleLabels(l1, lg, rows, 3, 42, 0); err != nil {
		t.Fatal(err)
	}
	var cnt [3]float64
	for _, v := range l1 {
		cnt[v]++
	}
	for c := range cnt {
		pc := want[6+c]
		if sd := math.Sqrt(rows * pc * (1 - pc)); math.Abs(cnt[c]-rows*pc) > 4*sd {
			t.Fatalf("class %d: %v draws, expected %v ± %v", c, cnt[c], rows*pc, sd)
		}
	}
	par.SetThreads(1)
	l2 := make([]int32, rows)
	_ = SampleLabels(l2[:7000], lg[:7000*3], 7000, 3, 42, 0)
	_ = SampleLabels(l2[7000:], lg[7000*3:], rows-7000, 3, 42, 7000)
	par.SetThreads(2)
	for i := range l1 {
		if l1[i] != l2[i] {
			t.Fatalf("row %d: %d vs %d (not deterministic)", i, l1[i], l2[i])
		}
	}
	l3 := make([]int32, rows)
	_ = SampleLabels(l3, lg, rows, 3, 43, 0)
	same := 0
	for i := range l1 {
		if l1[i] == l3[i] {
			same++
		}
	}
	if same == rows {
		t.Fatal("seed has no effect")
	}
	wantCode(t, SampleLabels(l1[:2], logits, 3, 3, 1, 0), xerr.StatusInvalidArgument, "dst")
	wantCode(t, ClassProbs(p, []float32{0, float32(math.NaN()), 0, 0, 0, 0, 0, 0, 0}, 3, 3), xerr.StatusInvalidArgument, "logits")
	wantCode(t, ClassProbs(p, logits, 3, 0), xerr.StatusInvalidArgument, "logits")
}

func TestConsolidate(t *testing.T) {
	f := [][]float32{{1, 2}, {3, 5}, {0.5, 7}}
	// Expected values: the formulas, by hand.
	for _, tc := range []struct {
		mode  string
		w     []float64
		gamma float64
		want  []float64
	}{
		{"sum", nil, 0, []float64{4.5, 14}},
		{"weighted", []float64{1, 0.5, 2}, 0, []float64{1 + 1.5 + 1, 2 + 2.5 + 14}},
		{"online", nil, 0.5, []float64{(1*0.5+3)*0.5 + 0.5, (2*0.5+5)*0.5 + 7}},
		{"online", nil, 1, []float64{4.5, 14}},
	} {
		out, err := Consolidate(tc.mode, f, tc.w, tc.gamma)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != 1 {
			t.Fatal(len(out))
		}
		for i, v := range out[0] {
			if math.Abs(float64(v)-tc.want[i]) > 1e-6 {
				t.Fatalf("%s: %v want %v", tc.mode, out[0], tc.want)
			}
		}
	}
	out, err := Consolidate("separate", f, nil, 0)
	if err != nil || len(out) != 3 || out[1][1] != 5 {
		t.Fatal(out, err)
	}
	for _, g := range []float64{0, -0.1, 1.5, math.NaN()} {
		_, err := Consolidate("online", f, nil, g)
		wantCode(t, err, xerr.StatusInvalidArgument, "gamma")
	}
	_, err = Consolidate("weighted", f, []float64{1}, 0)
	wantCode(t, err, xerr.StatusInvalidArgument, "weights")
	_, err = Consolidate("max", f, nil, 0)
	wantCode(t, err, xerr.StatusInvalidArgument, "mode")
	_, err = Consolidate("sum", [][]float32{{1}, {1, 2}}, nil, 0)
	wantCode(t, err, xerr.StatusInvalidArgument, "fishers")
	_, err = Consolidate("sum", nil, nil, 0)
	wantCode(t, err, xerr.StatusInvalidArgument, "fishers")
}

func TestPenaltyFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, p := range []int{1, 7, 8, 9, 100, penaltyChunk + 13} {
		theta := randSlice(rng, p)
		anchors := [][]float32{randSlice(rng, p), randSlice(rng, p)}
		fishers := [][]float32{make([]float32, p), make([]float32, p)}
		for k := range fishers {
			for i := range fishers[k] {
				fishers[k][i] = rng.Float32()
			}
		}
		const lam = 3.5
		// Reference value in float64.
		var ref float64
		for k := range anchors {
			for i := range theta {
				d := float64(theta[i]) - float64(anchors[k][i])
				ref += float64(fishers[k][i]) * d * d
			}
		}
		ref *= lam / 2
		grad := make([]float32, p)
		v, err := PenaltyGrad(grad, theta, anchors, fishers, lam)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(v-ref) > 1e-5*math.Abs(ref) {
			t.Fatalf("p=%d value %v want %v", p, v, ref)
		}
		v2, _ := Penalty(theta, anchors, fishers, lam)
		if v2 != v {
			t.Fatalf("Penalty %v != PenaltyGrad %v", v2, v)
		}
		// Central finite differences of the float64 penalty at a few coordinates.
		for _, i := range []int{0, p / 2, p - 1} {
			const h = 1e-3
			f := func(x float64) float64 {
				var s float64
				for k := range anchors {
					d := x - float64(anchors[k][i])
					s += float64(fishers[k][i]) * d * d
				}
				return lam / 2 * s
			}
			fd := (f(float64(theta[i])+h) - f(float64(theta[i])-h)) / (2 * h)
			if math.Abs(float64(grad[i])-fd) > 1e-4*math.Max(1, math.Abs(fd)) {
				t.Fatalf("p=%d grad[%d] = %v, finite difference %v", p, i, grad[i], fd)
			}
		}
	}
}

func TestPenaltyKernelRagged(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, n := range []int{1, 7, 8, 9, 15, 16, 17, 63, 1001} {
		th, an, fi := randSlice(rng, n), randSlice(rng, n), randSlice(rng, n)
		for _, acc := range []bool{false, true} {
			g1, g2 := randSlice(rng, n), make([]float32, n)
			copy(g2, g1)
			v1 := penaltyKernel(g1, th, an, fi, 1.5, acc)
			v2 := penaltyGeneric(g2, th, an, fi, 1.5, acc)
			if math.Abs(v1-v2) > 1e-12*math.Max(1, math.Abs(v2)) {
				t.Fatalf("n=%d value %v vs %v", n, v1, v2)
			}
			for i := range g1 {
				if g1[i] != g2[i] {
					t.Fatalf("n=%d grad[%d] %v vs %v", n, i, g1[i], g2[i])
				}
			}
		}
	}
}

func TestPenaltyErrors(t *testing.T) {
	x := []float32{1, 2}
	_, err := PenaltyGrad(nil, x, [][]float32{x}, [][]float32{x}, -1)
	wantCode(t, err, xerr.StatusInvalidArgument, "lambda")
	_, err = PenaltyGrad(nil, x, [][]float32{x}, nil, 1)
	wantCode(t, err, xerr.StatusInvalidArgument, "anchors")
	_, err = PenaltyGrad(nil, x, [][]float32{{1}}, [][]float32{x}, 1)
	wantCode(t, err, xerr.StatusInvalidArgument, "anchor")
	_, err = PenaltyGrad(make([]float32, 3), x, [][]float32{x}, [][]float32{x}, 1)
	wantCode(t, err, xerr.StatusInvalidArgument, "dst")
	_, err = PenaltyGrad(nil, []float32{float32(math.NaN()), 1}, [][]float32{x}, [][]float32{x}, 1)
	wantCode(t, err, xerr.StatusInvalidArgument, "params")
	v, err := PenaltyGrad(make([]float32, 2), x, nil, nil, 1)
	if err != nil || v != 0 {
		t.Fatal(v, err)
	}
}

func testState(t testing.TB) *State {
	l := mustLayout(t, Param{"a.weight", []int{2, 3}}, Param{"a.bias", []int{2}})
	return &State{
		Layout:  l,
		Fishers: [][]float32{{1, 2, 3, 4, 5, 6, 7, 8}, {0, 0.5, 0, 0, 0, 0, 0, 1}},
		Anchors: [][]float32{{-1, 2, -3, 4, -5, 6, -7, 8}},
		Meta:    map[string]string{"n_samples": "[100, 50]", "label_mode": "exact"},
	}
}

func TestStateRoundTripAndCorruption(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ewc.arrow")
	s := testState(t)
	if err := SaveState(path, s); err != nil {
		t.Fatal(err)
	}
	got, err := LoadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Layout.Equal(s.Layout) || len(got.Fishers) != 2 || len(got.Anchors) != 1 || got.Meta["label_mode"] != "exact" {
		t.Fatalf("round trip: %+v", got)
	}
	for k := range s.Fishers {
		for i := range s.Fishers[k] {
			if got.Fishers[k][i] != s.Fishers[k][i] {
				t.Fatal("fisher mismatch")
			}
		}
	}
	if got.Anchors[0][6] != -7 {
		t.Fatal("anchor mismatch")
	}
	data, _ := os.ReadFile(path)
	// Every truncation is an IO error.
	for cut := 0; cut < len(data); cut += 7 {
		if _, err := DecodeState(data[:cut]); xerr.CodeOf(err) != xerr.StatusIO {
			t.Fatalf("truncated at %d: %v", cut, err)
		}
	}
	// Every single-byte flip is an IO error or (padding bytes) a correct state.
	for i := range data {
		c := append([]byte(nil), data...)
		c[i] ^= 0x5a
		st, err := DecodeState(c)
		if err != nil {
			if xerr.CodeOf(err) != xerr.StatusIO {
				t.Fatalf("flip at %d: %v", i, err)
			}
			continue
		}
		if st.Fishers[0][5] != 6 || st.Anchors[0][7] != 8 {
			t.Fatalf("flip at %d accepted with wrong values", i)
		}
	}
	// A failed save leaves the previous file intact.
	bad := testState(t)
	bad.Fishers[0][0] = float32(math.NaN())
	wantCode(t, SaveState(path, bad), xerr.StatusInvalidArgument, "fishers")
	wantCode(t, SaveState(filepath.Join(dir, "missing", "x.arrow"), s), xerr.StatusIO, "path")
	if again, _ := os.ReadFile(path); string(again) != string(data) {
		t.Fatal("previous file changed")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
	_, err = LoadState(filepath.Join(dir, "nope.arrow"))
	wantCode(t, err, xerr.StatusIO, "")
}

func FuzzLoadState(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "s.arrow")
	if err := SaveState(path, testState(f)); err != nil {
		f.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	f.Add(data)
	f.Add(data[:len(data)/2])
	f.Add([]byte("ARROW1\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Fix the checksum up after the mutation so the bytes reach the parsers.
		fsx.Reseal(b)
		s, err := DecodeState(b)
		if err != nil {
			if c := xerr.CodeOf(err); c != xerr.StatusIO && c != xerr.StatusOutOfMemory && c != xerr.StatusNotSupported {
				t.Fatalf("status %v: %v", c, err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted an invalid state: %v", err)
		}
	})
}

func BenchmarkPenalty(b *testing.B) {
	for _, p := range []int{1 << 20, 11_000_000} {
		for _, th := range []int{1, 2} {
			b.Run(fmt.Sprintf("P%d_t%d", p, th), func(b *testing.B) {
				par.SetThreads(th)
				rng := rand.New(rand.NewPCG(1, 2))
				theta, an, fi := randSlice(rng, p), randSlice(rng, p), randSlice(rng, p)
				g := make([]float32, p)
				b.SetBytes(int64(16 * p))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					_, _ = PenaltyGrad(g, theta, [][]float32{an}, [][]float32{fi}, 1)
				}
			})
		}
	}
}

func TestAccumulatorSaveLoad(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	l := mustLayout(t, Param{"w", []int{3, 5}}, Param{"b", []int{3}})
	a := mustAcc(t, l, LabelExact)
	rows := randSlice(rng, 7*l.Size())
	_ = a.UpdateRows(rows, 7, l.Size(), nil)
	_ = a.AddSamples(7)
	path := filepath.Join(t.TempDir(), "acc.arrow")
	if err := a.Save(path); err != nil {
		t.Fatal(err)
	}
	b, err := LoadAccumulator(path)
	if err != nil {
		t.Fatal(err)
	}
	if b.NumSamples() != 7 || b.LabelMode() != LabelExact || !b.Layout().Equal(l) {
		t.Fatalf("restored %d %s", b.NumSamples(), b.LabelMode())
	}
	for i, v := range a.Sums() {
		if b.Sums()[i] != v {
			t.Fatal("sums differ")
		}
	}
	st, err := LoadState(path)
	if err != nil || len(st.Fishers) != 1 || st.Meta["label_mode"] != `"exact"` {
		t.Fatal(st, err)
	}
	// a plain state file is not an accumulator
	p2 := filepath.Join(t.TempDir(), "s.arrow")
	_ = SaveState(p2, testState(t))
	_, err = LoadAccumulator(p2)
	wantCode(t, err, xerr.StatusIO, "sums")
	// an empty accumulator saves and loads too (no Fisher column)
	a.Reset()
	if err := a.Save(path); err != nil {
		t.Fatal(err)
	}
	if b, err = LoadAccumulator(path); err != nil || b.NumSamples() != 0 {
		t.Fatal(err)
	}
}
