package distill

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/exitnet/exitnet/golib/internal/fsx"
	"github.com/exitnet/exitnet/golib/xerr"
)

func wantCode(t *testing.T, err error, code xerr.Status, words ...string) {
	t.Helper()
	if code == xerr.StatusOK {
		if err != nil {
			t.Fatalf("want no error, got %v", err)
		}
		return
	}
	var e *xerr.Error
	if !errors.As(err, &e) || e.Code != code {
		t.Fatalf("want %v error, got %v", code, err)
	}
	for _, w := range words {
		if !strings.Contains(e.Msg, w) {
			t.Fatalf("message %q does not mention %q", e.Msg, w)
		}
	}
}

// fixture records E exits of C classes for the given ids, in shuffled chunks
// of varying sizes; the logits of (exit j, id) are a known function of both,
// so that gathers can be checked against brute force.
func fixtureValue(j int, id int64, c int) float32 {
	return float32(j*1000) + float32(id%9973)*0.5 - float32(c)*0.25
}

func writeFixture(t testing.TB, path string, ids []int64, E, C int, seed uint64) {
	w, err := NewTargetWriter(E, C)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	for j := 0; j < E; j++ {
		order := rng.Perm(len(ids))
		for lo := 0; lo < len(order); {
			hi := min(len(order), lo+1+rng.IntN(37))
			cid := make([]int64, 0, hi-lo)
			var lg []float32
			for _, k := range order[lo:hi] {
				cid = append(cid, ids[k])
				for c := 0; c < C; c++ {
					lg = append(lg, fixtureValue(j, ids[k], c))
				}
			}
			if err := w.Add(j, cid, lg); err != nil {
				t.Fatal(err)
			}
			lo = hi
		}
	}
	if err := w.Save(path); err != nil {
		t.Fatal(err)
	}
}

func TestTargetsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		ids  []int64
		E, C int
	}{
		{"dense", seq(0, 500), 3, 10},
		{"dense-offset", seq(1000, 37), 1, 1},
		{"sparse", []int64{-5, 7, 3, 1 << 40, -1 << 50, 99, 100, 12}, 2, 7},
		{"empty", nil, 2, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".arrow")
			writeFixture(t, path, tc.ids, tc.E, tc.C, 3)
			tg, err := OpenTargets(path)
			if err != nil {
				t.Fatal(err)
			}
			defer tg.Close()
			if tg.NumRows() != len(tc.ids) || tg.NumExits() != tc.E || tg.NumClasses() != tc.C {
				t.Fatalf("shape %d×%d×%d", tg.NumRows(), tg.NumExits(), tg.NumClasses())
			}
			got := tg.IDs()
			for i := 1; i < len(got); i++ {
				if got[i] <= got[i-1] {
					t.Fatal("ids not sorted")
				}
			}
			// Gather in a shuffled order, with repeats, and check against the generator.
			rng := rand.New(rand.NewPCG(4, 4))
			q := make([]int64, 0, 2*len(tc.ids))
			for range 2 * len(tc.ids) {
				q = append(q, tc.ids[rng.IntN(len(tc.ids))])
			}
			for j := 0; j < tc.E; j++ {
				dst := make([]float32, len(q)*tc.C)
				if err := tg.Gather(dst, q, j); err != nil {
					t.Fatal(err)
				}
				for i, id := range q {
					for c := 0; c < tc.C; c++ {
						if dst[i*tc.C+c] != fixtureValue(j, id, c) {
							t.Fatalf("exit %d id %d col %d: %g want %g", j, id, c, dst[i*tc.C+c], fixtureValue(j, id, c))
						}
					}
				}
			}
			// Unknown ids (below, above, in a gap) are NotFound naming the id.
			for _, bad := range []int64{math.MinInt64, math.MaxInt64, 6, 1000 + 37, -1} {
				if slicesContains(tc.ids, bad) {
					continue
				}
				err := tg.Gather(make([]float32, tc.C), []int64{bad}, 0)
				wantCode(t, err, xerr.StatusNotFound, "sample id", itoa64(bad))
			}
			wantCode(t, tg.Gather(nil, nil, tc.E), xerr.StatusInvalidArgument, "exit")
			wantCode(t, tg.Gather(nil, nil, -1), xerr.StatusInvalidArgument, "exit")
			if len(tc.ids) > 0 {
				wantCode(t, tg.Gather(make([]float32, 1), tc.ids[:1], 0), maybe(tc.C == 1), "dst")
			}
		})
	}
}

// maybe returns the status for a dst of length 1: valid when C == 1.
func maybe(c1 bool) xerr.Status {
	if c1 {
		return xerr.StatusOK
	}
	return xerr.StatusInvalidArgument
}

func seq(lo int64, n int) []int64 {
	s := make([]int64, n)
	for i := range s {
		s[i] = lo + int64(i)
	}
	return s
}

func slicesContains(s []int64, v int64) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func itoa64(v int64) string {
	if v < 0 {
		if v == math.MinInt64 {
			return "-9223372036854775808"
		}
		return "-" + itoa(int(-v))
	}
	return itoa(int(v))
}

func TestTargetWriterErrors(t *testing.T) {
	_, err := NewTargetWriter(0, 3)
	wantCode(t, err, xerr.StatusInvalidArgument, "num_exits")
	_, err = NewTargetWriter(2, 0)
	wantCode(t, err, xerr.StatusInvalidArgument, "num_classes")
	w, _ := NewTargetWriter(2, 2)
	wantCode(t, w.Add(2, []int64{1}, []float32{1, 2}), xerr.StatusInvalidArgument, "exit")
	wantCode(t, w.Add(0, []int64{1}, []float32{1}), xerr.StatusInvalidArgument, "logits")
	wantCode(t, w.Add(0, []int64{1, 1}, []float32{1, 2, 3, 4}), xerr.StatusInvalidArgument, "twice", "1")
	wantCode(t, w.Add(0, []int64{4}, []float32{1, float32(math.NaN())}), xerr.StatusInvalidArgument, "logits", "row 0", "column 1")
	if err := w.Add(0, []int64{1, 2}, []float32{1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	// A rejected chunk records nothing: 3 was part of a chunk with a duplicate.
	wantCode(t, w.Add(0, []int64{3, 2}, []float32{1, 2, 3, 4}), xerr.StatusInvalidArgument, "already recorded", "2")
	if w.NumRows(0) != 2 {
		t.Fatalf("rows %d after a rejected chunk", w.NumRows(0))
	}
	path := filepath.Join(t.TempDir(), "t.arrow")
	wantCode(t, w.Save(path), xerr.StatusInvalidState, "exit 1", "sample id 1")
	if err := w.Add(1, []int64{2, 1, 7}, []float32{1, 2, 3, 4, 5, 6}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, w.Save(path), xerr.StatusInvalidState, "exit 0", "sample id 7")
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("a failed Save left a file")
	}
	wantCode(t, w.Save(""), xerr.StatusInvalidArgument, "path")
	wantCode(t, w.Save(filepath.Join(t.TempDir(), "no", "such", "dir.arrow")), xerr.StatusInvalidState)
}

func TestOpenTargetsCorrupted(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.arrow")
	writeFixture(t, path, seq(0, 20), 2, 5, 1)
	good, _ := os.ReadFile(path)
	bad := filepath.Join(dir, "bad.arrow")
	// Every truncation is an IO error.
	for n := 0; n < len(good); n += 1 + n/50 {
		os.WriteFile(bad, good[:n], 0o644)
		tg, err := OpenTargets(bad)
		if err == nil {
			tg.Close()
			t.Fatalf("truncated to %d bytes: opened", n)
		}
		wantCode(t, err, xerr.StatusIO)
	}
	// Byte corruption anywhere: an IO error or, if the byte was padding or a
	// logit, a file that still validates; never a panic.
	rng := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 400; i++ {
		b := bytes.Clone(good)
		b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
		os.WriteFile(bad, b, 0o644)
		tg, err := OpenTargets(bad)
		if err != nil {
			wantCode(t, err, xerr.StatusIO)
			continue
		}
		tg.Gather(make([]float32, 5), []int64{3}, 1)
		tg.Close()
	}
	_, err := OpenTargets(filepath.Join(dir, "missing.arrow"))
	wantCode(t, err, xerr.StatusIO, "path")
	_, err = OpenTargets(dir)
	wantCode(t, err, xerr.StatusIO, "regular")
}

func TestTargetsCloseAndConcurrentGather(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.arrow")
	ids := make([]int64, 3000)
	for i := range ids {
		ids[i] = int64(i * 3) // sparse: binary-search path
	}
	writeFixture(t, path, ids, 2, 16, 7)
	tg, err := OpenTargets(path)
	if err != nil {
		t.Fatal(err)
	}
	q := []int64{0, 8997, 42, 3, 301}
	want := make([]float32, len(q)*16)
	err = tg.Gather(want, q, 1)
	wantCode(t, err, xerr.StatusNotFound, "sample id 301", "position 4")
	q = q[:4]
	want = want[:len(q)*16]
	if err := tg.Gather(want, q, 1); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	fail := make(chan string, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := make([]float32, len(q)*16)
			for range 200 {
				if err := tg.Gather(dst, q, 1); err != nil {
					fail <- err.Error()
					return
				}
				for i := range dst {
					if dst[i] != want[i] {
						fail <- "differs"
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(fail)
	for f := range fail {
		t.Fatal(f)
	}
	if err := tg.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tg.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	wantCode(t, tg.Gather(want, q, 1), xerr.StatusInvalidState, "closed")
}

// TestSaveAtomic: Save goes through fsx.WriteAtomic (whose failure modes are
// tested there); here, saving into a missing directory and overwriting.
func TestSaveAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.arrow")
	writeFixture(t, path, seq(0, 10), 1, 3, 1)
	// Saving into a missing directory is an IO error.
	w, _ := NewTargetWriter(1, 1)
	wantCode(t, w.Save(filepath.Join(dir, "missing", "t.arrow")), xerr.StatusIO, "path")
	// Overwriting works and is readable.
	writeFixture(t, path, seq(5, 4), 1, 3, 2)
	tg, err := OpenTargets(path)
	if err != nil {
		t.Fatal(err)
	}
	if tg.NumRows() != 4 {
		t.Fatalf("rows %d", tg.NumRows())
	}
	tg.Close()
}

func FuzzOpenTargets(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "seed.arrow")
	writeFixture(f, path, []int64{3, 1, 2, 10}, 2, 3, 1)
	good, _ := os.ReadFile(path)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte("ARROW1\x00\x00ARROW1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fsx.Reseal(b)              // fix the checksum up after the mutation: the parsers are the target
		tg, err := parseTargets(b) // in memory: the file layer's open path has its own tests
		if err != nil {
			if c := xerr.CodeOf(err); c != xerr.StatusIO && c != xerr.StatusOutOfMemory && c != xerr.StatusNotSupported {
				t.Fatalf("status %v: %v", xerr.CodeOf(err), err)
			}
			return
		}
		defer tg.Close()
		ids := tg.IDs()
		dst := make([]float32, len(ids)*tg.NumClasses())
		for j := 0; j < tg.NumExits(); j++ {
			if err := tg.Gather(dst, ids, j); err != nil {
				t.Fatalf("gather of the file's own ids: %v", err)
			}
		}
		tg.Gather(make([]float32, tg.NumClasses()), []int64{-12345}, 0)
	})
}

func BenchmarkGather(b *testing.B) {
	// 256 random ids from stores of 60,000 rows × 100 classes, dense and sparse ids.
	dir := b.TempDir()
	for _, sparse := range []bool{false, true} {
		ids := seq(0, 60000)
		if sparse {
			for i := range ids {
				ids[i] = ids[i]*7 + 3
			}
		}
		w, _ := NewTargetWriter(1, 100)
		lg := make([]float32, len(ids)*100)
		if err := w.Add(0, ids, lg); err != nil {
			b.Fatal(err)
		}
		path := filepath.Join(dir, "t.arrow")
		if err := w.Save(path); err != nil {
			b.Fatal(err)
		}
		tg, err := OpenTargets(path)
		if err != nil {
			b.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(1, 2))
		q := make([]int64, 256)
		for i := range q {
			q[i] = ids[rng.IntN(len(ids))]
		}
		dst := make([]float32, 256*100)
		name := "dense"
		if sparse {
			name = "sparse"
		}
		b.Run(name+"/256x100", func(b *testing.B) {
			for b.Loop() {
				if err := tg.Gather(dst, q, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
		tg.Close()
	}
}
