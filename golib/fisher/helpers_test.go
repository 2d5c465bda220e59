package fisher

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/exitnet/exitnet/golib/xerr"
)

func randSlice(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

func mustLayout(t testing.TB, ps ...Param) *Layout {
	t.Helper()
	l, err := NewLayout(ps)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func mustAcc(t testing.TB, l *Layout, mode string) *Accumulator {
	t.Helper()
	a, err := New(l, mode)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// closeRel checks |got-want| ≤ tol·max(|want|, floor).
func closeRel(t testing.TB, what string, got, want []float64, tol, floor float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: len %d, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(got[i] - want[i]); d > tol*math.Max(math.Abs(want[i]), floor) || math.IsNaN(got[i]) {
			t.Fatalf("%s[%d] = %v, want %v (tol %g)", what, i, got[i], want[i], tol)
		}
	}
}

func wantCode(t testing.TB, err error, code xerr.Status, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %v error containing %q, got nil", code, substr)
	}
	if xerr.CodeOf(err) != code {
		t.Fatalf("want %v, got %v: %v", code, xerr.CodeOf(err), err)
	}
	if substr != "" && !contains(err.Error(), substr) {
		t.Fatalf("error %q does not contain %q", err.Error(), substr)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
