package main

/*
#include "shim.h"
*/
import "C"

import (
	"sync"
	"unsafe"

	"github.com/exitnet/exitnet/golib/arrowx"
	"github.com/exitnet/exitnet/golib/distill"
	"github.com/exitnet/exitnet/golib/memx"
	"github.com/exitnet/exitnet/golib/xerr"
)

// LwF distillation exports: soft targets, KD loss + gradient, and the recorded
// target store (writer and reader handles). See the distill section of
// include/exitnet.h for the contract.

// targetWriter serialises calls on one writer handle (TargetWriter itself is
// not safe for concurrent use).
type targetWriter struct {
	mu sync.Mutex
	w  *distill.TargetWriter
}

//export exitnet_distill_soft_targets
func exitnet_distill_soft_targets(outA *C.struct_ArrowArray, outS *C.struct_ArrowSchema,
	logits *C.struct_ArrowArray, logitsS *C.struct_ArrowSchema, temperature C.double) C.int {
	return run("exitnet_distill_soft_targets", func() error {
		return matrixInArrayOut(arg(logits, logitsS, "logits"), outA, outS, func(m arrowx.Matrix) error {
			arr, dst, err := arrowx.NewMatrix(cmem, m.Rows, m.Cols, "out")
			return exportFilled(arr, dst, err, outA, outS, func(dst []float32) error {
				return distill.SoftTargets(dst, m.Data, m.Rows, m.Cols, float64(temperature))
			})
		})
	}, arg(logits, logitsS, "logits"))
}

//export exitnet_distill_kd_loss
func exitnet_distill_kd_loss(outLoss *C.double, outGradA *C.struct_ArrowArray, outGradS *C.struct_ArrowSchema,
	student *C.struct_ArrowArray, studentS *C.struct_ArrowSchema,
	teacher *C.struct_ArrowArray, teacherS *C.struct_ArrowSchema, temperature C.double) C.int {
	return run("exitnet_distill_kd_loss", func() error {
		ins, release, err := importAll(arg(student, studentS, "student"), arg(teacher, teacherS, "teacher"))
		defer release()
		if err != nil {
			return err
		}
		if outLoss == nil {
			return xerr.Invalid("out_loss: NULL pointer")
		}
		wantGrad := outGradA != nil || outGradS != nil
		if wantGrad {
			if err := checkOut(outGradA, outGradS, "out_grad"); err != nil {
				return err
			}
		}
		s, err := ins[0].Matrix("student")
		if err != nil {
			return err
		}
		t, err := ins[1].Matrix("teacher")
		if err != nil {
			return err
		}
		if s.Rows != t.Rows || s.Cols != t.Cols {
			return xerr.Invalid("teacher: shape %d×%d, student: %d×%d (shapes must match)", t.Rows, t.Cols, s.Rows, s.Cols)
		}
		if !wantGrad {
			loss, err := distill.KDLoss(nil, s.Data, t.Data, s.Rows, s.Cols, float64(temperature))
			if err != nil {
				return err
			}
			*outLoss = C.double(loss)
			return nil
		}
		if s.Rows == 0 { // KDLoss's message, before allocating
			_, err := distill.KDLoss(nil, s.Data, t.Data, 0, s.Cols, float64(temperature))
			return err
		}
		arr, g, err := arrowx.NewMatrix(cmem, s.Rows, s.Cols, "out_grad")
		return exportFilled(arr, g, err, outGradA, outGradS, func(g []float32) error {
			loss, err := distill.KDLoss(g, s.Data, t.Data, s.Rows, s.Cols, float64(temperature))
			if err == nil {
				*outLoss = C.double(loss)
			}
			return err
		})
	}, arg(student, studentS, "student"), arg(teacher, teacherS, "teacher"))
}

//export exitnet_distill_kd_loss_raw
func exitnet_distill_kd_loss_raw(outLoss *C.double, outGrad *C.float, student, teacher *C.float,
	rows, cols C.int64_t, temperature C.double) C.int {
	return run("exitnet_distill_kd_loss_raw", func() error {
		if outLoss == nil {
			return xerr.Invalid("out_loss: NULL pointer")
		}
		if rows < 0 || cols < 1 || (rows > 0 && int64(cols) > (1<<40)/int64(rows)) {
			return xerr.Invalid("rows, cols: shape %d×%d (need rows ≥ 0, cols ≥ 1, rows·cols < 2^40)", int64(rows), int64(cols))
		}
		n := int(rows) * int(cols)
		if n > 0 && (student == nil || teacher == nil) {
			return xerr.Invalid("student, teacher: NULL pointer")
		}
		var g []float32
		if outGrad != nil && n > 0 {
			g = unsafe.Slice((*float32)(unsafe.Pointer(outGrad)), n)
		}
		var s, t []float32
		if n > 0 {
			s = unsafe.Slice((*float32)(unsafe.Pointer(student)), n)
			t = unsafe.Slice((*float32)(unsafe.Pointer(teacher)), n)
		}
		loss, err := distill.KDLoss(g, s, t, int(rows), int(cols), float64(temperature))
		if err != nil {
			return err
		}
		*outLoss = C.double(loss)
		return nil
	})
}

//export exitnet_distill_soft_targets_raw
func exitnet_distill_soft_targets_raw(out *C.float, logits *C.float, rows, cols C.int64_t, temperature C.double) C.int {
	return run("exitnet_distill_soft_targets_raw", func() error {
		if rows < 0 || cols < 1 || (rows > 0 && int64(cols) > (1<<40)/int64(rows)) {
			return xerr.Invalid("rows, cols: shape %d×%d (need rows ≥ 0, cols ≥ 1, rows·cols < 2^40)", int64(rows), int64(cols))
		}
		n := int(rows) * int(cols)
		if n > 0 && (out == nil || logits == nil) {
			return xerr.Invalid("out, logits: NULL pointer")
		}
		var dst, src []float32
		if n > 0 {
			dst = unsafe.Slice((*float32)(unsafe.Pointer(out)), n)
			src = unsafe.Slice((*float32)(unsafe.Pointer(logits)), n)
		}
		return distill.SoftTargets(dst, src, int(rows), int(cols), float64(temperature))
	})
}

//export exitnet_targets_writer_new
func exitnet_targets_writer_new(out **C.exitnet_targets_writer, numExits, numClasses C.int) C.int {
	return run("exitnet_targets_writer_new", func() error {
		if out == nil {
			return xerr.Invalid("out: NULL pointer")
		}
		w, err := distill.NewTargetWriter(int(numExits), int(numClasses))
		if err != nil {
			return err
		}
		*out = (*C.exitnet_targets_writer)(putHandle(&targetWriter{w: w}))
		return nil
	})
}

//export exitnet_targets_writer_add
func exitnet_targets_writer_add(h *C.exitnet_targets_writer, exit C.int,
	ids *C.struct_ArrowArray, idsS *C.struct_ArrowSchema,
	logits *C.struct_ArrowArray, logitsS *C.struct_ArrowSchema) C.int {
	return run("exitnet_targets_writer_add", func() error {
		args := []arrowArg{arg(ids, idsS, "ids"), arg(logits, logitsS, "logits")}
		tw, err := getHandle[*targetWriter](unsafe.Pointer(h), "writer")
		if err != nil {
			releaseArgs(args...)
			return err
		}
		ins, release, err := importAll(args...)
		defer release()
		if err != nil {
			return err
		}
		idv, err := arrowx.Int64s(ins[0].Array, "ids")
		if err != nil {
			return err
		}
		m, err := ins[1].Matrix("logits")
		if err != nil {
			return err
		}
		if m.Rows != len(idv) {
			return xerr.Invalid("logits: %d rows, ids: %d values (one id per row)", m.Rows, len(idv))
		}
		if m.Cols != tw.w.NumClasses() {
			return xerr.Invalid("logits: %d columns, the writer was created for %d classes", m.Cols, tw.w.NumClasses())
		}
		tw.mu.Lock()
		defer tw.mu.Unlock()
		return tw.w.Add(int(exit), idv, m.Data)
	}, arg(ids, idsS, "ids"), arg(logits, logitsS, "logits"))
}

//export exitnet_targets_writer_num_rows
func exitnet_targets_writer_num_rows(out *C.int64_t, h *C.exitnet_targets_writer, exit C.int) C.int {
	return run("exitnet_targets_writer_num_rows", func() error {
		if out == nil {
			return xerr.Invalid("out: NULL pointer")
		}
		tw, err := getHandle[*targetWriter](unsafe.Pointer(h), "writer")
		if err != nil {
			return err
		}
		tw.mu.Lock()
		defer tw.mu.Unlock()
		if exit < 0 || int(exit) >= tw.w.NumExits() {
			return xerr.Invalid("exit: %d (the writer has exits 0..%d)", int(exit), tw.w.NumExits()-1)
		}
		*out = C.int64_t(tw.w.NumRows(int(exit)))
		return nil
	})
}

//export exitnet_targets_writer_save
func exitnet_targets_writer_save(h *C.exitnet_targets_writer, path *C.char) C.int {
	return run("exitnet_targets_writer_save", func() error {
		tw, err := getHandle[*targetWriter](unsafe.Pointer(h), "writer")
		if err != nil {
			return err
		}
		p, err := goString(path, "path")
		if err != nil {
			return err
		}
		tw.mu.Lock()
		defer tw.mu.Unlock()
		return tw.w.Save(p)
	})
}

//export exitnet_targets_writer_free
func exitnet_targets_writer_free(h **C.exitnet_targets_writer) C.int {
	return run("exitnet_targets_writer_free", func() error {
		if h == nil {
			return nil
		}
		if _, _, err := dropHandle[*targetWriter](unsafe.Pointer(*h), "writer"); err != nil {
			return err
		}
		*h = nil
		return nil
	})
}

//export exitnet_targets_open
func exitnet_targets_open(out **C.exitnet_targets, path *C.char) C.int {
	return run("exitnet_targets_open", func() error {
		if out == nil {
			return xerr.Invalid("out: NULL pointer")
		}
		p, err := goString(path, "path")
		if err != nil {
			return err
		}
		t, err := distill.OpenTargets(p)
		if err != nil {
			return err
		}
		*out = (*C.exitnet_targets)(putHandle(t))
		return nil
	})
}

//export exitnet_targets_shape
func exitnet_targets_shape(outRows *C.int64_t, outExits, outClasses *C.int, h *C.exitnet_targets) C.int {
	return run("exitnet_targets_shape", func() error {
		t, err := getHandle[*distill.Targets](unsafe.Pointer(h), "targets")
		if err != nil {
			return err
		}
		if outRows != nil {
			*outRows = C.int64_t(t.NumRows())
		}
		if outExits != nil {
			*outExits = C.int(t.NumExits())
		}
		if outClasses != nil {
			*outClasses = C.int(t.NumClasses())
		}
		return nil
	})
}

//export exitnet_targets_gather
func exitnet_targets_gather(outA *C.struct_ArrowArray, outS *C.struct_ArrowSchema, h *C.exitnet_targets,
	ids *C.struct_ArrowArray, idsS *C.struct_ArrowSchema, exit C.int) C.int {
	return run("exitnet_targets_gather", func() error {
		a := arg(ids, idsS, "ids")
		t, err := getHandle[*distill.Targets](unsafe.Pointer(h), "targets")
		if err != nil {
			releaseArgs(a)
			return err
		}
		ins, release, err := importAll(a)
		defer release()
		if err != nil {
			return err
		}
		if err := checkOut(outA, outS, "out"); err != nil {
			return err
		}
		idv, err := arrowx.Int64s(ins[0].Array, "ids")
		if err != nil {
			return err
		}
		arr, dst, err := arrowx.NewMatrix(cmem, len(idv), t.NumClasses(), "out")
		return exportFilled(arr, dst, err, outA, outS, func(dst []float32) error {
			return t.Gather(dst, idv, int(exit))
		})
	}, arg(ids, idsS, "ids"))
}

//export exitnet_targets_gather_raw
func exitnet_targets_gather_raw(out *C.float, outLen C.int64_t, h *C.exitnet_targets,
	ids *C.int64_t, nIDs C.int64_t, exit C.int) C.int {
	return run("exitnet_targets_gather_raw", func() error {
		t, err := getHandle[*distill.Targets](unsafe.Pointer(h), "targets")
		if err != nil {
			return err
		}
		if nIDs < 0 || outLen < 0 {
			return xerr.Invalid("n_ids, out_len: negative")
		}
		if nIDs > 0 && (ids == nil || out == nil) {
			return xerr.Invalid("out, ids: NULL pointer")
		}
		want, err := memx.Mul("n_ids", int(nIDs), t.NumClasses())
		if err != nil {
			return err
		}
		if int64(outLen) != int64(want) {
			return xerr.Invalid("out_len: %d floats, want n_ids×num_classes = %d×%d", int64(outLen), int64(nIDs), t.NumClasses())
		}
		var dst []float32
		var idv []int64
		if nIDs > 0 {
			dst = unsafe.Slice((*float32)(unsafe.Pointer(out)), int(outLen))
			idv = unsafe.Slice((*int64)(unsafe.Pointer(ids)), int(nIDs))
		}
		return t.Gather(dst, idv, int(exit))
	})
}

//export exitnet_targets_free
func exitnet_targets_free(h **C.exitnet_targets) C.int {
	return run("exitnet_targets_free", func() error {
		if h == nil {
			return nil
		}
		t, ok, err := dropHandle[*distill.Targets](unsafe.Pointer(*h), "targets")
		if err != nil {
			return err
		}
		*h = nil
		if ok {
			return t.Close()
		}
		return nil
	})
}
