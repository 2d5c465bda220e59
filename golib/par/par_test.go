package par

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestForCoversEachIndexOnce(t *testing.T) {
	defer SetThreads(Threads())
	for _, threads := range []int{1, 2, 3, 8} {
		SetThreads(threads)
		for _, n := range []int{0, 1, 2, 3, 7, 8, 9, 100, 1001} {
			for _, grain := range []int{0, 1, 3, 64} {
				hits := make([]int32, n)
				var calls atomic.Int32
				For(n, grain, func(lo, hi int) {
					calls.Add(1)
					if lo >= hi {
						t.Errorf("empty chunk [%d, %d)", lo, hi)
					}
					for i := lo; i < hi; i++ {
						atomic.AddInt32(&hits[i], 1)
					}
				})
				for i, h := range hits {
					if h != 1 {
						t.Fatalf("threads %d n %d grain %d: index %d visited %d times", threads, n, grain, i, h)
					}
				}
				if c := int(calls.Load()); c > threads {
					t.Fatalf("threads %d n %d grain %d: %d chunks", threads, n, grain, c)
				}
			}
		}
	}
}

// A panic in any chunk, the caller's own included, reaches the caller only after
// every chunk has finished (the chunks may still be writing shared buffers).
func TestForPanicAfterAllChunks(t *testing.T) {
	defer SetThreads(Threads())
	SetThreads(4)
	for _, bad := range []int{0, 3} { // chunk 0 runs on the caller, 3 on a goroutine
		var done sync.Map
		func() {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(r.(string), "boom") {
					t.Fatalf("bad chunk %d: recovered %v", bad, r)
				}
				for c := 0; c < 4; c++ {
					if c == bad {
						continue
					}
					if _, ok := done.Load(c); !ok {
						t.Fatalf("bad chunk %d: panic re-raised before chunk %d finished", bad, c)
					}
				}
			}()
			For(4, 1, func(lo, hi int) {
				if lo == bad {
					panic("boom")
				}
				for i := 0; i < 1_000_000; i++ { // long enough to finish after the panic
					_ = i
				}
				done.Store(lo, true)
			})
		}()
	}
}
