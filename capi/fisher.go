package main

/*
#include "shim.h"
*/
import "C"

import (
	"sync"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/exitnet/exitnet/golib/arrowx"
	"github.com/exitnet/exitnet/golib/fisher"
	"github.com/exitnet/exitnet/golib/xerr"
)

// The accumulator handle: layout, lifecycle, counting, the result and the
// in-memory state (sums and count) of one exitnet_fisher.

// fisherHandle is the object behind an exitnet_fisher*: the accumulator and a
// mutex, so concurrent calls on one handle serialise instead of racing.
type fisherHandle struct {
	mu  sync.Mutex
	acc *fisher.Accumulator
}

// fisherLayout builds a Layout from parallel C arrays: names[i] has ndims[i]
// dimensions, taken in order from the concatenated dims.
func fisherLayout(names **C.char, ndims *C.int64_t, dims *C.int64_t, n C.int64_t) (*fisher.Layout, error) {
	if n < 0 || n > 1<<24 {
		return nil, xerr.Invalid("n_params: %d", int64(n))
	}
	if n > 0 && (names == nil || ndims == nil) {
		return nil, xerr.Invalid("names/ndims: NULL pointer")
	}
	ns := unsafe.Slice(names, int(n))
	nd := unsafe.Slice(ndims, int(n))
	total := 0
	for i, d := range nd {
		if d < 0 || d > 16 {
			return nil, xerr.Invalid("ndims: parameter %d has %d dimensions (0..16)", i, int64(d))
		}
		total += int(d)
	}
	if total > 0 && dims == nil {
		return nil, xerr.Invalid("dims: NULL pointer")
	}
	ds := unsafe.Slice(dims, total)
	params := make([]fisher.Param, n)
	k := 0
	for i := range params {
		name, err := goString(ns[i], "names")
		if err != nil {
			return nil, err
		}
		shape := make([]int, int(nd[i]))
		for j := range shape {
			shape[j] = int(ds[k])
			k++
		}
		params[i] = fisher.Param{Name: name, Shape: shape}
	}
	return fisher.NewLayout(params)
}

func getFisher(h *C.exitnet_fisher, name string) (*fisherHandle, error) {
	return getHandle[*fisherHandle](unsafe.Pointer(h), name)
}

// withFisher runs fn on the accumulator behind handle h, holding its lock.
func withFisher(h *C.exitnet_fisher, fn func(acc *fisher.Accumulator) error) error {
	fh, err := getFisher(h, "fisher")
	if err != nil {
		return err
	}
	fh.mu.Lock()
	defer fh.mu.Unlock()
	return fn(fh.acc)
}

func optString(s *C.char) string {
	if s == nil {
		return ""
	}
	return C.GoString(s)
}

//export exitnet_fisher_new
func exitnet_fisher_new(out **C.exitnet_fisher, names **C.char, ndims *C.int64_t, dims *C.int64_t, nParams C.int64_t, labelMode *C.char) C.int {
	return run("exitnet_fisher_new", func() error {
		if out == nil {
			return xerr.Invalid("out: NULL pointer")
		}
		mode, err := goString(labelMode, "label_mode")
		if err != nil {
			return err
		}
		l, err := fisherLayout(names, ndims, dims, nParams)
		if err != nil {
			return err
		}
		acc, err := fisher.New(l, mode)
		if err != nil {
			return err
		}
		*out = (*C.exitnet_fisher)(putHandle(&fisherHandle{acc: acc}))
		return nil
	})
}

//export exitnet_fisher_free
func exitnet_fisher_free(h **C.exitnet_fisher) C.int {
	return run("exitnet_fisher_free", func() error {
		if h == nil || *h == nil {
			return nil
		}
		if _, _, err := dropHandle[*fisherHandle](unsafe.Pointer(*h), "fisher"); err != nil {
			return err
		}
		*h = nil
		return nil
	})
}

//export exitnet_fisher_add_samples
func exitnet_fisher_add_samples(h *C.exitnet_fisher, n C.int64_t) C.int {
	return run("exitnet_fisher_add_samples", func() error {
		return withFisher(h, func(acc *fisher.Accumulator) error { return acc.AddSamples(int64(n)) })
	})
}

//export exitnet_fisher_num_samples
func exitnet_fisher_num_samples(out *C.int64_t, h *C.exitnet_fisher) C.int {
	return run("exitnet_fisher_num_samples", func() error {
		if out == nil {
			return xerr.Invalid("out: NULL pointer")
		}
		return withFisher(h, func(acc *fisher.Accumulator) error {
			*out = C.int64_t(acc.NumSamples())
			return nil
		})
	})
}

//export exitnet_fisher_compute
func exitnet_fisher_compute(outA *C.struct_ArrowArray, outS *C.struct_ArrowSchema, h *C.exitnet_fisher) C.int {
	return run("exitnet_fisher_compute", func() error {
		if err := checkOut(outA, outS, "out"); err != nil {
			return err
		}
		fh, err := getFisher(h, "fisher")
		if err != nil {
			return err
		}
		fh.mu.Lock()
		defer fh.mu.Unlock()
		if fh.acc.NumSamples() == 0 {
			return fh.acc.Compute(nil) // the "no samples" error
		}
		arr, dst, err := arrowx.NewFloat32(cmem, fh.acc.Layout().Size(), "out")
		return exportFilled(arr, dst, err, outA, outS, fh.acc.Compute)
	})
}

// newFloat64 allocates a float64 array of n values from cmem with a writable view.
func newFloat64(n int) (arrow.Array, []float64) {
	buf := memory.NewResizableBuffer(cmem)
	buf.Resize(8 * n)
	defer buf.Release()
	data := array.NewData(arrow.PrimitiveTypes.Float64, n, []*memory.Buffer{nil, buf}, nil, 0, 0)
	defer data.Release()
	var view []float64
	if n > 0 {
		view = unsafe.Slice((*float64)(unsafe.Pointer(&buf.Bytes()[0])), n)
	}
	return array.MakeFromData(data), view
}

//export exitnet_fisher_state
func exitnet_fisher_state(outA *C.struct_ArrowArray, outS *C.struct_ArrowSchema, outCount *C.int64_t, h *C.exitnet_fisher) C.int {
	return run("exitnet_fisher_state", func() error {
		if err := checkOut(outA, outS, "out"); err != nil {
			return err
		}
		if outCount == nil {
			return xerr.Invalid("out_count: NULL pointer")
		}
		fh, err := getFisher(h, "fisher")
		if err != nil {
			return err
		}
		fh.mu.Lock()
		defer fh.mu.Unlock()
		arr, view := newFloat64(fh.acc.Layout().Size())
		copy(view, fh.acc.Sums())
		*outCount = C.int64_t(fh.acc.NumSamples())
		exportArray(arr, outA, outS)
		return nil
	})
}

//export exitnet_fisher_set_state
func exitnet_fisher_set_state(h *C.exitnet_fisher, sA *C.struct_ArrowArray, sS *C.struct_ArrowSchema, count C.int64_t) C.int {
	return run("exitnet_fisher_set_state", func() error {
		ins, release, err := importAll(arg(sA, sS, "sums"))
		defer release()
		if err != nil {
			return err
		}
		fh, err := getFisher(h, "fisher")
		if err != nil {
			return err
		}
		f, ok := ins[0].Array.(*array.Float64)
		if !ok {
			return xerr.Invalid("sums: expected a float64 array, got %s", ins[0].Array.DataType())
		}
		if f.NullN() > 0 {
			return xerr.Invalid("sums: nulls are not accepted")
		}
		fh.mu.Lock()
		defer fh.mu.Unlock()
		return fh.acc.SetState(f.Float64Values(), int64(count))
	}, arg(sA, sS, "sums"))
}

//export exitnet_fisher_merge
func exitnet_fisher_merge(h *C.exitnet_fisher, other *C.exitnet_fisher) C.int {
	return run("exitnet_fisher_merge", func() error {
		fh, err := getFisher(h, "fisher")
		if err != nil {
			return err
		}
		oh, err := getFisher(other, "other")
		if err != nil {
			return err
		}
		if fh == oh {
			return xerr.Invalid("other: cannot merge an accumulator into itself")
		}
		first, second := fh, oh // lock in address order: concurrent a<-b and b<-a merges cannot deadlock
		if uintptr(unsafe.Pointer(second)) < uintptr(unsafe.Pointer(first)) {
			first, second = second, first
		}
		first.mu.Lock()
		defer first.mu.Unlock()
		second.mu.Lock()
		defer second.mu.Unlock()
		return fh.acc.Merge(oh.acc)
	})
}

//export exitnet_fisher_reset
func exitnet_fisher_reset(h *C.exitnet_fisher) C.int {
	return run("exitnet_fisher_reset", func() error {
		fh, err := getFisher(h, "fisher")
		if err != nil {
			return err
		}
		fh.mu.Lock()
		defer fh.mu.Unlock()
		fh.acc.Reset()
		return nil
	})
}
