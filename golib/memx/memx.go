// Package memx is the one place where exitnet sizes input-driven allocations:
// every buffer whose length comes from a caller or a file (layouts, N×P,
// model shapes, target files) is checked here for integer overflow and
// against the memory limit before it is allocated, so that a huge request
// fails with StatusOutOfMemory instead of aborting the process (Go's
// "fatal error: runtime: out of memory" cannot be recovered).
//
// The limit is the user's (exitnet_set_memory_limit) or, when none is set,
// the machine's physical memory.
package memx

import (
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/exitnet/exitnet/golib/xerr"
)

var userLimit atomic.Int64 // 0: none set

// SetLimit sets the memory limit in bytes; bytes <= 0 removes it (the
// physical memory is then the bound).
func SetLimit(bytes int64) {
	if bytes < 0 {
		bytes = 0
	}
	userLimit.Store(bytes)
}

// Limit returns the bound one allocation (or one file's decoded buffers) may
// reach: the user's limit if set, else the physical memory (1 TiB if unknown).
func Limit() int64 {
	if l := userLimit.Load(); l > 0 {
		return l
	}
	if p := physicalMemory(); p > 0 {
		return p
	}
	return 1 << 40
}

// UserLimitSet reports whether exitnet_set_memory_limit set a limit (errors
// then name it, so the user knows which knob to turn).
func UserLimitSet() bool { return userLimit.Load() > 0 }

// Bytes returns n*elem, or an OutOfMemory error naming what when the product
// overflows, is negative, or exceeds Limit().
func Bytes(what string, n, elem int) (int, error) {
	if n < 0 || elem < 0 {
		return 0, xerr.Invalid("%s: negative size %d×%d", what, n, elem)
	}
	hi, lo := bits.Mul64(uint64(n), uint64(elem))
	if hi != 0 || lo > math.MaxInt64 {
		return 0, xerr.OOM("%s: %d elements of %d bytes overflow a 64-bit size", what, n, elem)
	}
	if int64(lo) > Limit() {
		return 0, tooBig(what, int64(lo))
	}
	return int(lo), nil
}

// Mul returns a*b for element counts, or an OutOfMemory error on overflow.
func Mul(what string, a, b int) (int, error) {
	if a < 0 || b < 0 {
		return 0, xerr.Invalid("%s: negative size %d×%d", what, a, b)
	}
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi != 0 || lo > math.MaxInt64 {
		return 0, xerr.OOM("%s: %d×%d elements overflow a 64-bit size", what, a, b)
	}
	return int(lo), nil
}

func tooBig(what string, bytes int64) error {
	if UserLimitSet() {
		return xerr.OOM("%s: needs %d bytes, more than the memory limit of %d bytes (exitnet_set_memory_limit)", what, bytes, Limit())
	}
	return xerr.OOM("%s: needs %d bytes, more than the %d bytes of physical memory", what, bytes, Limit())
}

// Make allocates n zeroed elements of T after checking n*sizeof(T) with Bytes.
func Make[T any](what string, n int) ([]T, error) {
	var zero T
	if _, err := Bytes(what, n, int(unsafe.Sizeof(zero))); err != nil {
		return nil, err
	}
	return make([]T, n), nil
}

// IsAllocFailure reports whether a recovered panic value is a recoverable
// allocation failure (a size Go's allocator refuses up front: "makeslice: len
// out of range", "growslice", a bounded Allocator refusal). Such a panic
// leaves no state half-updated, so the ABI reports OutOfMemory without
// poisoning the library.
func IsAllocFailure(r any) bool {
	switch v := r.(type) {
	case *Refused:
		return true
	case runtime.Error:
		msg := v.Error()
		return strings.Contains(msg, "makeslice: len out of range") ||
			strings.Contains(msg, "makeslice: cap out of range") ||
			strings.Contains(msg, "growslice: len out of range") ||
			strings.Contains(msg, "makemap: size out of range")
	}
	return false
}

// AllocError converts a recovered allocation-failure panic into an error.
func AllocError(what string, r any) error {
	if e, ok := r.(*Refused); ok {
		return e.Err(what)
	}
	return xerr.OOM("%s: allocation refused (%v)", what, r)
}

// String for debugging.
func (a *Allocator) String() string {
	return fmt.Sprintf("memx.Allocator(used=%d, cap=%d)", a.used.Load(), a.cap)
}

// Check verifies that a buffer of prod(dims) elements of elemBytes bytes
// neither overflows nor exceeds Limit(); what names the argument it comes from.
func Check(what string, elemBytes int, dims ...int) error {
	n := 1
	for _, d := range dims {
		var err error
		if n, err = Mul(what, n, d); err != nil {
			return err
		}
	}
	_, err := Bytes(what, n, elemBytes)
	return err
}
