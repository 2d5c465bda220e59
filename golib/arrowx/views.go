package arrowx

import (
	"encoding/json"
	"math"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/exitnet/exitnet/golib/xerr"
)

// Extension metadata keys, as the Arrow C Data Interface and IPC carry them.
const (
	ExtNameKey       = "ARROW:extension:name"
	ExtMetadataKey   = "ARROW:extension:metadata"
	FixedShapeTensor = "arrow.fixed_shape_tensor"
)

// Matrix is a dense row-major float32 view: element (i, j) is Data[i*Cols+j].
// For a fixed_shape_tensor input, Shape is the per-row tensor shape (prod = Cols);
// otherwise Shape is [Cols].
type Matrix struct {
	Rows, Cols int
	Shape      []int
	Data       []float32
}

// Row returns row i as a slice aliasing Data.
func (m Matrix) Row(i int) []float32 { return m.Data[i*m.Cols : (i+1)*m.Cols] }

type tensorMeta struct {
	Shape       []int `json:"shape"`
	Permutation []int `json:"permutation"`
}

// MatrixFromArray returns the zero-copy view of arr, which must be a
// fixed_size_list<float32> (optionally carrying the arrow.fixed_shape_tensor
// extension in field's metadata). name is the argument name used in errors.
func MatrixFromArray(field arrow.Field, arr arrow.Array, name string) (Matrix, error) {
	if arr == nil {
		return Matrix{}, xerr.Invalid("%s: missing array", name)
	}
	shape, err := extensionShape(field, name)
	if err != nil {
		return Matrix{}, err
	}
	fsl, ok := arr.(*array.FixedSizeList)
	if !ok {
		return Matrix{}, xerr.Invalid("%s: expected fixed_size_list<float32> or arrow.fixed_shape_tensor, got %s", name, arr.DataType())
	}
	typ := fsl.DataType().(*arrow.FixedSizeListType)
	if typ.Elem().ID() != arrow.FLOAT32 {
		return Matrix{}, xerr.Invalid("%s: expected float32 values, got %s", name, typ.Elem())
	}
	cols := int(typ.Len())
	if cols <= 0 {
		return Matrix{}, xerr.Invalid("%s: list size must be positive, got %d", name, cols)
	}
	if shape != nil {
		p := 1
		for _, d := range shape {
			p *= d
		}
		if p != cols {
			return Matrix{}, xerr.Invalid("%s: fixed_shape_tensor shape %v has %d elements, storage list size is %d", name, shape, p, cols)
		}
	} else {
		shape = []int{cols}
	}
	rows := fsl.Len()
	if n := fsl.NullN(); n > 0 {
		return Matrix{}, xerr.Invalid("%s: %d null rows; nulls are not accepted", name, n)
	}
	child, ok := fsl.ListValues().(*array.Float32)
	if !ok {
		return Matrix{}, xerr.Invalid("%s: values child is %s, expected float32", name, fsl.ListValues().DataType())
	}
	vals := child.Float32Values() // honours the child's own offset
	lo := fsl.Data().Offset() * cols
	hi := lo + rows*cols
	if lo < 0 || hi > len(vals) {
		return Matrix{}, xerr.Invalid("%s: %d rows of %d at offset %d exceed the %d values present", name, rows, cols, fsl.Data().Offset(), len(vals))
	}
	if child.NullN() > 0 {
		for i := lo; i < hi; i++ {
			if child.IsNull(i) {
				return Matrix{}, xerr.Invalid("%s: null value at row %d, column %d; nulls are not accepted", name, (i-lo)/cols, (i-lo)%cols)
			}
		}
	}
	return Matrix{Rows: rows, Cols: cols, Shape: shape, Data: vals[lo:hi:hi]}, nil
}

// extensionShape returns the fixed_shape_tensor shape from field metadata, nil if the
// field carries no extension, and an error for any other extension.
func extensionShape(field arrow.Field, name string) ([]int, error) {
	md := field.Metadata
	idx := md.FindKey(ExtNameKey)
	if idx < 0 {
		return nil, nil
	}
	ext := md.Values()[idx]
	if ext != FixedShapeTensor {
		return nil, xerr.Invalid("%s: extension type %q is not supported (expected %s)", name, ext, FixedShapeTensor)
	}
	var meta tensorMeta
	if j := md.FindKey(ExtMetadataKey); j >= 0 {
		dec := json.NewDecoder(strings.NewReader(md.Values()[j]))
		if err := dec.Decode(&meta); err != nil {
			return nil, xerr.Invalid("%s: fixed_shape_tensor metadata is not valid JSON: %v", name, err)
		}
	}
	if len(meta.Shape) == 0 {
		return nil, xerr.Invalid("%s: fixed_shape_tensor metadata has no shape", name)
	}
	for _, d := range meta.Shape {
		if d <= 0 {
			return nil, xerr.Invalid("%s: fixed_shape_tensor shape %v has a non-positive dimension", name, meta.Shape)
		}
	}
	if meta.Permutation != nil {
		if len(meta.Permutation) != len(meta.Shape) {
			return nil, xerr.Invalid("%s: fixed_shape_tensor permutation %v does not match shape %v", name, meta.Permutation, meta.Shape)
		}
		for i, p := range meta.Permutation {
			if p != i {
				return nil, xerr.NotSupported("%s: fixed_shape_tensor permutation %v is not the identity; pass a row-major (C-contiguous) tensor", name, meta.Permutation)
			}
		}
	}
	return meta.Shape, nil
}

// Int64s returns the values of an int32 or int64 array as int64 (zero-copy for
// int64, a converted copy for int32). Nulls are refused.
func Int64s(arr arrow.Array, name string) ([]int64, error) {
	if arr == nil {
		return nil, xerr.Invalid("%s: missing array", name)
	}
	if n := arr.NullN(); n > 0 {
		return nil, xerr.Invalid("%s: %d nulls; nulls are not accepted", name, n)
	}
	switch a := arr.(type) {
	case *array.Int64:
		return a.Int64Values(), nil
	case *array.Int32:
		v := a.Int32Values()
		out := make([]int64, len(v))
		for i, x := range v {
			out[i] = int64(x)
		}
		return out, nil
	}
	return nil, xerr.Invalid("%s: expected int32 or int64, got %s", name, arr.DataType())
}

// Int32s returns the values of an int32 or int64 array as int32 (zero-copy for
// int32; int64 values must fit in int32). Nulls are refused.
func Int32s(arr arrow.Array, name string) ([]int32, error) {
	if arr == nil {
		return nil, xerr.Invalid("%s: missing array", name)
	}
	if n := arr.NullN(); n > 0 {
		return nil, xerr.Invalid("%s: %d nulls; nulls are not accepted", name, n)
	}
	switch a := arr.(type) {
	case *array.Int32:
		return a.Int32Values(), nil
	case *array.Int64:
		return NarrowInt32(a.Int64Values(), name)
	}
	return nil, xerr.Invalid("%s: expected int32 or int64, got %s", name, arr.DataType())
}

// NarrowInt32 copies int64 values into a new int32 slice; a value outside the
// int32 range is an error naming its index (never a silent wrap-around).
func NarrowInt32(v []int64, name string) ([]int32, error) {
	out := make([]int32, len(v))
	for i, x := range v {
		if x < math.MinInt32 || x > math.MaxInt32 {
			return nil, xerr.Invalid("%s: value %d at index %d does not fit in int32", name, x, i)
		}
		out[i] = int32(x)
	}
	return out, nil
}

// Float32s returns the zero-copy values of a float32 array. Nulls are refused.
// A fixed_size_list<float32> is accepted too and flattened (row-major).
func Float32s(field arrow.Field, arr arrow.Array, name string) ([]float32, error) {
	if arr == nil {
		return nil, xerr.Invalid("%s: missing array", name)
	}
	if a, ok := arr.(*array.Float32); ok {
		if n := a.NullN(); n > 0 {
			return nil, xerr.Invalid("%s: %d nulls; nulls are not accepted", name, n)
		}
		return a.Float32Values(), nil
	}
	if _, ok := arr.(*array.FixedSizeList); ok {
		m, err := MatrixFromArray(field, arr, name)
		if err != nil {
			return nil, err
		}
		return m.Data, nil
	}
	return nil, xerr.Invalid("%s: expected float32, got %s", name, arr.DataType())
}

// CheckFinite returns an error naming the first NaN or ±Inf in data, reported as
// (row, column) of a matrix with cols columns (cols <= 0: flat index).
func CheckFinite(data []float32, cols int, name string) error {
	for i, v := range data {
		if v != v || v > math.MaxFloat32 || v < -math.MaxFloat32 {
			if cols > 0 {
				return xerr.Invalid("%s: non-finite value %v at row %d, column %d", name, v, i/cols, i%cols)
			}
			return xerr.Invalid("%s: non-finite value %v at index %d", name, v, i)
		}
	}
	return nil
}
