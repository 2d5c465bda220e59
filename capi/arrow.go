package main

/*
#include "shim.h"
*/
import "C"

import (
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/cdata"
	"github.com/apache/arrow-go/v18/arrow/memory/mallocator"

	"github.com/exitnet/exitnet/golib/arrowx"
	"github.com/exitnet/exitnet/golib/xerr"
)

// cmem allocates every buffer that C sees (C heap), so exported arrays obey the
// cgo pointer rules and outlive the call.
var cmem = mallocator.NewMallocator()

// arrowArg is one Arrow input: a (struct ArrowArray*, struct ArrowSchema*) pair
// and the argument name used in errors.
type arrowArg struct {
	arr    *C.struct_ArrowArray
	schema *C.struct_ArrowSchema
	name   string
}

func arg(a *C.struct_ArrowArray, s *C.struct_ArrowSchema, name string) arrowArg {
	return arrowArg{arr: a, schema: s, name: name}
}

// input is an imported Arrow array with its field (name, type, metadata).
type input struct {
	Field arrow.Field
	Array arrow.Array
}

// Matrix returns the zero-copy matrix view of the input.
func (in input) Matrix(name string) (arrowx.Matrix, error) {
	return arrowx.MatrixFromArray(in.Field, in.Array, name)
}

// importOne moves one input in. On every path the caller's structs end up
// released (release == NULL); on success the returned array owns the data and
// must be released by the caller.
func importOne(a arrowArg) (input, error) {
	if a.arr == nil || a.schema == nil {
		C.xnet_release_array(a.arr)
		C.xnet_release_schema(a.schema)
		which := "ArrowArray"
		if a.arr != nil {
			which = "ArrowSchema"
		}
		return input{}, xerr.Invalid("%s: NULL %s pointer", a.name, which)
	}
	if a.arr.release == nil {
		C.xnet_release_schema(a.schema)
		return input{}, xerr.Invalid("%s: the ArrowArray was already released (or moved)", a.name)
	}
	if a.schema.release == nil {
		C.xnet_release_array(a.arr)
		return input{}, xerr.Invalid("%s: the ArrowSchema was already released (or moved)", a.name)
	}
	// ImportCArray always releases the schema; it moves the array on success.
	field, arr, err := cdata.ImportCArray((*cdata.CArrowArray)(unsafe.Pointer(a.arr)),
		(*cdata.CArrowSchema)(unsafe.Pointer(a.schema)))
	if err != nil {
		C.xnet_release_array(a.arr)
		return input{}, xerr.Invalid("%s: cannot import Arrow array: %v", a.name, err)
	}
	return input{Field: field, Array: arr}, nil
}

// importAll moves every input in, even after one fails (inputs are moved in
// whatever the status). It returns the imported inputs, a function that releases
// them (always non-nil, call it with defer), and the first error.
func importAll(args ...arrowArg) ([]input, func(), error) {
	ins := make([]input, len(args))
	var first error
	for i, a := range args {
		in, err := importOne(a)
		if err != nil && first == nil {
			first = err
		}
		ins[i] = in
	}
	release := func() {
		for _, in := range ins {
			if in.Array != nil {
				in.Array.Release()
			}
		}
	}
	if first != nil {
		release()
		return nil, func() {}, first
	}
	return ins, release, nil
}

// releaseArgs releases every live input struct without importing it: for early
// returns before importAll (e.g. a bad handle) so inputs are still moved in.
func releaseArgs(args ...arrowArg) {
	for _, a := range args {
		C.xnet_release_array(a.arr)
		C.xnet_release_schema(a.schema)
	}
}

// argsOrNone drops the error of a struct-array view: for run's list of inputs to
// release on the poisoned and panic paths. A count that fails validation gives
// no list (the structs cannot be counted safely); fn reports that error itself.
func argsOrNone(args []arrowArg, _ error) []arrowArg { return args }

// checkOut validates and zeroes a caller-allocated output pair. Call it before
// doing work so a NULL output fails fast.
func checkOut(outA *C.struct_ArrowArray, outS *C.struct_ArrowSchema, name string) error {
	if outA == nil || outS == nil {
		return xerr.Invalid("%s: NULL output ArrowArray/ArrowSchema pointer", name)
	}
	*outA = C.struct_ArrowArray{}
	*outS = C.struct_ArrowSchema{}
	return nil
}

// exportArray exports arr (its buffers from cmem) into the caller's structs; the
// caller owns and releases them. arr's reference is handed over.
func exportArray(arr arrow.Array, outA *C.struct_ArrowArray, outS *C.struct_ArrowSchema) {
	defer arr.Release()
	cdata.ExportArrowArray(arr, (*cdata.CArrowArray)(unsafe.Pointer(outA)), (*cdata.CArrowSchema)(unsafe.Pointer(outS)))
}

// exportRecord exports a record batch (struct array with a schema, field
// metadata kept, e.g. fixed_shape_tensor columns). rec's reference is handed over.
func exportRecord(rec arrow.RecordBatch, outA *C.struct_ArrowArray, outS *C.struct_ArrowSchema) {
	defer rec.Release()
	cdata.ExportArrowRecordBatch(rec, (*cdata.CArrowArray)(unsafe.Pointer(outA)), (*cdata.CArrowSchema)(unsafe.Pointer(outS)))
}

// exportFilled is the tail of every "compute into a new C-heap array" export:
// given the result of an arrowx.New* allocation, fill writes the values, then the
// array is exported into the caller's structs. If fill fails the array is freed
// and nothing is exported.
func exportFilled[T any](arr arrow.Array, dst []T, err error, outA *C.struct_ArrowArray,
	outS *C.struct_ArrowSchema, fill func(dst []T) error) error {
	if err != nil {
		return err
	}
	if err := fill(dst); err != nil {
		arr.Release()
		return err
	}
	exportArray(arr, outA, outS)
	return nil
}

// matrixInArrayOut is the body of the one-matrix-in, one-array-out exports: it
// moves the input in, checks the output pair, views the input as a matrix and
// exports what compute returns (compute allocates with arrowx.New* from cmem,
// typically through exportFilled's arguments).
func matrixInArrayOut(in arrowArg, outA *C.struct_ArrowArray, outS *C.struct_ArrowSchema,
	compute func(m arrowx.Matrix) error) error {
	ins, release, err := importAll(in)
	defer release()
	if err != nil {
		return err
	}
	if err := checkOut(outA, outS, "out"); err != nil {
		return err
	}
	m, err := ins[0].Matrix(in.name)
	if err != nil {
		return err
	}
	return compute(m)
}
