package main

/*
#include "shim.h"
*/
import "C"

import (
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/exitnet/exitnet/golib/arrowx"
	"github.com/exitnet/exitnet/golib/policy"
	"github.com/exitnet/exitnet/golib/xerr"
)

// Scores cross the ABI as two arrays, exit-major: confidences as a
// fixed_size_list<float32>[N] with K rows, predictions as a flat int32 array of
// K·N values (row k holds exit k's N predictions).

// structArgs views K contiguous ArrowArray/ArrowSchema structs as arrowArgs:
// fisherStructArgs with K an exit count (1..65536).
func structArgs(arrs *C.struct_ArrowArray, schemas *C.struct_ArrowSchema, k int, name string) ([]arrowArg, error) {
	if k <= 0 || k > 1<<16 {
		return nil, xerr.Invalid("n_exits: %d, need 1..65536", k)
	}
	return fisherStructArgs(arrs, schemas, k, name)
}

// importScores moves in (conf, pred) and builds policy.Scores (zero-copy views).
func importScores(confA *C.struct_ArrowArray, confS *C.struct_ArrowSchema, predA *C.struct_ArrowArray,
	predS *C.struct_ArrowSchema, classes C.int, prefix string) (*policy.Scores, func(), error) {
	ins, release, err := importAll(arg(confA, confS, prefix+"confidences"), arg(predA, predS, prefix+"predictions"))
	if err != nil {
		return nil, release, err
	}
	m, err := ins[0].Matrix(prefix + "confidences")
	if err != nil {
		return nil, release, err
	}
	p, err := arrowx.Int32s(ins[1].Array, prefix+"predictions")
	if err != nil {
		return nil, release, err
	}
	if len(p) != m.Rows*m.Cols {
		return nil, release, xerr.Invalid("%spredictions: %d values, confidences are %d exits × %d samples", prefix, len(p), m.Rows, m.Cols)
	}
	conf := make([][]float32, m.Rows)
	pred := make([][]int32, m.Rows)
	for k := range conf {
		conf[k] = m.Row(k)
		pred[k] = p[k*m.Cols : (k+1)*m.Cols]
	}
	s, err := policy.NewScores(conf, pred, int(classes))
	if err != nil {
		if prefix != "" {
			err = xerr.Wrap(err, "%s", prefix[:len(prefix)-1])
		}
		return nil, release, err
	}
	return s, release, nil
}

func costsFrom(costs *C.double, k int) (policy.CostModel, error) {
	if costs == nil {
		return policy.CostModel{}, xerr.Invalid("costs: NULL pointer")
	}
	return policy.CostFromCumulative(append([]float64(nil), unsafe.Slice((*float64)(unsafe.Pointer(costs)), k)...))
}

func labelsFrom(in input, name string) ([]int32, error) { return arrowx.Int32s(in.Array, name) }

//export exitnet_policy_cost_cumulative
func exitnet_policy_cost_cumulative(outCum *C.double, stage, head *C.double, nExits C.int) C.int {
	return run("exitnet_policy_cost_cumulative", func() error {
		if outCum == nil || stage == nil || head == nil {
			return xerr.Invalid("out_costs, stage_macs, head_macs: NULL pointer")
		}
		if nExits <= 0 {
			return xerr.Invalid("n_exits: %d, need at least 1", int(nExits))
		}
		k := int(nExits)
		cm, err := policy.NewCostModel(unsafe.Slice((*float64)(unsafe.Pointer(stage)), k), unsafe.Slice((*float64)(unsafe.Pointer(head)), k))
		if err != nil {
			return err
		}
		copy(unsafe.Slice((*float64)(unsafe.Pointer(outCum)), k), cm.Cum)
		return nil
	})
}

//export exitnet_policy_confidences
func exitnet_policy_confidences(outConfA *C.struct_ArrowArray, outConfS *C.struct_ArrowSchema,
	outPredA *C.struct_ArrowArray, outPredS *C.struct_ArrowSchema,
	logits *C.struct_ArrowArray, logitsS *C.struct_ArrowSchema, nExits C.int, measure C.int, temps *C.float) C.int {
	return run("exitnet_policy_confidences", func() error {
		args, err := structArgs(logits, logitsS, int(nExits), "logits")
		if err != nil {
			return err // n_exits or the pointers are unusable: nothing can be moved in
		}
		ins, release, err := importAll(args...)
		defer release()
		if err != nil {
			return err
		}
		if err := checkOut(outConfA, outConfS, "out_confidences"); err != nil {
			return err
		}
		if err := checkOut(outPredA, outPredS, "out_predictions"); err != nil {
			return err
		}
		K := int(nExits)
		mats := make([]policy.Matrix, K)
		for k, in := range ins {
			m, err := in.Matrix("logits")
			if err != nil {
				return xerr.Wrap(err, "exit %d", k)
			}
			mats[k] = policy.Matrix{Data: m.Data, Rows: m.Rows, Cols: m.Cols}
		}
		var tv []float32
		if temps != nil {
			tv = unsafe.Slice((*float32)(unsafe.Pointer(temps)), K)
		}
		s, err := policy.ComputeScores(mats, policy.Measure(measure), tv)
		if err != nil {
			return err
		}
		ca, cv, err := arrowx.NewMatrix(cmem, K, s.N, "out_confidences")
		if err != nil {
			return err
		}
		pa, pv, err := arrowx.NewInt32(cmem, K*s.N, "out_predictions")
		if err != nil {
			ca.Release()
			return err
		}
		for k := range K {
			copy(cv[k*s.N:], s.Conf[k])
			copy(pv[k*s.N:], s.Pred[k])
		}
		exportArray(ca, outConfA, outConfS)
		exportArray(pa, outPredA, outPredS)
		return nil
	}, argsOrNone(structArgs(logits, logitsS, int(nExits), "logits"))...)
}

//export exitnet_policy_assign
func exitnet_policy_assign(outA *C.struct_ArrowArray, outS *C.struct_ArrowSchema,
	confA *C.struct_ArrowArray, confS *C.struct_ArrowSchema, predA *C.struct_ArrowArray, predS *C.struct_ArrowSchema,
	classes C.int, thresholds *C.float, nThresholds C.int64_t) C.int {
	return run("exitnet_policy_assign", func() error {
		s, release, err := importScores(confA, confS, predA, predS, classes, "")
		defer release()
		if err != nil {
			return err
		}
		if err := checkOut(outA, outS, "out"); err != nil {
			return err
		}
		if thresholds == nil || nThresholds <= 0 {
			return xerr.Invalid("thresholds: NULL or empty (need 1 or K = %d values)", s.K)
		}
		a, err := policy.Assign(s, unsafe.Slice((*float32)(unsafe.Pointer(thresholds)), int(nThresholds)))
		if err != nil {
			return err
		}
		ea, ev, err := arrowx.NewInt32(cmem, s.N, "exit")
		if err != nil {
			return err
		}
		defer ea.Release()
		pa, pv, err := arrowx.NewInt32(cmem, s.N, "prediction")
		if err != nil {
			return err
		}
		defer pa.Release()
		fa, fv, err := arrowx.NewFloat32(cmem, s.N, "confidence")
		if err != nil {
			return err
		}
		defer fa.Release()
		copy(ev, a.Exit)
		copy(pv, a.Pred)
		copy(fv, a.Conf)
		schema := arrow.NewSchema([]arrow.Field{
			{Name: "exit", Type: arrow.PrimitiveTypes.Int32},
			{Name: "prediction", Type: arrow.PrimitiveTypes.Int32},
			{Name: "confidence", Type: arrow.PrimitiveTypes.Float32},
		}, nil)
		exportRecord(array.NewRecordBatch(schema, []arrow.Array{ea, pa, fa}, int64(s.N)), outA, outS)
		return nil
	}, arg(confA, confS, "confidences"), arg(predA, predS, "predictions"))
}

// labelledCurve moves the scores and labels in (all of them, whatever fails) and
// computes the exact curve. check, if not nil, runs after the import and before
// any validation (the curve export's output check). release is always non-nil.
func labelledCurve(confA *C.struct_ArrowArray, confS *C.struct_ArrowSchema, predA *C.struct_ArrowArray,
	predS *C.struct_ArrowSchema, labelsA *C.struct_ArrowArray, labelsS *C.struct_ArrowSchema, classes C.int,
	costs *C.double, check func() error, alloc policy.CurveColumns) (*policy.Curve, func(), error) {
	ins, release0, err := importAll(arg(labelsA, labelsS, "labels"))
	s, release1, err2 := importScores(confA, confS, predA, predS, classes, "")
	release := func() { release1(); release0() }
	if err == nil {
		err = err2
	}
	if err == nil && check != nil {
		err = check()
	}
	if err != nil {
		return nil, release, err
	}
	y, err := labelsFrom(ins[0], "labels")
	if err != nil {
		return nil, release, err
	}
	cm, err := costsFrom(costs, s.K)
	if err != nil {
		return nil, release, err
	}
	c, err := policy.ExactCurveInto(s, y, cm, alloc)
	return c, release, err
}

//export exitnet_policy_curve
func exitnet_policy_curve(outA *C.struct_ArrowArray, outS *C.struct_ArrowSchema,
	confA *C.struct_ArrowArray, confS *C.struct_ArrowSchema, predA *C.struct_ArrowArray, predS *C.struct_ArrowSchema,
	labelsA *C.struct_ArrowArray, labelsS *C.struct_ArrowSchema, classes C.int, costs *C.double) C.int {
	return run("exitnet_policy_curve", func() error {
		var cols curveArrays
		defer cols.release()
		c, release, err := labelledCurve(confA, confS, predA, predS, labelsA, labelsS, classes, costs,
			func() error { return checkOut(outA, outS, "out") }, cols.alloc)
		defer release()
		if err != nil {
			return err
		}
		cols.export(c, outA, outS)
		return nil
	}, arg(confA, confS, "confidences"), arg(predA, predS, "predictions"), arg(labelsA, labelsS, "labels"))
}

//export exitnet_policy_curve_raw
func exitnet_policy_curve_raw(outA *C.struct_ArrowArray, outS *C.struct_ArrowSchema, conf *C.float, pred *C.int32_t,
	labels *C.int64_t, nExits C.int64_t, nSamples C.int64_t, classes C.int, costs *C.double) C.int {
	return run("exitnet_policy_curve_raw", func() error {
		if err := checkOut(outA, outS, "out"); err != nil {
			return err
		}
		K, N := int64(nExits), int64(nSamples)
		if K < 1 || K > 1<<16 {
			return xerr.Invalid("n_exits: %d, need 1..65536", K)
		}
		if N < 1 {
			return xerr.Invalid("n_samples: %d, need at least 1", N)
		}
		cv, err := rawView[float32](unsafe.Pointer(conf), K, N, "conf", "n_exits", "n_samples")
		if err != nil {
			return err
		}
		pv, err := rawView[int32](unsafe.Pointer(pred), K, N, "pred", "n_exits", "n_samples")
		if err != nil {
			return err
		}
		lv, err := rawView[int64](unsafe.Pointer(labels), 1, N, "labels", "1", "n_samples")
		if err != nil {
			return err
		}
		y, err := arrowx.NarrowInt32(lv, "labels")
		if err != nil {
			return err
		}
		cs, ps := make([][]float32, K), make([][]int32, K)
		for k := range cs {
			cs[k], ps[k] = cv[int64(k)*N:int64(k+1)*N], pv[int64(k)*N:int64(k+1)*N]
		}
		s, err := policy.NewScores(cs, ps, int(classes))
		if err != nil {
			return err
		}
		cm, err := costsFrom(costs, s.K)
		if err != nil {
			return err
		}
		var cols curveArrays
		defer cols.release()
		c, err := policy.ExactCurveInto(s, y, cm, cols.alloc)
		if err != nil {
			return err
		}
		cols.export(c, outA, outS)
		return nil
	})
}

// curveArrays holds the exported curve's columns, allocated on the C heap
// before the sweep so that the sweep writes them in place (no copy on export).
type curveArrays struct {
	cols []arrow.Array // tau, correct, accuracy, mean_cost, normalized_cost, speedup, exit_histogram
	p    int
}

func (a *curveArrays) alloc(P, K int) (*policy.Curve, error) {
	c := &policy.Curve{}
	add := func(arr arrow.Array, err error) error {
		if err == nil {
			a.cols = append(a.cols, arr)
		}
		return err
	}
	var arr arrow.Array
	var err error
	arr, c.Tau, err = arrowx.NewFloat32(rawmem, P, "tau")
	if err = add(arr, err); err == nil {
		arr, c.Correct, err = arrowx.NewInt64(rawmem, P, "correct")
		err = add(arr, err)
	}
	for _, dst := range []*[]float64{&c.Accuracy, &c.MeanCost, &c.Norm, &c.Speedup} {
		if err == nil {
			arr, *dst, err = arrowx.NewFloat64(rawmem, P, "curve")
			err = add(arr, err)
		}
	}
	if err == nil {
		arr, c.Hist, err = arrowx.NewInt64Rows(rawmem, P, K, "exit_histogram")
		err = add(arr, err)
	}
	a.p = P
	return c, err
}

// export exports the columns (normalized_cost is Curve.Norm, filled by the
// sweep) as one record batch into the caller's structs.
func (a *curveArrays) export(c *policy.Curve, outA *C.struct_ArrowArray, outS *C.struct_ArrowSchema) {
	exportRecord(a.record(c.K), outA, outS)
}

// record hands the columns to a record batch (the batch holds the references).
func (a *curveArrays) record(K int) arrow.RecordBatch {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "tau", Type: arrow.PrimitiveTypes.Float32},
		{Name: "correct", Type: arrow.PrimitiveTypes.Int64},
		{Name: "accuracy", Type: arrow.PrimitiveTypes.Float64},
		{Name: "mean_cost", Type: arrow.PrimitiveTypes.Float64},
		{Name: "normalized_cost", Type: arrow.PrimitiveTypes.Float64},
		{Name: "speedup", Type: arrow.PrimitiveTypes.Float64},
		{Name: "exit_histogram", Type: arrow.FixedSizeListOf(int32(K), arrow.PrimitiveTypes.Int64)},
	}, nil)
	return array.NewRecordBatch(schema, a.cols, int64(a.p))
}

func (a *curveArrays) release() {
	for _, c := range a.cols {
		c.Release()
	}
	a.cols = nil
}

func writePoint(out *C.exitnet_policy_point, hist *C.int64_t, p policy.Point, n int) {
	if out != nil {
		*out = C.exitnet_policy_point{tau: C.float(p.Tau), correct: C.int64_t(p.Correct), n: C.int64_t(n),
			accuracy: C.double(p.Accuracy), mean_cost: C.double(p.MeanCost), speedup: C.double(p.Speedup)}
	}
	if hist != nil {
		copy(unsafe.Slice((*int64)(unsafe.Pointer(hist)), len(p.Hist)), p.Hist)
	}
}

//export exitnet_policy_calibrate
func exitnet_policy_calibrate(outThresholds *C.float, outQ *C.double,
	outVal *C.exitnet_policy_point, outValHist *C.int64_t, outTest *C.exitnet_policy_point, outTestHist *C.int64_t,
	vConfA *C.struct_ArrowArray, vConfS *C.struct_ArrowSchema, vPredA *C.struct_ArrowArray, vPredS *C.struct_ArrowSchema,
	vLabA *C.struct_ArrowArray, vLabS *C.struct_ArrowSchema,
	tConfA *C.struct_ArrowArray, tConfS *C.struct_ArrowSchema, tPredA *C.struct_ArrowArray, tPredS *C.struct_ArrowSchema,
	tLabA *C.struct_ArrowArray, tLabS *C.struct_ArrowSchema,
	classes C.int, costs *C.double, method C.int, byAccuracy C.int, target C.double) C.int {
	return run("exitnet_policy_calibrate", func() error {
		hasTest := tConfA != nil || tPredA != nil || tLabA != nil
		vs, rel1, err1 := importScores(vConfA, vConfS, vPredA, vPredS, classes, "val_")
		defer rel1()
		vl, rel2, err2 := importAll(arg(vLabA, vLabS, "val_labels"))
		defer rel2()
		var (
			ts         *policy.Scores
			tl         []input
			err3, err4 error
		)
		if hasTest {
			var rel3, rel4 func()
			ts, rel3, err3 = importScores(tConfA, tConfS, tPredA, tPredS, classes, "test_")
			defer rel3()
			tl, rel4, err4 = importAll(arg(tLabA, tLabS, "test_labels"))
			defer rel4()
		}
		for _, e := range []error{err1, err2, err3, err4} {
			if e != nil {
				return e
			}
		}
		if outThresholds == nil {
			return xerr.Invalid("out_thresholds: NULL pointer")
		}
		yv, err := labelsFrom(vl[0], "val_labels")
		if err != nil {
			return err
		}
		var yt []int32
		if hasTest {
			if yt, err = labelsFrom(tl[0], "test_labels"); err != nil {
				return err
			}
		}
		cm, err := costsFrom(costs, vs.K)
		if err != nil {
			return err
		}
		if method < 0 || method > 2 {
			return xerr.Invalid("method: %d is not one of EXITNET_POLICY_GLOBAL, _MSDNET, _PER_EXIT", int(method))
		}
		tg := policy.Target{ByAccuracy: byAccuracy != 0}
		if tg.ByAccuracy {
			tg.Accuracy = float64(target)
		} else {
			tg.Cost = float64(target)
		}
		c, err := policy.Calibrate(vs, yv, ts, yt, cm, tg, policy.Method(method))
		if err != nil {
			return err
		}
		copy(unsafe.Slice((*float32)(unsafe.Pointer(outThresholds)), vs.K), c.Thresholds)
		if outQ != nil {
			*outQ = C.double(c.Q)
		}
		writePoint(outVal, outValHist, c.Val, vs.N)
		if hasTest {
			writePoint(outTest, outTestHist, c.Test, ts.N)
		}
		return nil
	}, arg(vConfA, vConfS, "val_confidences"), arg(vPredA, vPredS, "val_predictions"), arg(vLabA, vLabS, "val_labels"),
		arg(tConfA, tConfS, "test_confidences"), arg(tPredA, tPredS, "test_predictions"), arg(tLabA, tLabS, "test_labels"))
}

//export exitnet_policy_summary
func exitnet_policy_summary(outAccAtBudgets *C.double, outSpeedup *C.double, outAUC *C.double,
	confA *C.struct_ArrowArray, confS *C.struct_ArrowSchema, predA *C.struct_ArrowArray, predS *C.struct_ArrowSchema,
	labelsA *C.struct_ArrowArray, labelsS *C.struct_ArrowSchema, classes C.int, costs *C.double,
	budgets *C.double, nBudgets C.int64_t, delta C.double) C.int {
	return run("exitnet_policy_summary", func() error {
		c, release, err := labelledCurve(confA, confS, predA, predS, labelsA, labelsS, classes, costs, nil, nil)
		defer release()
		if err != nil {
			return err
		}
		if nBudgets > 0 {
			if budgets == nil || outAccAtBudgets == nil {
				return xerr.Invalid("budgets, out_accuracy: NULL pointer with n_budgets = %d", int64(nBudgets))
			}
			acc, _, err := policy.AccuracyAtBudgets(c, unsafe.Slice((*float64)(unsafe.Pointer(budgets)), int(nBudgets)))
			if err != nil {
				return err
			}
			copy(unsafe.Slice((*float64)(unsafe.Pointer(outAccAtBudgets)), len(acc)), acc)
		} else if nBudgets < 0 {
			return xerr.Invalid("n_budgets: %d is negative", int64(nBudgets))
		}
		if outSpeedup != nil {
			sp, _, err := policy.SpeedupAtIsoAccuracy(c, float64(delta))
			if err != nil {
				return err
			}
			*outSpeedup = C.double(sp)
		}
		if outAUC != nil {
			*outAUC = C.double(policy.AUC(c))
		}
		return nil
	}, arg(confA, confS, "confidences"), arg(predA, predS, "predictions"), arg(labelsA, labelsS, "labels"))
}
