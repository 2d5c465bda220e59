package runtime

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/exitnet/exitnet/golib/internal/fsx"
	"github.com/exitnet/exitnet/golib/xerr"
)

// fuzzMaxWork bounds the declared work of a model a fuzz iteration compiles
// and runs (multiply-adds per sample), so iterations stay in the millisecond
// range; the refusal of heavier models is itself part of what is fuzzed.
const fuzzMaxWork = 1 << 20

// FuzzLoadModel feeds mutated model files to Decode. The checksum is fixed up
// after the mutation (fsx.Reseal), so the mutations reach the Arrow reader, the
// graph parser and the compiler instead of stopping at the CRC. Seeds: small
// valid models (every op, three weight seeds) and the golden files.
func FuzzLoadModel(f *testing.F) {
	for seed := uint64(1); seed <= 3; seed++ {
		b := newBuilder(seed)
		good := b.encode(everyOpGraph(b))
		f.Add(good)
		if seed == 1 {
			f.Add(good[:len(good)/3])
		}
	}
	b2 := newBuilder(21)
	f.Add(b2.encode(everyOpV2(b2)))
	if golden, _ := filepath.Glob("../../tests/data/*model*.exitnet"); len(golden) > 0 {
		for _, p := range golden {
			if d, err := os.ReadFile(p); err == nil {
				f.Add(d)
			}
		}
	}
	f.Add([]byte("ARROW1\x00\x00"))
	old := MaxWorkPerSample()
	if err := SetMaxWorkPerSample(fuzzMaxWork); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { SetMaxWorkPerSample(old) })
	f.Fuzz(func(t *testing.T, data []byte) {
		fsx.Reseal(data)
		m, err := Decode(data)
		if err != nil {
			if c := xerr.CodeOf(err); c != xerr.StatusIO && c != xerr.StatusNotSupported && c != xerr.StatusOutOfMemory {
				t.Fatalf("status %v: %v", c, err)
			}
			return
		}
		// a model that loads must run
		s := m.InputShape()
		var res Result
		x := make([]float32, 2*s[0]*s[1]*s[2])
		for i := range x {
			x[i] = float32(i%7) - 3
		}
		if err := m.Predict(&res, x, 2, Options{Temperature: 1}); err != nil && xerr.CodeOf(err) == xerr.StatusInternal {
			t.Fatalf("predict: %v", err)
		}
	})
}
