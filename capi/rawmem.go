package main

/*
#include <stdlib.h>
*/
import "C"

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// rawmem allocates C-heap buffers like cmem but does not zero them: for
// outputs whose every byte the call writes before exporting (the curve's
// columns). calloc's memset of a 1.5 MB curve (N = 10⁴, K = 4) was 6 % of the
// call. The memory holds only numbers, never Go pointers, so uninitialised C
// memory is safe to hand to Go (the cgo rule is about pointer-shaped garbage).
var rawmem = &rawAllocator{}

// rawAllocator implements arrow's memory.Allocator over malloc/free, with
// 64-byte aligned buffers (Arrow's recommended alignment).
type rawAllocator struct {
	real  sync.Map     // aligned address → malloc's pointer
	bytes atomic.Int64 // live bytes (exitnet_allocated_bytes adds them to cmem's)
}

const rawAlign = 64

func (r *rawAllocator) Allocate(size int) []byte {
	if size < 0 {
		panic("rawmem: negative size")
	}
	ptr := C.malloc(C.size_t(size + rawAlign))
	if ptr == nil {
		panic("rawmem: out of memory") // sizes are checked against the memory limit before (memx)
	}
	off := -uintptr(ptr) & (rawAlign - 1) // bytes up to the next 64-byte boundary
	aligned := unsafe.Add(ptr, off)
	r.real.Store(uintptr(aligned), ptr)
	r.bytes.Add(int64(size))
	return unsafe.Slice((*byte)(aligned), size)
}

func (r *rawAllocator) Free(b []byte) {
	p, ok := r.real.LoadAndDelete(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
	if ok {
		C.free(p.(unsafe.Pointer))
		r.bytes.Add(-int64(len(b)))
	}
}

func (r *rawAllocator) Reallocate(size int, b []byte) []byte {
	if cap(b) >= size {
		r.bytes.Add(int64(size - len(b)))
		return b[:size]
	}
	nb := r.Allocate(size)
	copy(nb, b)
	r.Free(b)
	return nb
}
