package main

import (
	"unsafe"

	"github.com/exitnet/exitnet/golib/xerr"
)

// maxRawValues bounds the values one raw-pointer argument may span (2^46, as
// exitnet_model_predict_raw): rows·cols is checked against it before any
// multiplication, so a huge or negative size is an error, never an overflowed
// slice length.
const maxRawValues = 1 << 46

// rawView views rows×cols values at p (caller memory, borrowed for the call) as
// a Go slice. rowsName/colsName are the C argument names used in errors; rows
// may be 0 (then p may be NULL and the view is empty), cols must be ≥ 1.
func rawView[T any](p unsafe.Pointer, rows, cols int64, name, rowsName, colsName string) ([]T, error) {
	if rows < 0 {
		return nil, xerr.Invalid("%s: %d is negative", rowsName, rows)
	}
	if cols < 1 {
		return nil, xerr.Invalid("%s: %d, need at least 1", colsName, cols)
	}
	if rows > maxRawValues/cols {
		return nil, xerr.Invalid("%s, %s: %d × %d values for %s is more than one call accepts (2^46)", rowsName, colsName, rows, cols, name)
	}
	if rows == 0 {
		return nil, nil
	}
	if p == nil {
		return nil, xerr.Invalid("%s: NULL pointer with %s = %d", name, rowsName, rows)
	}
	return unsafe.Slice((*T)(p), int(rows*cols)), nil
}

// rawWeights views optional per-row weights: NULL means none, else n floats.
func rawWeights(w unsafe.Pointer, n int64) []float32 {
	if w == nil {
		return nil
	}
	if n == 0 {
		return []float32{}
	}
	return unsafe.Slice((*float32)(w), int(n))
}

// orEmpty turns rawView's nil view of zero values into an empty slice, for
// callees that read nil as "absent" (PenaltyGrad's dst, UpdateSquared's sums).
func orEmpty(v []float32) []float32 {
	if v == nil {
		return []float32{}
	}
	return v
}

func orEmptyAll(vs [][]float32) [][]float32 {
	for i := range vs {
		vs[i] = orEmpty(vs[i])
	}
	return vs
}
