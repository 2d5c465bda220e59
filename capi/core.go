// Command capi is the cgo export layer of libexitnet.so: it converts C and Arrow
// C Data structs to golib types, forwards, and converts errors back to statuses.
// It holds no math. Every export has the same shape:
//
//	//export exitnet_area_verb
//	func exitnet_area_verb(out *T, in ...) C.int {
//		return run("exitnet_area_verb", func() error { ... })
//	}
//
// run recovers panics (and poisons the library, except for a recoverable
// allocation failure, which is EXITNET_ERR_OUT_OF_MEMORY), refuses calls once poisoned, and
// stores the error message in the calling thread's last-error slot.
package main

/*
#cgo CFLAGS: -O2 -Wall
#cgo LDFLAGS: -ldl -lpthread
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"math"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/exitnet/exitnet/golib/memx"
	"github.com/exitnet/exitnet/golib/par"
	"github.com/exitnet/exitnet/golib/xerr"
)

func main() {} // required by -buildmode=c-shared

// poison holds the message of the first recovered panic; once set, every call fails.
var poison atomic.Pointer[string]

func setError(msg string) { C.xnet_set_error(C.CString(msg)) }

// run executes fn as the body of the export called name. See the package doc.
//
// inputs are the export's Arrow input structs. The header promises they are
// moved in whatever the status, so the paths on which fn does not import them
// release them here: a poisoned library (fn never runs) and a panic before or
// during the import (structs already moved have release == NULL and are skipped;
// arrays fn imported are released by fn's deferred release during unwinding).
func run(name string, fn func() error, inputs ...arrowArg) (status C.int) {
	defer func() {
		if r := recover(); r != nil {
			releaseArgs(inputs...)
			if memx.IsAllocFailure(r) {
				// A size Go's allocator refused up front: nothing was half-updated,
				// so report OutOfMemory and keep the library usable.
				setError(name + ": " + memx.AllocError("allocation", r).Error())
				status = C.int(xerr.StatusOutOfMemory)
				return
			}
			stack := string(debug.Stack())
			msg := fmt.Sprintf("%s: internal error (Go panic: %v); the library is now in an unknown state and refuses further calls; restart the process. Please report this with the stack:\n%s", name, r, stack)
			p := fmt.Sprintf("%s: panic: %v", name, r)
			poison.CompareAndSwap(nil, &p)
			setError(msg)
			status = C.int(xerr.StatusInternal)
		}
	}()
	if p := poison.Load(); p != nil {
		releaseArgs(inputs...)
		setError(fmt.Sprintf("%s: the library is in an unknown state after an earlier internal error (%s); restart the process", name, *p))
		return C.int(xerr.StatusInternal)
	}
	err := fn()
	if err == nil {
		C.xnet_clear_error()
		return C.int(xerr.StatusOK)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, name) {
		msg = name + ": " + msg
	}
	setError(msg)
	return C.int(xerr.CodeOf(err))
}

// goString copies a NUL-terminated C string, refusing NULL.
func goString(s *C.char, name string) (string, error) {
	if s == nil {
		return "", xerr.Invalid("%s: NULL pointer", name)
	}
	return C.GoString(s), nil
}

//export exitnet_set_num_threads
func exitnet_set_num_threads(n C.int) C.int {
	return run("exitnet_set_num_threads", func() error {
		if n < 1 || n > 4096 {
			return xerr.Invalid("n: must be in [1, 4096], got %d", int(n))
		}
		par.SetThreads(int(n))
		C.xnet_blas_set_threads(n)
		return nil
	})
}

//export exitnet_get_num_threads
func exitnet_get_num_threads(out *C.int) C.int {
	return run("exitnet_get_num_threads", func() error {
		if out == nil {
			return xerr.Invalid("out: NULL pointer")
		}
		*out = C.int(par.Threads())
		return nil
	})
}

//export exitnet_set_memory_limit
func exitnet_set_memory_limit(bytes C.int64_t) C.int {
	return run("exitnet_set_memory_limit", func() error {
		// The GC's soft limit, and the bound every input-driven allocation is
		// checked against before it is made (golib/memx).
		if bytes <= 0 {
			debug.SetMemoryLimit(math.MaxInt64)
		} else {
			debug.SetMemoryLimit(int64(bytes))
		}
		memx.SetLimit(int64(bytes))
		return nil
	})
}

//export exitnet_allocated_bytes
func exitnet_allocated_bytes(out *C.int64_t) C.int {
	return run("exitnet_allocated_bytes", func() error {
		if out == nil {
			return xerr.Invalid("out: NULL pointer")
		}
		*out = C.int64_t(cmem.AllocatedBytes()) + C.int64_t(rawmem.bytes.Load())
		return nil
	})
}

//export exitnet_live_handles
func exitnet_live_handles(out *C.int64_t) C.int {
	return run("exitnet_live_handles", func() error {
		if out == nil {
			return xerr.Invalid("out: NULL pointer")
		}
		*out = C.int64_t(liveHandles())
		return nil
	})
}

// cBytes views a caller buffer as a Go byte slice.
func cBytes(buf *C.char, n C.size_t) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(buf)), int(n))
}

//export exitnet_debug_data_address
func exitnet_debug_data_address(out *C.uintptr_t, arr *C.struct_ArrowArray, schema *C.struct_ArrowSchema) C.int {
	return run("exitnet_debug_data_address", func() error {
		ins, release, err := importAll(arg(arr, schema, "matrix"))
		defer release()
		if err != nil {
			return err
		}
		if out == nil {
			return xerr.Invalid("out: NULL pointer")
		}
		m, err := ins[0].Matrix("matrix")
		if err != nil {
			return err
		}
		if len(m.Data) == 0 {
			*out = 0
			return nil
		}
		*out = C.uintptr_t(uintptr(unsafe.Pointer(&m.Data[0])))
		return nil
	}, arg(arr, schema, "matrix"))
}
