// Package par is exitnet's one knob for parallelism. The C ABI's
// exitnet_set_num_threads sets it; every parallel loop in golib reads it, so a
// notebook can change the thread count at run time (Go reads GOMAXPROCS from the
// environment only at process start).
//
// Goroutines started here recover panics and re-raise them on the calling
// goroutine, so the ABI boundary's recover sees them instead of the process dying.
package par

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

var threads atomic.Int64

func init() { threads.Store(int64(runtime.GOMAXPROCS(0))) }

// SetThreads sets the worker count used by For (n >= 1) and raises GOMAXPROCS to
// at least n so the workers can really run at once.
func SetThreads(n int) {
	if n < 1 {
		n = 1
	}
	threads.Store(int64(n))
	if runtime.GOMAXPROCS(0) < n {
		runtime.GOMAXPROCS(n)
	}
}

// Threads returns the current worker count.
func Threads() int { return int(threads.Load()) }

// For splits [0, n) into at most Threads() contiguous chunks of at least grain
// items and calls fn(lo, hi) on each, concurrently. It returns when all are done.
// A panic in any chunk is re-raised in the caller after all chunks finished.
func For(n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	w := Threads()
	if m := (n + grain - 1) / grain; m < w {
		w = m
	}
	if w <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	var perr atomic.Value
	run := func(lo, hi int) {
		defer func() {
			if r := recover(); r != nil {
				perr.CompareAndSwap(nil, fmt.Sprint(r))
			}
		}()
		fn(lo, hi)
	}
	// The caller runs the first chunk itself: one goroutine fewer to start and
	// wake per region, and the caller works instead of parking at once (a parked
	// caller leaves its P to spin looking for work, which a model of many short
	// layers paid for in CPU time at 2 threads).
	chunk := (n + w - 1) / w
	for lo := chunk; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			run(lo, hi)
		}(lo, hi)
	}
	run(0, min(chunk, n))
	wg.Wait()
	if p := perr.Load(); p != nil {
		panic("par.For worker: " + p.(string))
	}
}
