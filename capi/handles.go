package main

/*
#include "shim.h"
*/
import "C"

import (
	"math/rand/v2"
	"sync"
	"unsafe"

	"github.com/exitnet/exitnet/golib/xerr"
)

// Handles are opaque pointers whose values are ids from a counter, never
// addresses: a freed, foreign or forged handle is simply absent from the table,
// so misuse returns EXITNET_ERR_INVALID_STATE instead of touching memory. Ids are
// never reused (use-after-free stays detectable), start at a random base below
// 2^30 (far from Go's heap arenas, so the GC never mistakes one for a heap
// pointer) and are 16-aligned like real allocations.
var (
	handleMu   sync.Mutex
	handleNext = uintptr(0x100000 + rand.IntN(1<<24)*16)
	handleMap  = map[uintptr]any{}
)

// putHandle registers obj and returns its opaque handle value.
func putHandle(obj any) unsafe.Pointer {
	handleMu.Lock()
	id := handleNext
	handleNext += 16
	handleMap[id] = obj
	handleMu.Unlock()
	return C.xnet_id_to_ptr(C.uintptr_t(id))
}

// getHandle returns the object behind h, which must be a live handle of type T.
func getHandle[T any](h unsafe.Pointer, name string) (T, error) {
	var zero T
	if h == nil {
		return zero, xerr.Invalid("%s: NULL handle", name)
	}
	handleMu.Lock()
	obj, ok := handleMap[uintptr(h)]
	handleMu.Unlock()
	if !ok {
		return zero, xerr.State("%s: not a live exitnet handle (already freed, or not created by exitnet)", name)
	}
	t, ok := obj.(T)
	if !ok {
		return zero, xerr.State("%s: handle of the wrong type (%T)", name, obj)
	}
	return t, nil
}

// dropHandle removes h from the table and returns its object. nil h is not an
// error (free accepts NULL): it returns the zero T and ok == false.
func dropHandle[T any](h unsafe.Pointer, name string) (obj T, ok bool, err error) {
	if h == nil {
		return obj, false, nil
	}
	handleMu.Lock()
	defer handleMu.Unlock()
	o, found := handleMap[uintptr(h)]
	if !found {
		return obj, false, xerr.State("%s: not a live exitnet handle (double free, or not created by exitnet)", name)
	}
	t, isT := o.(T)
	if !isT {
		return obj, false, xerr.State("%s: handle of the wrong type (%T)", name, o)
	}
	delete(handleMap, uintptr(h))
	return t, true, nil
}

func liveHandles() int {
	handleMu.Lock()
	defer handleMu.Unlock()
	return len(handleMap)
}
