package memx

import (
	"errors"

	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/exitnet/exitnet/golib/xerr"
)

// Allocator is the one Arrow allocator every file reader uses. Its TOTAL of
// live bytes is capped (not only each allocation): the cap is what the file
// can legitimately need (its size, or the sizes its metadata declares) and
// never more than Limit(). A compressed body that declares 2^40 bytes, or a
// 1 MB zstd file that inflates to gigabytes, is refused at the allocation
// that crosses the cap: the Allocator panics with *Refused, which the reader
// recovers (see IsAllocFailure / AllocError).
type Allocator struct {
	mem       memory.Allocator
	used      atomic.Int64
	cap       int64
	userBound bool // the cap is the memory limit, not the file's bound
}

// Refused is the panic value of an allocation over the Allocator's cap.
type Refused struct {
	N, Used, Cap int64
	UserBound    bool
}

// Err describes the refusal: OutOfMemory when the memory limit was the bound,
// IO (a damaged or forged file) when the file's own bound was.
func (r *Refused) Err(what string) error {
	if r.UserBound {
		return tooBig(what, r.Used+r.N)
	}
	return xerr.IO("%s: decoding needs more than %d bytes (%d in use, %d more asked), more than the file can legitimately hold (a damaged file, or a decompression bomb)", what, r.Cap, r.Used, r.N)
}

// NewAllocator returns an allocator whose live total is capped at
// min(bound, Limit()).
func NewAllocator(bound int64) *Allocator {
	a := &Allocator{mem: memory.NewGoAllocator(), cap: bound}
	if l := Limit(); bound <= 0 || bound > l {
		a.cap, a.userBound = l, true
	}
	return a
}

func (a *Allocator) reserve(n int64) {
	if n < 0 {
		panic(&Refused{N: n, Used: a.used.Load(), Cap: a.cap, UserBound: a.userBound})
	}
	for {
		u := a.used.Load()
		if n > a.cap-u {
			panic(&Refused{N: n, Used: u, Cap: a.cap, UserBound: a.userBound})
		}
		if a.used.CompareAndSwap(u, u+n) {
			return
		}
	}
}

func (a *Allocator) Allocate(n int) []byte {
	a.reserve(int64(n))
	return a.mem.Allocate(n)
}

func (a *Allocator) Reallocate(n int, b []byte) []byte {
	if n < 0 {
		a.reserve(-1)
	}
	if d := int64(n) - int64(len(b)); d > 0 {
		a.reserve(d)
	} else {
		a.used.Add(d)
	}
	return a.mem.Reallocate(n, b)
}

func (a *Allocator) Free(b []byte) {
	a.used.Add(-int64(len(b)))
	a.mem.Free(b)
}

// Used returns the live bytes.
func (a *Allocator) Used() int64 { return a.used.Load() }

// Tighten lowers the cap to bound once the metadata has declared the sizes
// the file's buffers may have (never raises it).
func (a *Allocator) Tighten(bound int64) {
	if bound > 0 && bound < a.cap {
		a.cap, a.userBound = bound, false
	}
}

// Error makes a refusal an error, so that readers which recover it themselves
// (arrow-go wraps a panic in an error with %w) still hand it on: see AsRefused.
func (r *Refused) Error() string {
	return r.Err("decoding").Error()
}

// AsRefused finds a *Refused in err's chain.
func AsRefused(err error) (*Refused, bool) {
	var r *Refused
	ok := errors.As(err, &r)
	return r, ok
}
