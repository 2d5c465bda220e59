package runtime

import (
	"bytes"
	"fmt"
	"os"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"gorgonia.org/tensor"

	"github.com/exitnet/exitnet/golib/arrowx"
	"github.com/exitnet/exitnet/golib/xerr"
)

// Model-file layout (one Arrow IPC file):
//
//	schema metadata  exitnet.kind           = "model"
//	                 exitnet.format_version = "1"
//	                 exitnet.graph          = JSON (Graph)
//	columns          name  utf8            weight name referenced by the graph
//	                 shape list<int32>     dimensions, row-major
//	                 data  list<float32>   prod(shape) values
//
// one row per weight tensor, in any number of record batches.
const (
	MetaKind          = "exitnet.kind"
	MetaFormatVersion = "exitnet.format_version"
	MetaGraph         = "exitnet.graph"
	KindModel         = "model"
)

const (
	maxFileBytes     = 1 << 32 // refuse larger model files
	maxWeightElems   = 1 << 28 // one tensor
	maxWeightDims    = 8
	maxGraphJSONSize = 16 << 20
)

// Load reads, validates and compiles a model file.
func Load(path string) (*Model, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, xerr.IO("path: %v", err)
	}
	if st.IsDir() {
		return nil, xerr.IO("path: %q is a directory", path)
	}
	if st.Size() > maxFileBytes {
		return nil, xerr.IO("path: %q has %d bytes, more than the %d a model file may have", path, st.Size(), int64(maxFileBytes))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, xerr.IO("path: %v", err)
	}
	m, err := Decode(data)
	if err != nil {
		return nil, xerr.Wrap(err, "%s", path)
	}
	return m, nil
}

// boundedAllocator refuses to hand out more than limit bytes in total, so a
// file that declares a huge (compressed) buffer fails instead of exhausting memory.
type boundedAllocator struct {
	mem   memory.Allocator
	used  int
	limit int
}

type errTooBig struct{ n int }

func (a *boundedAllocator) Allocate(n int) []byte {
	if n < 0 || a.used+n > a.limit {
		panic(errTooBig{n})
	}
	a.used += n
	return a.mem.Allocate(n)
}

func (a *boundedAllocator) Reallocate(n int, b []byte) []byte {
	if n < 0 || a.used-len(b)+n > a.limit {
		panic(errTooBig{n})
	}
	a.used += n - len(b)
	return a.mem.Reallocate(n, b)
}

func (a *boundedAllocator) Free(b []byte) { a.used -= len(b); a.mem.Free(b) }

// Decode validates and compiles a model file held in memory. Any structural
// problem is an error (StatusIO for a damaged file, StatusNotSupported for an
// unknown op or a newer format); it never panics on bad bytes.
func Decode(data []byte) (m *Model, err error) {
	defer func() {
		if r := recover(); r != nil {
			m = nil
			if e, ok := r.(errTooBig); ok {
				err = xerr.IO("model file: declares a %d-byte buffer, more than the file can hold", e.n)
				return
			}
			err = xerr.IO("model file: corrupted (%v)", r)
		}
	}()
	if len(data) > maxFileBytes {
		return nil, xerr.IO("model file: %d bytes, more than %d", len(data), int64(maxFileBytes))
	}
	if err := arrowx.CheckIPCFooter(data); err != nil {
		return nil, xerr.IO("model file: not a valid Arrow IPC file (%v)", err)
	}
	alloc := &boundedAllocator{mem: memory.NewGoAllocator(), limit: 2*len(data) + 1<<20}
	r, err := ipc.NewMappedFileReader(data, ipc.WithAllocator(alloc))
	if err != nil {
		return nil, xerr.IO("model file: not an Arrow IPC file (%v)", err)
	}
	defer r.Close()
	md := r.Schema().Metadata()
	get := func(k string) (string, bool) {
		i := md.FindKey(k)
		if i < 0 {
			return "", false
		}
		return md.Values()[i], true
	}
	if kind, ok := get(MetaKind); !ok || kind != KindModel {
		return nil, xerr.IO("model file: schema metadata %s = %q, want %q (not an exitnet model)", MetaKind, kind, KindModel)
	}
	ver, _ := get(MetaFormatVersion)
	if v, err := strconv.Atoi(ver); err != nil || v != FormatVersion {
		if err == nil && v > FormatVersion {
			return nil, xerr.NotSupported("model file: format_version %d is newer than this library's %d", v, FormatVersion)
		}
		return nil, xerr.IO("model file: format_version %q, want %d", ver, FormatVersion)
	}
	gjs, ok := get(MetaGraph)
	if !ok || len(gjs) > maxGraphJSONSize {
		return nil, xerr.IO("model file: schema metadata %s missing or larger than %d bytes", MetaGraph, maxGraphJSONSize)
	}
	g, err := parseGraph([]byte(gjs))
	if err != nil {
		return nil, err
	}
	weights, err := readWeights(r)
	if err != nil {
		return nil, err
	}
	return compile(g, weights)
}

func readWeights(r *ipc.FileReader) (map[string]*tensor.Dense, error) {
	sc := r.Schema()
	col := func(name string, want arrow.DataType) (int, error) {
		idx := sc.FieldIndices(name)
		if len(idx) != 1 {
			return 0, xerr.IO("model file: column %q missing or repeated", name)
		}
		if !arrow.TypeEqual(sc.Field(idx[0]).Type, want) {
			return 0, xerr.IO("model file: column %q has type %s, want %s", name, sc.Field(idx[0]).Type, want)
		}
		return idx[0], nil
	}
	iName, err := col("name", arrow.BinaryTypes.String)
	if err != nil {
		return nil, err
	}
	iShape, err := col("shape", arrow.ListOf(arrow.PrimitiveTypes.Int32))
	if err != nil {
		return nil, err
	}
	iData, err := col("data", arrow.ListOf(arrow.PrimitiveTypes.Float32))
	if err != nil {
		return nil, err
	}
	weights := map[string]*tensor.Dense{}
	for b := 0; b < r.NumRecords(); b++ {
		rec, err := r.RecordBatch(b)
		if err != nil {
			return nil, xerr.IO("model file: record batch %d: %v", b, err)
		}
		if err := array.ValidateRecordFull(rec); err != nil {
			return nil, xerr.IO("model file: record batch %d invalid: %v", b, err)
		}
		names := rec.Column(iName).(*array.String)
		shapes := rec.Column(iShape).(*array.List)
		datas := rec.Column(iData).(*array.List)
		shapeVals := shapes.ListValues().(*array.Int32)
		dataVals := datas.ListValues().(*array.Float32)
		for i := 0; i < int(rec.NumRows()); i++ {
			if names.IsNull(i) || shapes.IsNull(i) || datas.IsNull(i) {
				return nil, xerr.IO("model file: record batch %d row %d has a null", b, i)
			}
			name := names.Value(i)
			if _, dup := weights[name]; dup {
				return nil, xerr.IO("model file: weight %q appears twice", name)
			}
			s0, s1 := shapes.ValueOffsets(i)
			if s1-s0 < 1 || s1-s0 > maxWeightDims {
				return nil, xerr.IO("model file: weight %q has %d dimensions, want 1..%d", name, s1-s0, maxWeightDims)
			}
			dims := make([]int, 0, s1-s0)
			total := 1
			for j := s0; j < s1; j++ {
				d := int(shapeVals.Value(int(j)))
				if d < 1 || d > maxWeightElems || total*d > maxWeightElems {
					return nil, xerr.IO("model file: weight %q has shape entry %d (the tensor may have at most %d elements)", name, d, maxWeightElems)
				}
				total *= d
				dims = append(dims, d)
			}
			d0, d1 := datas.ValueOffsets(i)
			if int(d1-d0) != total {
				return nil, xerr.IO("model file: weight %q has %d values, shape %v needs %d", name, d1-d0, dims, total)
			}
			vals := make([]float32, total)
			copy(vals, dataVals.Float32Values()[d0:d1])
			if dataVals.NullN() > 0 {
				for j := d0; j < d1; j++ {
					if dataVals.IsNull(int(j)) {
						return nil, xerr.IO("model file: weight %q has a null value", name)
					}
				}
			}
			for j, v := range vals {
				if v != v || v > 3.4e38 || v < -3.4e38 {
					return nil, xerr.IO("model file: weight %q value %d is not finite", name, j)
				}
			}
			weights[name] = tensor.New(tensor.WithShape(dims...), tensor.WithBacking(vals))
		}
	}
	return weights, nil
}

// Encode writes a model file: g as the graph and weights (name → shape, data)
// as rows, in the given name order. Used by tests; Python writes the same layout
// with pyarrow (exitnet.torch.export).
func Encode(g *Graph, names []string, shapes [][]int, data [][]float32) ([]byte, error) {
	js, err := jsonMarshal(g)
	if err != nil {
		return nil, err
	}
	md := arrow.NewMetadata([]string{MetaKind, MetaFormatVersion, MetaGraph},
		[]string{KindModel, strconv.Itoa(FormatVersion), string(js)})
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "name", Type: arrow.BinaryTypes.String},
		{Name: "shape", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32)},
		{Name: "data", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32)},
	}, &md)
	mem := memory.NewGoAllocator()
	bld := array.NewRecordBuilder(mem, sc)
	defer bld.Release()
	nb := bld.Field(0).(*array.StringBuilder)
	sb := bld.Field(1).(*array.ListBuilder)
	db := bld.Field(2).(*array.ListBuilder)
	for i, n := range names {
		nb.Append(n)
		sb.Append(true)
		for _, d := range shapes[i] {
			sb.ValueBuilder().(*array.Int32Builder).Append(int32(d))
		}
		db.Append(true)
		db.ValueBuilder().(*array.Float32Builder).AppendValues(data[i], nil)
	}
	rec := bld.NewRecordBatch()
	defer rec.Release()
	var buf bytes.Buffer
	w, err := ipc.NewFileWriter(&buf, ipc.WithSchema(sc), ipc.WithAllocator(mem))
	if err != nil {
		return nil, fmt.Errorf("model file: %w", err)
	}
	if err := w.Write(rec); err != nil {
		return nil, fmt.Errorf("model file: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("model file: %w", err)
	}
	return buf.Bytes(), nil
}
