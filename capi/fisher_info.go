package main

/*
#include "shim.h"
*/
import "C"

import (
	"unsafe"

	"github.com/exitnet/exitnet/golib/fisher"
	"github.com/exitnet/exitnet/golib/xerr"
)

// The layout and label-mode getters let a caller of exitnet_fisher_load learn
// what the validated file held without opening it a second time (Python used
// to re-read the metadata with pyarrow: a forged file then failed there, and the
// file could change in between).

//export exitnet_fisher_num_params
func exitnet_fisher_num_params(out *C.int64_t, h *C.exitnet_fisher) C.int {
	return run("exitnet_fisher_num_params", func() error {
		if out == nil {
			return xerr.Invalid("out: NULL pointer")
		}
		return withFisher(h, func(acc *fisher.Accumulator) error {
			*out = C.int64_t(acc.Layout().Len())
			return nil
		})
	})
}

//export exitnet_fisher_param
func exitnet_fisher_param(h *C.exitnet_fisher, i C.int64_t, name *C.char, nameLen C.size_t, nameNeeded *C.size_t, ndim *C.int64_t, dims *C.int64_t) C.int {
	return run("exitnet_fisher_param", func() error {
		if nameNeeded == nil || ndim == nil || dims == nil {
			return xerr.Invalid("name_needed/ndim/dims: NULL pointer")
		}
		var l *fisher.Layout
		if err := withFisher(h, func(acc *fisher.Accumulator) error { l = acc.Layout(); return nil }); err != nil {
			return err
		}
		if i < 0 || int64(i) >= int64(l.Len()) {
			return xerr.Invalid("i: %d (the layout has parameters 0..%d)", int64(i), l.Len()-1)
		}
		p := l.Param(int(i))
		*nameNeeded = C.size_t(len(p.Name) + 1)
		if name == nil || int(nameLen) < len(p.Name)+1 {
			return xerr.Invalid("name: %d bytes, the name of parameter %d needs %d", int(nameLen), int64(i), len(p.Name)+1)
		}
		out := unsafe.Slice((*byte)(unsafe.Pointer(name)), len(p.Name)+1)
		copy(out, p.Name)
		out[len(p.Name)] = 0
		*ndim = C.int64_t(len(p.Shape))
		ds := unsafe.Slice(dims, 16)
		for j, d := range p.Shape {
			ds[j] = C.int64_t(d)
		}
		return nil
	})
}

//export exitnet_fisher_label_mode
func exitnet_fisher_label_mode(buf *C.char, buflen C.size_t, h *C.exitnet_fisher) C.int {
	return run("exitnet_fisher_label_mode", func() error {
		if buf == nil || buflen < 16 {
			return xerr.Invalid("buf: NULL or shorter than 16 bytes")
		}
		var mode string
		if err := withFisher(h, func(acc *fisher.Accumulator) error { mode = acc.LabelMode(); return nil }); err != nil {
			return err
		}
		out := cBytes(buf, buflen)
		n := copy(out[:len(out)-1], mode)
		out[n] = 0
		return nil
	})
}
