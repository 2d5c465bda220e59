package main

/*
#include "shim.h"
*/
import "C"

import (
	"unsafe"

	"github.com/exitnet/exitnet/golib/xerr"
)

// Which kernel each conv2d/linear layer runs (runtime.Model.Kernels).

//export exitnet_model_num_layers
func exitnet_model_num_layers(out *C.int64_t, h *C.exitnet_model) C.int {
	return run("exitnet_model_num_layers", func() error {
		m, err := getModel(h, "model")
		if err != nil {
			return err
		}
		if out == nil {
			return xerr.Invalid("out: NULL pointer")
		}
		*out = C.int64_t(len(m.Kernels()))
		return nil
	})
}

//export exitnet_model_layer_kernel
func exitnet_model_layer_kernel(h *C.exitnet_model, i C.int64_t, outBlock *C.int32_t, outShape *C.int64_t,
	node *C.char, nodeLen C.size_t, op *C.char, opLen C.size_t, kernel *C.char, kernelLen C.size_t,
	outNeeded *C.size_t) C.int {
	return run("exitnet_model_layer_kernel", func() error {
		m, err := getModel(h, "model")
		if err != nil {
			return err
		}
		if outBlock == nil || outShape == nil || outNeeded == nil {
			return xerr.Invalid("out_block, out_shape, out_needed: NULL pointer")
		}
		ks := m.Kernels()
		if i < 0 || int64(i) >= int64(len(ks)) {
			return xerr.Invalid("i: %d (the model has layers 0..%d)", int64(i), len(ks)-1)
		}
		l := ks[i]
		needed := unsafe.Slice((*C.size_t)(outNeeded), 3)
		texts := [3]string{l.Node, l.Op, l.Kernel}
		bufs := [3]*C.char{node, op, kernel}
		lens := [3]C.size_t{nodeLen, opLen, kernelLen}
		names := [3]string{"node", "op", "kernel"}
		for j, s := range texts {
			needed[j] = C.size_t(len(s) + 1)
		}
		block := unsafe.Slice((*int32)(unsafe.Pointer(outBlock)), 2)
		block[0], block[1] = 0, int32(l.Index)
		if l.Block == "head" {
			block[0] = 1
		}
		shape := unsafe.Slice((*int64)(unsafe.Pointer(outShape)), 6)
		for j := 0; j < 3; j++ {
			shape[j], shape[3+j] = int64(l.In[j]), int64(l.Out[j])
		}
		if node == nil && op == nil && kernel == nil {
			return nil // a size query
		}
		for j, s := range texts {
			if bufs[j] == nil || int(lens[j]) < len(s)+1 {
				return xerr.Invalid("%s: %d bytes, layer %d's %s needs %d", names[j], int(lens[j]), int64(i), names[j], len(s)+1)
			}
		}
		for j, s := range texts {
			b := cBytes(bufs[j], lens[j])
			b[copy(b, s)] = 0
		}
		return nil
	})
}
