package main

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"slices"
	"sync"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/exitnet/exitnet/golib/arrowx"
	"github.com/exitnet/exitnet/golib/policy"
	"github.com/exitnet/exitnet/golib/runtime"
	"github.com/exitnet/exitnet/golib/xerr"
)

// Runtime exports: a model handle wraps an immutable *runtime.Model, safe to
// share between threads.

func getModel(h *C.exitnet_model, name string) (*runtime.Model, error) {
	return getHandle[*runtime.Model](unsafe.Pointer(h), name)
}

//export exitnet_model_load
func exitnet_model_load(out **C.exitnet_model, path *C.char) C.int {
	return run("exitnet_model_load", func() error {
		if out == nil {
			return xerr.Invalid("out: NULL pointer")
		}
		p, err := goString(path, "path")
		if err != nil {
			return err
		}
		m, err := runtime.Load(p)
		if err != nil {
			return err
		}
		*out = (*C.exitnet_model)(putHandle(m))
		return nil
	})
}

//export exitnet_model_free
func exitnet_model_free(h **C.exitnet_model) C.int {
	return run("exitnet_model_free", func() error {
		if h == nil || *h == nil {
			return nil
		}
		if _, _, err := dropHandle[*runtime.Model](unsafe.Pointer(*h), "model"); err != nil {
			return err
		}
		*h = nil
		return nil
	})
}

// modelInt is the body of the integer getters: check the handle, then out.
func modelInt(name string, out *C.int, h *C.exitnet_model, get func(*runtime.Model) int) C.int {
	return run(name, func() error {
		m, err := getModel(h, "model")
		if err != nil {
			return err
		}
		if out == nil {
			return xerr.Invalid("out: NULL pointer")
		}
		*out = C.int(get(m))
		return nil
	})
}

//export exitnet_model_num_exits
func exitnet_model_num_exits(out *C.int, h *C.exitnet_model) C.int {
	return modelInt("exitnet_model_num_exits", out, h, (*runtime.Model).NumExits)
}

//export exitnet_model_num_classes
func exitnet_model_num_classes(out *C.int, h *C.exitnet_model) C.int {
	return modelInt("exitnet_model_num_classes", out, h, (*runtime.Model).NumClasses)
}

//export exitnet_model_input_shape
func exitnet_model_input_shape(out *C.int64_t, h *C.exitnet_model) C.int {
	return run("exitnet_model_input_shape", func() error {
		m, err := getModel(h, "model")
		if err != nil {
			return err
		}
		if out == nil {
			return xerr.Invalid("out: NULL pointer")
		}
		s := m.InputShape()
		o := unsafe.Slice((*int64)(unsafe.Pointer(out)), 3)
		for i := range s {
			o[i] = int64(s[i])
		}
		return nil
	})
}

//export exitnet_model_exit_costs
func exitnet_model_exit_costs(out *C.int64_t, n C.int, h *C.exitnet_model) C.int {
	return run("exitnet_model_exit_costs", func() error {
		m, err := getModel(h, "model")
		if err != nil {
			return err
		}
		if out == nil {
			return xerr.Invalid("out: NULL pointer")
		}
		if int(n) != m.NumExits() {
			return xerr.Invalid("n: %d, the model has %d exits", int(n), m.NumExits())
		}
		copy(unsafe.Slice((*int64)(unsafe.Pointer(out)), int(n)), m.ExitCosts())
		return nil
	})
}

//export exitnet_model_preprocess
func exitnet_model_preprocess(outPresent *C.int, outMean, outStd *C.float, n C.int, h *C.exitnet_model) C.int {
	return run("exitnet_model_preprocess", func() error {
		m, err := getModel(h, "model")
		if err != nil {
			return err
		}
		if outPresent == nil || outMean == nil || outStd == nil {
			return xerr.Invalid("out_present, out_mean, out_std: NULL pointer")
		}
		C := m.InputShape()[0]
		if int(n) != C {
			return xerr.Invalid("n: %d, the model's input has %d channels", int(n), C)
		}
		mean, std, ok := m.Preprocess()
		*outPresent = 0
		if ok {
			*outPresent = 1
			copy(unsafe.Slice((*float32)(unsafe.Pointer(outMean)), C), mean)
			copy(unsafe.Slice((*float32)(unsafe.Pointer(outStd)), C), std)
		}
		return nil
	})
}

//export exitnet_model_set_max_work_per_sample
func exitnet_model_set_max_work_per_sample(n C.int64_t) C.int {
	return run("exitnet_model_set_max_work_per_sample", func() error {
		return runtime.SetMaxWorkPerSample(int64(n))
	})
}

//export exitnet_model_max_work_per_sample
func exitnet_model_max_work_per_sample(out *C.int64_t) C.int {
	return run("exitnet_model_max_work_per_sample", func() error {
		if out == nil {
			return xerr.Invalid("out: NULL pointer")
		}
		*out = C.int64_t(runtime.MaxWorkPerSample())
		return nil
	})
}

//export exitnet_model_predict_default_params
func exitnet_model_predict_default_params(out *C.exitnet_predict_params) C.int {
	return run("exitnet_model_predict_default_params", func() error {
		if out == nil {
			return xerr.Invalid("out: NULL pointer")
		}
		*out = C.exitnet_predict_params{measure: C.int(policy.MaxSoftmax), temperature: 1}
		return nil
	})
}

// predictOptions converts the C parameters (NULL = defaults).
func predictOptions(params *C.exitnet_predict_params) (runtime.Options, error) {
	opts := runtime.Options{Measure: policy.MaxSoftmax, Temperature: 1}
	if params == nil {
		return opts, nil
	}
	opts.Measure = policy.Measure(params.measure)
	opts.Temperature = float32(params.temperature)
	opts.ReturnLogits = params.return_logits != 0
	opts.Raw = params.raw_input != 0
	nt := int64(params.n_thresholds)
	if nt < 0 || nt > 1<<16 {
		return opts, xerr.Invalid("params.n_thresholds: %d", nt)
	}
	if nt > 0 {
		if params.thresholds == nil {
			return opts, xerr.Invalid("params.thresholds: NULL with n_thresholds = %d", nt)
		}
		// Copied: the caller's thresholds may alias an output buffer of the same
		// call (the raw predict writes confidences while later rows still read them).
		opts.Thresholds = slices.Clone(unsafe.Slice((*float32)(unsafe.Pointer(params.thresholds)), int(nt)))
	}
	return opts, nil
}

// rawResults keeps one reusable Result per concurrent raw caller, so the raw
// path allocates nothing per call in steady state.
var rawResults = sync.Pool{New: func() any { return new(runtime.Result) }}

//export exitnet_model_predict_raw
func exitnet_model_predict_raw(outPred *C.int32_t, outExit *C.int32_t, outConf *C.float, outLogits *C.float,
	outMACs *C.int64_t, h *C.exitnet_model, x *C.float, n C.int64_t, params *C.exitnet_predict_params) C.int {
	return run("exitnet_model_predict_raw", func() error {
		m, err := getModel(h, "model")
		if err != nil {
			return err
		}
		if n < 0 || n > 1<<40 {
			return xerr.Invalid("n: %d samples", int64(n))
		}
		opts, err := predictOptions(params)
		if err != nil {
			return err
		}
		if outPred == nil || outExit == nil || outConf == nil {
			return xerr.Invalid("out_prediction, out_exit, out_confidence: NULL pointer")
		}
		if opts.ReturnLogits && outLogits == nil {
			return xerr.Invalid("out_logits: NULL with params.return_logits set")
		}
		s := m.InputShape()
		per := s[0] * s[1] * s[2]
		if int64(n) > (1<<46)/int64(per) {
			return xerr.Invalid("n: %d samples of %d values is more than this call accepts", int64(n), per)
		}
		size := int(n) * per
		if x == nil && n > 0 {
			return xerr.Invalid("x: NULL pointer")
		}
		var xs []float32
		if n > 0 {
			xs = unsafe.Slice((*float32)(unsafe.Pointer(x)), size)
		}
		res := rawResults.Get().(*runtime.Result)
		defer rawResults.Put(res)
		N, K, C := int(n), m.NumExits(), m.NumClasses()
		if N > 0 {
			res.Pred = unsafe.Slice((*int32)(unsafe.Pointer(outPred)), N)
			res.Exit = unsafe.Slice((*int32)(unsafe.Pointer(outExit)), N)
			res.Conf = unsafe.Slice((*float32)(unsafe.Pointer(outConf)), N)
		} else {
			res.Pred, res.Exit, res.Conf = nil, nil, nil
		}
		if opts.ReturnLogits {
			all := unsafe.Slice((*float32)(unsafe.Pointer(outLogits)), K*N*C)
			if len(res.Logits) != K {
				res.Logits = make([][]float32, K)
			}
			for k := range res.Logits {
				res.Logits[k] = all[k*N*C : (k+1)*N*C]
			}
		}
		err = m.Predict(res, xs, N, opts)
		res.Pred, res.Exit, res.Conf = nil, nil, nil // never keep C memory in the pool
		for k := range res.Logits {
			res.Logits[k] = nil
		}
		if err != nil {
			return err
		}
		if outMACs != nil {
			*outMACs = C.int64_t(res.MACs)
		}
		return nil
	})
}

//export exitnet_model_predict
func exitnet_model_predict(outA *C.struct_ArrowArray, outS *C.struct_ArrowSchema, outMACs *C.int64_t,
	h *C.exitnet_model, inA *C.struct_ArrowArray, inS *C.struct_ArrowSchema, params *C.exitnet_predict_params) C.int {
	return run("exitnet_model_predict", func() error {
		ins, release, err := importAll(arg(inA, inS, "input"))
		defer release()
		if err != nil {
			return err
		}
		m, err := getModel(h, "model")
		if err != nil {
			return err
		}
		if err := checkOut(outA, outS, "out"); err != nil {
			return err
		}
		opts, err := predictOptions(params)
		if err != nil {
			return err
		}
		x, err := ins[0].Matrix("input")
		if err != nil {
			return err
		}
		want := m.InputShape()
		if len(x.Shape) == 3 {
			if x.Shape[0] != want[0] || x.Shape[1] != want[1] || x.Shape[2] != want[2] {
				return xerr.Invalid("input: tensor shape %v (%d channels), the model expects [C, H, W] = %v", x.Shape, x.Shape[0], want)
			}
		} else if x.Cols != want[0]*want[1]*want[2] || len(x.Shape) > 1 {
			return xerr.Invalid("input: rows of shape %v (%d values), the model expects [C, H, W] = %v (%d values)", x.Shape, x.Cols, want, want[0]*want[1]*want[2])
		}
		n := x.Rows
		K, C := m.NumExits(), m.NumClasses()
		// The result arrays live on the C heap; Predict writes into them directly.
		var cols []arrow.Array
		defer func() {
			for _, c := range cols {
				c.Release()
			}
		}()
		pa, pv, err := arrowx.NewInt32(cmem, n, "prediction")
		if err != nil {
			return err
		}
		cols = append(cols, pa)
		ea, ev, err := arrowx.NewInt32(cmem, n, "exit")
		if err != nil {
			return err
		}
		cols = append(cols, ea)
		fa, fv, err := arrowx.NewFloat32(cmem, n, "confidence")
		if err != nil {
			return err
		}
		cols = append(cols, fa)
		res := runtime.Result{Pred: pv, Exit: ev, Conf: fv}
		fields := []arrow.Field{
			{Name: "prediction", Type: arrow.PrimitiveTypes.Int32},
			{Name: "exit", Type: arrow.PrimitiveTypes.Int32},
			{Name: "confidence", Type: arrow.PrimitiveTypes.Float32},
		}
		if opts.ReturnLogits {
			res.Logits = make([][]float32, K)
			for k := 0; k < K; k++ {
				la, lv, err := arrowx.NewMatrix(cmem, n, C, "logits")
				if err != nil {
					return err
				}
				cols = append(cols, la)
				res.Logits[k] = lv
				fields = append(fields, arrow.Field{Name: fmt.Sprintf("logits_%d", k), Type: la.DataType()})
			}
		}
		if err := m.Predict(&res, x.Data, n, opts); err != nil {
			return err
		}
		if len(res.Pred) > 0 && &res.Pred[0] != &pv[0] {
			return xerr.Internal("prediction buffer was reallocated")
		}
		if outMACs != nil {
			*outMACs = C.int64_t(res.MACs)
		}
		rec := array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, int64(n))
		exportRecord(rec, outA, outS)
		return nil
	}, arg(inA, inS, "input"))
}
