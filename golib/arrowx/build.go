package arrowx

import (
	"encoding/json"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/exitnet/exitnet/golib/memx"
	"github.com/exitnet/exitnet/golib/xerr"
)

// maxElements bounds any single output allocation (2^31 float32 = 8 GiB).
const maxElements = 1 << 31

func newBuffer(mem memory.Allocator, n, width int, name string) (*memory.Buffer, error) {
	if n < 0 || n > maxElements {
		return nil, xerr.OOM("%s: %d elements exceed the limit of %d", name, n, maxElements)
	}
	if err := memx.Check(name, width, n); err != nil {
		return nil, err
	}
	buf := memory.NewResizableBuffer(mem)
	buf.Resize(n * width)
	return buf, nil
}

func float32View(buf *memory.Buffer, n int) []float32 {
	if n == 0 {
		return []float32{}
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&buf.Bytes()[0])), n)
}

// NewMatrix allocates a rows×cols fixed_size_list<float32> array from mem and
// returns it with a writable row-major view of its values (zero-initialised by
// the caller's writes; contents are undefined until written).
func NewMatrix(mem memory.Allocator, rows, cols int, name string) (arrow.Array, []float32, error) {
	if rows < 0 || cols <= 0 {
		return nil, nil, xerr.Invalid("%s: bad matrix shape %d×%d", name, rows, cols)
	}
	if cols > 0 && rows > maxElements/cols {
		return nil, nil, xerr.OOM("%s: %d×%d exceeds the element limit", name, rows, cols)
	}
	n := rows * cols
	buf, err := newBuffer(mem, n, 4, name)
	if err != nil {
		return nil, nil, err
	}
	defer buf.Release()
	child := array.NewData(arrow.PrimitiveTypes.Float32, n, []*memory.Buffer{nil, buf}, nil, 0, 0)
	defer child.Release()
	data := array.NewData(arrow.FixedSizeListOf(int32(cols), arrow.PrimitiveTypes.Float32), rows,
		[]*memory.Buffer{nil}, []arrow.ArrayData{child}, 0, 0)
	defer data.Release()
	return array.MakeFromData(data), float32View(buf, n), nil
}

// NewFloat32 allocates a float32 array of length n from mem with a writable view.
func NewFloat32(mem memory.Allocator, n int, name string) (arrow.Array, []float32, error) {
	buf, err := newBuffer(mem, n, 4, name)
	if err != nil {
		return nil, nil, err
	}
	defer buf.Release()
	data := array.NewData(arrow.PrimitiveTypes.Float32, n, []*memory.Buffer{nil, buf}, nil, 0, 0)
	defer data.Release()
	return array.MakeFromData(data), float32View(buf, n), nil
}

// NewInt32 allocates an int32 array of length n from mem with a writable view.
func NewInt32(mem memory.Allocator, n int, name string) (arrow.Array, []int32, error) {
	buf, err := newBuffer(mem, n, 4, name)
	if err != nil {
		return nil, nil, err
	}
	defer buf.Release()
	data := array.NewData(arrow.PrimitiveTypes.Int32, n, []*memory.Buffer{nil, buf}, nil, 0, 0)
	defer data.Release()
	var v []int32
	if n > 0 {
		v = unsafe.Slice((*int32)(unsafe.Pointer(&buf.Bytes()[0])), n)
	} else {
		v = []int32{}
	}
	return array.MakeFromData(data), v, nil
}

// NewInt64 allocates an int64 array of length n from mem with a writable view.
func NewInt64(mem memory.Allocator, n int, name string) (arrow.Array, []int64, error) {
	buf, err := newBuffer(mem, n, 8, name)
	if err != nil {
		return nil, nil, err
	}
	defer buf.Release()
	data := array.NewData(arrow.PrimitiveTypes.Int64, n, []*memory.Buffer{nil, buf}, nil, 0, 0)
	defer data.Release()
	var v []int64
	if n > 0 {
		v = unsafe.Slice((*int64)(unsafe.Pointer(&buf.Bytes()[0])), n)
	} else {
		v = []int64{}
	}
	return array.MakeFromData(data), v, nil
}

// NewFloat64 allocates a float64 array of length n from mem with a writable view.
func NewFloat64(mem memory.Allocator, n int, name string) (arrow.Array, []float64, error) {
	buf, err := newBuffer(mem, n, 8, name)
	if err != nil {
		return nil, nil, err
	}
	defer buf.Release()
	data := array.NewData(arrow.PrimitiveTypes.Float64, n, []*memory.Buffer{nil, buf}, nil, 0, 0)
	defer data.Release()
	v := []float64{}
	if n > 0 {
		v = unsafe.Slice((*float64)(unsafe.Pointer(&buf.Bytes()[0])), n)
	}
	return array.MakeFromData(data), v, nil
}

// NewInt64Rows allocates a fixed_size_list<int64>[cols] array of rows lists
// from mem with a writable row-major view of its rows·cols values.
func NewInt64Rows(mem memory.Allocator, rows, cols int, name string) (arrow.Array, []int64, error) {
	if rows < 0 || cols <= 0 || rows > maxElements/cols {
		return nil, nil, xerr.Invalid("%s: bad shape %d×%d", name, rows, cols)
	}
	child, v, err := NewInt64(mem, rows*cols, name)
	if err != nil {
		return nil, nil, err
	}
	defer child.Release()
	data := array.NewData(arrow.FixedSizeListOf(int32(cols), arrow.PrimitiveTypes.Int64), rows,
		[]*memory.Buffer{nil}, []arrow.ArrayData{child.Data()}, 0, 0)
	defer data.Release()
	return array.MakeFromData(data), v, nil
}

// TensorField describes a column of per-row tensors of the given shape: storage
// fixed_size_list<float32>[prod(shape)] with the arrow.fixed_shape_tensor
// extension carried in the field metadata (what C Data and IPC readers such as
// pyarrow recognise).
func TensorField(name string, shape []int) arrow.Field {
	p := 1
	for _, d := range shape {
		p *= d
	}
	meta, _ := json.Marshal(tensorMeta{Shape: shape})
	return arrow.Field{
		Name: name,
		Type: arrow.FixedSizeListOf(int32(p), arrow.PrimitiveTypes.Float32),
		Metadata: arrow.NewMetadata(
			[]string{ExtNameKey, ExtMetadataKey},
			[]string{FixedShapeTensor, string(meta)}),
	}
}
