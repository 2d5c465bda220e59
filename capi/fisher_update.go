package main

/*
#include "shim.h"
*/
import "C"

import (
	"unsafe"

	"github.com/exitnet/exitnet/golib/fisher"
)

// Raw-pointer twins of the rows and Linear updates: the same accumulator calls
// on caller memory viewed in place, without the Arrow import (about 11 µs per
// input on the Go side, and the caller's pyarrow export) that the Arrow exports
// pay.

// updateRows forwards a rows update: the whole layout (param NULL) or one parameter.
func updateRows(acc *fisher.Accumulator, param *C.char, data []float32, n, p int, wts []float32) error {
	if param == nil {
		return acc.UpdateRows(data, n, p, wts)
	}
	return acc.UpdateRowsParam(C.GoString(param), data, n, p, wts)
}

//export exitnet_fisher_update_rows_raw
func exitnet_fisher_update_rows_raw(h *C.exitnet_fisher, param *C.char, rows *C.float, nRows C.int64_t, nCols C.int64_t, weights *C.float) C.int {
	return run("exitnet_fisher_update_rows_raw", func() error {
		n, p := int64(nRows), int64(nCols)
		m, err := rawView[float32](unsafe.Pointer(rows), n, p, "rows", "n_rows", "n_cols")
		if err != nil {
			return err
		}
		wts := rawWeights(unsafe.Pointer(weights), n)
		return withFisher(h, func(acc *fisher.Accumulator) error {
			return updateRows(acc, param, m, int(n), int(p), wts)
		})
	})
}

//export exitnet_fisher_update_linear_raw
func exitnet_fisher_update_linear_raw(h *C.exitnet_fisher, weight *C.char, bias *C.char, inputs *C.float, gradOutputs *C.float,
	nRows C.int64_t, nIn C.int64_t, nOut C.int64_t, weights *C.float) C.int {
	return run("exitnet_fisher_update_linear_raw", func() error {
		n, in, out := int64(nRows), int64(nIn), int64(nOut)
		a, err := rawView[float32](unsafe.Pointer(inputs), n, in, "inputs", "n_rows", "n_in")
		if err != nil {
			return err
		}
		g, err := rawView[float32](unsafe.Pointer(gradOutputs), n, out, "grad_outputs", "n_rows", "n_out")
		if err != nil {
			return err
		}
		w, err := goString(weight, "weight")
		if err != nil {
			return err
		}
		wts := rawWeights(unsafe.Pointer(weights), n)
		return withFisher(h, func(acc *fisher.Accumulator) error {
			return acc.UpdateLinear(w, optString(bias), a, g, int(n), int(in), int(out), wts)
		})
	})
}
