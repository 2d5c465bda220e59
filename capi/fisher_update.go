package main

/*
#include "shim.h"
*/
import "C"

import (
	"unsafe"

	"github.com/exitnet/exitnet/golib/arrowx"
	"github.com/exitnet/exitnet/golib/fisher"
	"github.com/exitnet/exitnet/golib/xerr"
)

// Accumulator updates: per-sample rows, Linear and Conv2d factors, squared sums;
// Arrow inputs, and raw-pointer twins for rows and Linear.

// optWeights imports optional per-row weights (a NULL pair means none).
func optWeights(in *input) ([]float32, error) {
	if in == nil {
		return nil, nil
	}
	return arrowx.Float32s(in.Field, in.Array, "weights")
}

// importWithOptional moves in required args plus an optional weights pair.
func importWithOptional(wA *C.struct_ArrowArray, wS *C.struct_ArrowSchema, args ...arrowArg) ([]input, *input, func(), error) {
	hasW := wA != nil || wS != nil
	if hasW {
		args = append(args, arg(wA, wS, "weights"))
	}
	ins, release, err := importAll(args...)
	if err != nil {
		return nil, nil, release, err
	}
	var w *input
	if hasW {
		w = &ins[len(ins)-1]
		ins = ins[:len(ins)-1]
	}
	return ins, w, release, nil
}

//export exitnet_fisher_update_rows
func exitnet_fisher_update_rows(h *C.exitnet_fisher, param *C.char, rowsA *C.struct_ArrowArray, rowsS *C.struct_ArrowSchema,
	wA *C.struct_ArrowArray, wS *C.struct_ArrowSchema) C.int {
	return run("exitnet_fisher_update_rows", func() error {
		ins, w, release, err := importWithOptional(wA, wS, arg(rowsA, rowsS, "rows"))
		defer release()
		if err != nil {
			return err
		}
		fh, err := getFisher(h, "fisher")
		if err != nil {
			return err
		}
		m, err := ins[0].Matrix("rows")
		if err != nil {
			return err
		}
		wts, err := optWeights(w)
		if err != nil {
			return err
		}
		fh.mu.Lock()
		defer fh.mu.Unlock()
		return updateRows(fh.acc, param, m.Data, m.Rows, m.Cols, wts)
	}, arg(rowsA, rowsS, "rows"), arg(wA, wS, "weights"))
}

// layerUpdate holds what a Linear or Conv2d factor update needs, moved in and
// viewed: the accumulator, the weight's name, the inputs and output-gradient
// matrices and the optional per-row weights.
type layerUpdate struct {
	fh            *fisherHandle
	weight        string
	inputs, grads arrowx.Matrix
	weights       []float32
}

// layerInputs moves in the factor-update arguments (all of them, whatever fails)
// and validates the handle, the weight name and the views. release is always
// non-nil.
func layerInputs(h *C.exitnet_fisher, weight *C.char, inA *C.struct_ArrowArray, inS *C.struct_ArrowSchema,
	gA *C.struct_ArrowArray, gS *C.struct_ArrowSchema, wA *C.struct_ArrowArray, wS *C.struct_ArrowSchema) (layerUpdate, func(), error) {
	var u layerUpdate
	ins, w, release, err := importWithOptional(wA, wS, arg(inA, inS, "inputs"), arg(gA, gS, "grad_outputs"))
	if err != nil {
		return u, release, err
	}
	if u.fh, err = getFisher(h, "fisher"); err != nil {
		return u, release, err
	}
	if u.weight, err = goString(weight, "weight"); err != nil {
		return u, release, err
	}
	if u.inputs, err = ins[0].Matrix("inputs"); err != nil {
		return u, release, err
	}
	if u.grads, err = ins[1].Matrix("grad_outputs"); err != nil {
		return u, release, err
	}
	u.weights, err = optWeights(w)
	return u, release, err
}

//export exitnet_fisher_update_linear
func exitnet_fisher_update_linear(h *C.exitnet_fisher, weight *C.char, bias *C.char,
	inA *C.struct_ArrowArray, inS *C.struct_ArrowSchema, gA *C.struct_ArrowArray, gS *C.struct_ArrowSchema,
	wA *C.struct_ArrowArray, wS *C.struct_ArrowSchema) C.int {
	return run("exitnet_fisher_update_linear", func() error {
		u, release, err := layerInputs(h, weight, inA, inS, gA, gS, wA, wS)
		defer release()
		if err != nil {
			return err
		}
		a, g := u.inputs, u.grads
		if a.Rows != g.Rows {
			return xerr.Invalid("grad_outputs: %d rows, inputs have %d", g.Rows, a.Rows)
		}
		u.fh.mu.Lock()
		defer u.fh.mu.Unlock()
		return u.fh.acc.UpdateLinear(u.weight, optString(bias), a.Data, g.Data, a.Rows, a.Cols, g.Cols, u.weights)
	}, arg(inA, inS, "inputs"), arg(gA, gS, "grad_outputs"), arg(wA, wS, "weights"))
}

// tensor4 returns the N×C×H×W shape of a fixed_shape_tensor matrix with 3-D rows.
func tensor4(m arrowx.Matrix, name string) ([4]int, error) {
	if len(m.Shape) != 3 {
		return [4]int{}, xerr.Invalid("%s: expected an arrow.fixed_shape_tensor with per-sample shape [C, H, W], got per-sample shape %v", name, m.Shape)
	}
	return [4]int{m.Rows, m.Shape[0], m.Shape[1], m.Shape[2]}, nil
}

//export exitnet_fisher_update_conv2d
func exitnet_fisher_update_conv2d(h *C.exitnet_fisher, weight *C.char, bias *C.char,
	inA *C.struct_ArrowArray, inS *C.struct_ArrowSchema, gA *C.struct_ArrowArray, gS *C.struct_ArrowSchema,
	geo *C.exitnet_conv2d_geometry, wA *C.struct_ArrowArray, wS *C.struct_ArrowSchema) C.int {
	return run("exitnet_fisher_update_conv2d", func() error {
		u, release, err := layerInputs(h, weight, inA, inS, gA, gS, wA, wS)
		defer release()
		if err != nil {
			return err
		}
		if geo == nil {
			return xerr.Invalid("geometry: NULL pointer")
		}
		fh, wname, x, g, wts := u.fh, u.weight, u.inputs, u.grads, u.weights
		xs, err := tensor4(x, "inputs")
		if err != nil {
			return err
		}
		gs, err := tensor4(g, "grad_outputs")
		if err != nil {
			return err
		}
		fh.mu.Lock()
		defer fh.mu.Unlock()
		l := fh.acc.Layout()
		i, err := l.Lookup(wname)
		if err != nil {
			return xerr.Wrap(err, "weight")
		}
		shape := l.Param(i).Shape
		if len(shape) != 4 {
			return xerr.Invalid("weight: parameter %q has shape %v; a Conv2d weight is [Cout, Cin/groups, kh, kw]", wname, shape)
		}
		c := fisher.Conv2d{
			Stride:   [2]int{int(geo.stride[0]), int(geo.stride[1])},
			Padding:  [2]int{int(geo.padding[0]), int(geo.padding[1])},
			Dilation: [2]int{int(geo.dilation[0]), int(geo.dilation[1])},
			Groups:   int(geo.groups),
			Kernel:   [2]int{shape[2], shape[3]},
		}
		return fh.acc.UpdateConv2d(wname, optString(bias), x.Data, xs, g.Data, gs, c, wts)
	}, arg(inA, inS, "inputs"), arg(gA, gS, "grad_outputs"), arg(wA, wS, "weights"))
}

//export exitnet_fisher_update_squared
func exitnet_fisher_update_squared(h *C.exitnet_fisher, param *C.char, sqA *C.struct_ArrowArray, sqS *C.struct_ArrowSchema, n C.int64_t) C.int {
	return run("exitnet_fisher_update_squared", func() error {
		ins, release, err := importAll(arg(sqA, sqS, "sq_sum"))
		defer release()
		if err != nil {
			return err
		}
		fh, err := getFisher(h, "fisher")
		if err != nil {
			return err
		}
		name, err := goString(param, "param")
		if err != nil {
			return err
		}
		sq, err := arrowx.Float32s(ins[0].Field, ins[0].Array, "sq_sum")
		if err != nil {
			return err
		}
		fh.mu.Lock()
		defer fh.mu.Unlock()
		return fh.acc.UpdateSquared(name, sq, int64(n))
	}, arg(sqA, sqS, "sq_sum"))
}

//export exitnet_fisher_update_squared_raw
func exitnet_fisher_update_squared_raw(h *C.exitnet_fisher, param *C.char, sq *C.float, nValues C.int64_t, n C.int64_t) C.int {
	return run("exitnet_fisher_update_squared_raw", func() error {
		fh, err := getFisher(h, "fisher")
		if err != nil {
			return err
		}
		name, err := goString(param, "param")
		if err != nil {
			return err
		}
		v, err := rawView[float32](unsafe.Pointer(sq), int64(nValues), 1, "sq_sum", "n_values", "1")
		if err != nil {
			return err
		}
		v = orEmpty(v)
		fh.mu.Lock()
		defer fh.mu.Unlock()
		return fh.acc.UpdateSquared(name, v, int64(n))
	})
}

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
