package main

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/exitnet/exitnet/golib/arrowx"
	"github.com/exitnet/exitnet/golib/fisher"
	"github.com/exitnet/exitnet/golib/xerr"
)

// Label modes' helpers (sampled labels, class probabilities), consolidation of
// several Fishers, and the EWC penalty with its gradient.

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

//export exitnet_ewc_penalty_raw
func exitnet_ewc_penalty_raw(outValue *C.double, outGrad *C.float, params *C.float, anchors **C.float, fishers **C.float,
	n C.int64_t, nPairs C.int, lambda C.double) C.int {
	return run("exitnet_ewc_penalty_raw", func() error {
		if outValue == nil {
			return xerr.Invalid("out_value: NULL pointer")
		}
		K := int(nPairs)
		if K < 1 || K > 1<<16 {
			return xerr.Invalid("n_pairs: %d, need 1..65536", K)
		}
		if anchors == nil || fishers == nil {
			which := "anchors"
			if anchors != nil {
				which = "fishers"
			}
			return xerr.Invalid("%s: NULL pointer array", which)
		}
		theta, err := rawView[float32](unsafe.Pointer(params), int64(n), 1, "params", "n", "1")
		if err != nil {
			return err
		}
		as, fs := make([][]float32, K), make([][]float32, K)
		ap, fp := unsafe.Slice(anchors, K), unsafe.Slice(fishers, K)
		for k := range K {
			if as[k], err = rawView[float32](unsafe.Pointer(ap[k]), int64(n), 1, fmt.Sprintf("anchors[%d]", k), "n", "1"); err != nil {
				return err
			}
			if fs[k], err = rawView[float32](unsafe.Pointer(fp[k]), int64(n), 1, fmt.Sprintf("fishers[%d]", k), "n", "1"); err != nil {
				return err
			}
		}
		theta, as, fs = orEmpty(theta), orEmptyAll(as), orEmptyAll(fs)
		var v float64
		if outGrad == nil {
			v, err = fisher.Penalty(theta, as, fs, float64(lambda))
		} else {
			dst := orEmpty(unsafe.Slice((*float32)(unsafe.Pointer(outGrad)), int(n)))
			if name := overlapping(dst, theta, as, fs); name != "" {
				return xerr.Invalid("out_grad: overlaps %s (the gradient must go to its own buffer)", name)
			}
			v, err = fisher.PenaltyGrad(dst, theta, as, fs, float64(lambda))
		}
		if err != nil {
			return err
		}
		*outValue = C.double(v)
		return nil
	})
}

// overlapping names the first input whose memory overlaps dst ("" if none).
func overlapping(dst, theta []float32, as, fs [][]float32) string {
	if len(dst) == 0 {
		return ""
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(dst)))
	hi := lo + uintptr(len(dst))*4
	over := func(v []float32) bool {
		if len(v) == 0 {
			return false
		}
		a := uintptr(unsafe.Pointer(unsafe.SliceData(v)))
		return a < hi && lo < a+uintptr(len(v))*4
	}
	if over(theta) {
		return "params"
	}
	for k := range as {
		if over(as[k]) {
			return fmt.Sprintf("anchors[%d]", k)
		}
		if over(fs[k]) {
			return fmt.Sprintf("fishers[%d]", k)
		}
	}
	return ""
}
