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

//export exitnet_fisher_sample_labels
func exitnet_fisher_sample_labels(outA *C.struct_ArrowArray, outS *C.struct_ArrowSchema, lA *C.struct_ArrowArray, lS *C.struct_ArrowSchema, seed C.uint64_t, rowOffset C.uint64_t) C.int {
	return run("exitnet_fisher_sample_labels", func() error {
		return matrixInArrayOut(arg(lA, lS, "logits"), outA, outS, func(m arrowx.Matrix) error {
			arr, dst, err := arrowx.NewInt32(cmem, m.Rows, "out")
			return exportFilled(arr, dst, err, outA, outS, func(dst []int32) error {
				return fisher.SampleLabels(dst, m.Data, m.Rows, m.Cols, uint64(seed), uint64(rowOffset))
			})
		})
	}, arg(lA, lS, "logits"))
}

//export exitnet_fisher_class_probs
func exitnet_fisher_class_probs(outA *C.struct_ArrowArray, outS *C.struct_ArrowSchema, lA *C.struct_ArrowArray, lS *C.struct_ArrowSchema) C.int {
	return run("exitnet_fisher_class_probs", func() error {
		return matrixInArrayOut(arg(lA, lS, "logits"), outA, outS, func(m arrowx.Matrix) error {
			arr, dst, err := arrowx.NewMatrix(cmem, m.Rows, m.Cols, "out")
			return exportFilled(arr, dst, err, outA, outS, func(dst []float32) error {
				return fisher.ClassProbs(dst, m.Data, m.Rows, m.Cols)
			})
		})
	}, arg(lA, lS, "logits"))
}

// fisherStructArgs views k contiguous ArrowArray/ArrowSchema structs as arrowArgs.
func fisherStructArgs(arrs *C.struct_ArrowArray, schemas *C.struct_ArrowSchema, k int, name string) ([]arrowArg, error) {
	if k < 0 || k > 1<<16 {
		return nil, xerr.Invalid("%s: count %d, need 0..65536", name, k)
	}
	if k > 0 && (arrs == nil || schemas == nil) {
		return nil, xerr.Invalid("%s: NULL pointer", name)
	}
	if k == 0 {
		return nil, nil
	}
	as := unsafe.Slice(arrs, k)
	ss := unsafe.Slice(schemas, k)
	out := make([]arrowArg, k)
	for i := range out {
		out[i] = arg(&as[i], &ss[i], name)
	}
	return out, nil
}

func float32Inputs(ins []input, name string) ([][]float32, error) {
	out := make([][]float32, len(ins))
	for i, in := range ins {
		v, err := arrowx.Float32s(in.Field, in.Array, name)
		if err != nil {
			return nil, xerr.Wrap(err, "%s[%d]", name, i)
		}
		out[i] = v
	}
	return out, nil
}

//export exitnet_fisher_consolidate
func exitnet_fisher_consolidate(outA *C.struct_ArrowArray, outS *C.struct_ArrowSchema,
	fA *C.struct_ArrowArray, fS *C.struct_ArrowSchema, nFishers C.int, mode *C.char, weights *C.double, gamma C.double) C.int {
	return run("exitnet_fisher_consolidate", func() error {
		args, err := fisherStructArgs(fA, fS, int(nFishers), "fishers")
		if err != nil {
			return err
		}
		ins, release, err := importAll(args...)
		defer release()
		if err != nil {
			return err
		}
		if err := checkOut(outA, outS, "out"); err != nil {
			return err
		}
		m, err := goString(mode, "mode")
		if err != nil {
			return err
		}
		if m == fisher.ConsolidateSeparate {
			return xerr.Invalid("mode: \"separate\" keeps the list as it is; nothing to compute")
		}
		fs, err := float32Inputs(ins, "fishers")
		if err != nil {
			return err
		}
		var w []float64
		if weights != nil {
			for _, v := range unsafe.Slice(weights, len(fs)) {
				w = append(w, float64(v))
			}
		}
		res, err := fisher.Consolidate(m, fs, w, float64(gamma))
		if err != nil {
			return err
		}
		arr, dst, err := arrowx.NewFloat32(cmem, len(res[0]), "out")
		return exportFilled(arr, dst, err, outA, outS, func(dst []float32) error {
			copy(dst, res[0])
			return nil
		})
	}, argsOrNone(fisherStructArgs(fA, fS, int(nFishers), "fishers"))...)
}

// penaltyInputs moves in params and the nPairs anchor and Fisher arrays (all
// of them, whatever fails first) and returns their float32 views; release frees
// the imported arrays and is always non-nil.
func penaltyInputs(pA *C.struct_ArrowArray, pS *C.struct_ArrowSchema, aA *C.struct_ArrowArray, aS *C.struct_ArrowSchema,
	fA *C.struct_ArrowArray, fS *C.struct_ArrowSchema, nPairs int) (theta []float32, as, fs [][]float32, release func(), err error) {
	anch, err1 := fisherStructArgs(aA, aS, nPairs, "anchors")
	fish, err2 := fisherStructArgs(fA, fS, nPairs, "fishers")
	if err1 != nil || err2 != nil {
		releaseArgs(append(append([]arrowArg{arg(pA, pS, "params")}, anch...), fish...)...)
		if err1 != nil {
			return nil, nil, nil, func() {}, err1
		}
		return nil, nil, nil, func() {}, err2
	}
	all := append([]arrowArg{arg(pA, pS, "params")}, anch...)
	all = append(all, fish...)
	ins, release, err := importAll(all...)
	if err != nil {
		return nil, nil, nil, release, err
	}
	if theta, err = arrowx.Float32s(ins[0].Field, ins[0].Array, "params"); err != nil {
		return nil, nil, nil, release, err
	}
	if as, err = float32Inputs(ins[1:1+nPairs], "anchors"); err != nil {
		return nil, nil, nil, release, err
	}
	if fs, err = float32Inputs(ins[1+nPairs:], "fishers"); err != nil {
		return nil, nil, nil, release, err
	}
	return theta, as, fs, release, nil
}

// penaltyArgs lists the penalty's input structs (params, then the anchors and
// Fishers when nPairs is valid) for run's release on the poisoned and panic paths.
func penaltyArgs(pA *C.struct_ArrowArray, pS *C.struct_ArrowSchema, aA *C.struct_ArrowArray, aS *C.struct_ArrowSchema,
	fA *C.struct_ArrowArray, fS *C.struct_ArrowSchema, nPairs int) []arrowArg {
	all := append([]arrowArg{arg(pA, pS, "params")}, argsOrNone(fisherStructArgs(aA, aS, nPairs, "anchors"))...)
	return append(all, argsOrNone(fisherStructArgs(fA, fS, nPairs, "fishers"))...)
}

//export exitnet_ewc_penalty
func exitnet_ewc_penalty(outValue *C.double, outA *C.struct_ArrowArray, outS *C.struct_ArrowSchema,
	pA *C.struct_ArrowArray, pS *C.struct_ArrowSchema,
	aA *C.struct_ArrowArray, aS *C.struct_ArrowSchema, fA *C.struct_ArrowArray, fS *C.struct_ArrowSchema,
	nPairs C.int, lambda C.double) C.int {
	return run("exitnet_ewc_penalty", func() error {
		theta, as, fs, release, err := penaltyInputs(pA, pS, aA, aS, fA, fS, int(nPairs))
		defer release()
		if err != nil {
			return err
		}
		if outValue == nil {
			return xerr.Invalid("out_value: NULL pointer")
		}
		wantGrad := outA != nil || outS != nil
		if wantGrad {
			if err := checkOut(outA, outS, "out_grad"); err != nil {
				return err
			}
		}
		if !wantGrad {
			v, err := fisher.Penalty(theta, as, fs, float64(lambda))
			if err != nil {
				return err
			}
			*outValue = C.double(v)
			return nil
		}
		arr, dst, err := arrowx.NewFloat32(cmem, len(theta), "out_grad")
		return exportFilled(arr, dst, err, outA, outS, func(dst []float32) error {
			v, err := fisher.PenaltyGrad(dst, theta, as, fs, float64(lambda))
			if err == nil {
				*outValue = C.double(v)
			}
			return err
		})
	}, penaltyArgs(pA, pS, aA, aS, fA, fS, int(nPairs))...)
}

// cStrings copies n C strings (names) into Go.
func cStrings(p **C.char, n int, name string) ([]string, error) {
	if n == 0 {
		return nil, nil
	}
	if p == nil {
		return nil, xerr.Invalid("%s: NULL pointer", name)
	}
	out := make([]string, n)
	for i, s := range unsafe.Slice(p, n) {
		v, err := goString(s, name)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

//export exitnet_fisher_state_save
func exitnet_fisher_state_save(path *C.char, names **C.char, ndims *C.int64_t, dims *C.int64_t, nParams C.int64_t,
	fA *C.struct_ArrowArray, fS *C.struct_ArrowSchema, nFishers C.int,
	aA *C.struct_ArrowArray, aS *C.struct_ArrowSchema, nAnchors C.int,
	metaKeys **C.char, metaValues **C.char, nMeta C.int) C.int {
	return run("exitnet_fisher_state_save", func() error {
		fargs, err1 := fisherStructArgs(fA, fS, int(nFishers), "fishers")
		aargs, err2 := fisherStructArgs(aA, aS, int(nAnchors), "anchors")
		if err1 != nil {
			releaseArgs(aargs...)
			return err1
		}
		if err2 != nil {
			releaseArgs(fargs...)
			return err2
		}
		ins, release, err := importAll(append(fargs, aargs...)...)
		defer release()
		if err != nil {
			return err
		}
		p, err := goString(path, "path")
		if err != nil {
			return err
		}
		layout, err := fisherLayout(names, ndims, dims, nParams)
		if err != nil {
			return err
		}
		fs, err := float32Inputs(ins[:len(fargs)], "fishers")
		if err != nil {
			return err
		}
		as, err := float32Inputs(ins[len(fargs):], "anchors")
		if err != nil {
			return err
		}
		if nMeta < 0 {
			return xerr.Invalid("n_meta: %d", int(nMeta))
		}
		keys, err := cStrings(metaKeys, int(nMeta), "meta_keys")
		if err != nil {
			return err
		}
		vals, err := cStrings(metaValues, int(nMeta), "meta_values")
		if err != nil {
			return err
		}
		meta := make(map[string]string, len(keys))
		for i, k := range keys {
			if _, dup := meta[k]; dup {
				return xerr.Invalid("meta_keys: key %q appears twice (positions are %d and an earlier one)", k, i)
			}
			meta[k] = vals[i]
		}
		return fisher.SaveState(p, &fisher.State{Layout: layout, Fishers: fs, Anchors: as, Meta: meta})
	}, append(argsOrNone(fisherStructArgs(fA, fS, int(nFishers), "fishers")), argsOrNone(fisherStructArgs(aA, aS, int(nAnchors), "anchors"))...)...)
}

//export exitnet_fisher_state_load
func exitnet_fisher_state_load(outA *C.struct_ArrowArray, outS *C.struct_ArrowSchema, path *C.char) C.int {
	return run("exitnet_fisher_state_load", func() error {
		if err := checkOut(outA, outS, "out"); err != nil {
			return err
		}
		p, err := goString(path, "path")
		if err != nil {
			return err
		}
		st, err := fisher.LoadState(p)
		if err != nil {
			return err
		}
		// Rebuild the record on the C heap (the decoded buffers live in Go memory).
		rec, err := st.Record()
		if err != nil {
			return err
		}
		defer rec.Release()
		cols := make([]arrow.Array, rec.NumCols())
		for i := range cols {
			if f64, ok := rec.Column(i).(*array.Float64); ok { // "sums" of an accumulator file
				arr, view := newFloat64(f64.Len())
				copy(view, f64.Float64Values())
				cols[i] = arr
				continue
			}
			vals := rec.Column(i).(*array.Float32).Float32Values()
			arr, dst, err := arrowx.NewFloat32(cmem, len(vals), "out")
			if err != nil {
				for _, c := range cols[:i] {
					c.Release()
				}
				return err
			}
			copy(dst, vals)
			cols[i] = arr
		}
		out := array.NewRecordBatch(rec.Schema(), cols, rec.NumRows())
		for _, c := range cols {
			c.Release()
		}
		exportRecord(out, outA, outS)
		return nil
	})
}

//export exitnet_ewc_penalty_into
func exitnet_ewc_penalty_into(outValue *C.double, outGrad *C.float, n C.int64_t,
	pA *C.struct_ArrowArray, pS *C.struct_ArrowSchema,
	aA *C.struct_ArrowArray, aS *C.struct_ArrowSchema, fA *C.struct_ArrowArray, fS *C.struct_ArrowSchema,
	nPairs C.int, lambda C.double) C.int {
	return run("exitnet_ewc_penalty_into", func() error {
		theta, as, fs, release, err := penaltyInputs(pA, pS, aA, aS, fA, fS, int(nPairs))
		defer release()
		if err != nil {
			return err
		}
		if outValue == nil {
			return xerr.Invalid("out_value: NULL pointer")
		}
		var dst []float32
		if outGrad != nil {
			if int(n) != len(theta) {
				return xerr.Invalid("out_grad: %d values, params have %d", int64(n), len(theta))
			}
			if n > 0 {
				dst = unsafe.Slice((*float32)(unsafe.Pointer(outGrad)), int(n))
			}
		}
		var v float64
		if dst == nil && outGrad == nil {
			v, err = fisher.Penalty(theta, as, fs, float64(lambda))
		} else {
			if dst == nil { // n == 0
				dst = []float32{}
			}
			v, err = fisher.PenaltyGrad(dst, theta, as, fs, float64(lambda))
		}
		if err != nil {
			return err
		}
		*outValue = C.double(v)
		return nil
	}, penaltyArgs(pA, pS, aA, aS, fA, fS, int(nPairs))...)
}

//export exitnet_fisher_save
func exitnet_fisher_save(h *C.exitnet_fisher, path *C.char) C.int {
	return run("exitnet_fisher_save", func() error {
		fh, err := getFisher(h, "fisher")
		if err != nil {
			return err
		}
		p, err := goString(path, "path")
		if err != nil {
			return err
		}
		fh.mu.Lock()
		defer fh.mu.Unlock()
		return fh.acc.Save(p)
	})
}

//export exitnet_fisher_load
func exitnet_fisher_load(out **C.exitnet_fisher, path *C.char) C.int {
	return run("exitnet_fisher_load", func() error {
		if out == nil {
			return xerr.Invalid("out: NULL pointer")
		}
		p, err := goString(path, "path")
		if err != nil {
			return err
		}
		acc, err := fisher.LoadAccumulator(p)
		if err != nil {
			return err
		}
		*out = (*C.exitnet_fisher)(putHandle(&fisherHandle{acc: acc}))
		return nil
	})
}
