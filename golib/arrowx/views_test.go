package arrowx

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/exitnet/exitnet/golib/xerr"
)

func matrixArray(mem memory.Allocator, vals []float32, valid []bool, cols int) arrow.Array {
	fb := array.NewFloat32Builder(mem)
	defer fb.Release()
	fb.AppendValues(vals, valid)
	child := fb.NewArray()
	defer child.Release()
	data := array.NewData(arrow.FixedSizeListOf(int32(cols), arrow.PrimitiveTypes.Float32), len(vals)/cols,
		[]*memory.Buffer{nil}, []arrow.ArrayData{child.Data()}, 0, 0)
	defer data.Release()
	return array.MakeFromData(data)
}

func TestMatrixViewIsZeroCopyAndHonoursOffsets(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	vals := make([]float32, 20)
	for i := range vals {
		vals[i] = float32(i)
	}
	arr := matrixArray(mem, vals, nil, 4)
	defer arr.Release()
	m, err := MatrixFromArray(arrow.Field{}, arr, "x")
	if err != nil {
		t.Fatal(err)
	}
	if m.Rows != 5 || m.Cols != 4 || &m.Data[0] != &arr.(*array.FixedSizeList).ListValues().(*array.Float32).Float32Values()[0] {
		t.Fatalf("bad view %d×%d", m.Rows, m.Cols)
	}
	sl := array.NewSlice(arr, 2, 4)
	defer sl.Release()
	ms, err := MatrixFromArray(arrow.Field{}, sl, "x")
	if err != nil {
		t.Fatal(err)
	}
	// rows 2 and 3 of the original: values 8..15
	if ms.Rows != 2 || ms.Data[0] != 8 || ms.Data[7] != 15 || len(ms.Data) != 8 {
		t.Fatalf("slice view wrong: rows %d data %v", ms.Rows, ms.Data)
	}
}

func TestMatrixRefusesNullsTypesAndBadExtensions(t *testing.T) {
	mem := memory.NewGoAllocator()
	arr := matrixArray(mem, []float32{1, 2, 3, 4}, []bool{true, false, true, true}, 2)
	defer arr.Release()
	if _, err := MatrixFromArray(arrow.Field{}, arr, "logits"); xerr.CodeOf(err) != xerr.StatusInvalidArgument {
		t.Fatalf("null inside rows accepted: %v", err)
	}
	// A slice that skips the null row is fine.
	sl := array.NewSlice(arr, 1, 2)
	defer sl.Release()
	if _, err := MatrixFromArray(arrow.Field{}, sl, "logits"); err != nil {
		t.Fatalf("slice without nulls refused: %v", err)
	}
	fb := array.NewFloat32Builder(mem)
	fb.AppendValues([]float32{1, 2}, nil)
	flat := fb.NewArray()
	defer flat.Release()
	if _, err := MatrixFromArray(arrow.Field{}, flat, "logits"); err == nil {
		t.Fatal("flat float32 accepted as a matrix")
	}
	good := matrixArray(mem, []float32{1, 2, 3, 4, 5, 6}, nil, 6)
	defer good.Release()
	ext := func(meta string) arrow.Field {
		return arrow.Field{Metadata: arrow.NewMetadata([]string{ExtNameKey, ExtMetadataKey}, []string{FixedShapeTensor, meta})}
	}
	m, err := MatrixFromArray(ext(`{"shape":[2,3],"permutation":[0,1]}`), good, "x")
	if err != nil || len(m.Shape) != 2 || m.Shape[1] != 3 {
		t.Fatalf("tensor shape: %v %v", m.Shape, err)
	}
	for _, bad := range []string{`{"shape":[4,3]}`, `{"shape":[3,2],"permutation":[1,0]}`, `{"shape":[]}`, `not json`, `{"shape":[-6,-1]}`} {
		if _, err := MatrixFromArray(ext(bad), good, "x"); err == nil {
			t.Errorf("metadata %s accepted", bad)
		}
	}
	other := arrow.Field{Metadata: arrow.NewMetadata([]string{ExtNameKey}, []string{"arrow.uuid"})}
	if _, err := MatrixFromArray(other, good, "x"); err == nil {
		t.Error("foreign extension accepted")
	}
}

func TestIntsAndFinite(t *testing.T) {
	mem := memory.NewGoAllocator()
	b := array.NewInt64Builder(mem)
	b.AppendValues([]int64{1, 1 << 40}, nil)
	a := b.NewArray()
	defer a.Release()
	if _, err := Int32s(a, "labels"); err == nil {
		t.Error("int64 overflow accepted as int32")
	}
	v, err := Int64s(a, "ids")
	if err != nil || v[1] != 1<<40 {
		t.Fatal(v, err)
	}
	if err := CheckFinite([]float32{1, float32(math.NaN())}, 1, "g"); err == nil {
		t.Error("NaN accepted")
	}
	if err := CheckFinite([]float32{1, float32(math.Inf(-1))}, 0, "g"); err == nil {
		t.Error("-Inf accepted")
	}
}

func TestNewMatrixRoundTrip(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	arr, dst, err := NewMatrix(mem, 3, 2, "out")
	if err != nil {
		t.Fatal(err)
	}
	for i := range dst {
		dst[i] = float32(i)
	}
	m, err := MatrixFromArray(arrow.Field{}, arr, "out")
	if err != nil || m.Data[5] != 5 {
		t.Fatal(m, err)
	}
	arr.Release()
	if _, _, err := NewMatrix(mem, 1<<20, 1<<20, "huge"); xerr.CodeOf(err) != xerr.StatusOutOfMemory {
		t.Fatalf("huge allocation not refused: %v", err)
	}
	f := TensorField("x", []int{1, 28, 28})
	var meta tensorMeta
	if err := json.Unmarshal([]byte(f.Metadata.Values()[1]), &meta); err != nil || meta.Shape[2] != 28 {
		t.Fatal(meta, err)
	}
}

// FuzzMatrixView builds fixed_size_list<float32> arrays from fuzzed geometry
// (list size, length, list and child offsets, a null position, extension
// metadata) and checks the import path: MatrixFromArray returns a view or an
// error, never panics, and a view is exactly the rows in the slice, read from the
// right place in the child buffer.
func FuzzMatrixView(f *testing.F) {
	f.Add(uint8(3), uint8(5), uint8(1), uint8(2), uint8(0), int16(-1), `{"shape":[3]}`)
	f.Add(uint8(4), uint8(2), uint8(0), uint8(0), uint8(1), int16(3), `{"shape":[2,2],"permutation":[0,1]}`)
	f.Add(uint8(1), uint8(0), uint8(0), uint8(0), uint8(0), int16(-1), ``)
	f.Fuzz(func(t *testing.T, cols, rows, listOff, childOff, useExt uint8, nullAt int16, meta string) {
		c := int(cols%16) + 1
		n := int(rows % 32)
		lo := int(listOff) % (n + 1)
		co := int(childOff % 8)
		total := co + n*c
		vals := make([]float32, total)
		valid := make([]bool, total)
		for i := range vals {
			vals[i] = float32(i)
			valid[i] = int(nullAt) != i
		}
		mem := memory.NewGoAllocator()
		fb := array.NewFloat32Builder(mem)
		fb.AppendValues(vals, valid)
		full := fb.NewArray()
		fb.Release()
		child := array.NewSlice(full, int64(co), int64(total))
		full.Release()
		data := array.NewData(arrow.FixedSizeListOf(int32(c), arrow.PrimitiveTypes.Float32), n,
			[]*memory.Buffer{nil}, []arrow.ArrayData{child.Data()}, 0, 0)
		child.Release()
		arr := array.MakeFromData(data)
		data.Release()
		defer arr.Release()
		sl := array.NewSlice(arr, int64(lo), int64(n))
		defer sl.Release()
		field := arrow.Field{}
		if useExt%2 == 1 {
			field.Metadata = arrow.NewMetadata([]string{ExtNameKey, ExtMetadataKey}, []string{FixedShapeTensor, meta})
		}
		m, err := MatrixFromArray(field, sl, "x")
		if err != nil {
			return
		}
		if m.Rows != n-lo || m.Cols != c || len(m.Data) != m.Rows*m.Cols {
			t.Fatalf("view %d×%d of %d values, want %d×%d", m.Rows, m.Cols, len(m.Data), n-lo, c)
		}
		for i, v := range m.Data {
			want := float32(co + lo*c + i)
			if v != want {
				t.Fatalf("value %d is %v, want %v", i, v, want)
			}
			if int(nullAt) == co+lo*c+i {
				t.Fatalf("null at %d accepted", i)
			}
		}
	})
}
