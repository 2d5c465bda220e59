package runtime

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"gorgonia.org/tensor"

	"github.com/exitnet/exitnet/golib/internal/fsx"
	"github.com/exitnet/exitnet/golib/xerr"
)

// Model-file layout (one Arrow IPC file):
//
//	schema metadata  exitnet.kind           = "model"
//	                 exitnet.version        = "2" (container; docs/file-format.md)
//	                 exitnet.file_crc32     = whole-file checksum (fsx.Seal)
//	                 exitnet.format_version = "2" (graph; "1" still read)
//	                 exitnet.graph          = JSON (Graph)
//	columns          name  utf8            weight name referenced by the graph
//	                 shape list<int32>     dimensions, row-major
//	                 data  list<float32>   prod(shape) values
//
// one row per weight tensor, in any number of record batches.
const (
	MetaKind          = fsx.MetaKind
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

// Load reads, validates and compiles a model file. Only a regular file of at
// most maxFileBytes is read (a FIFO or /dev/zero is refused without blocking;
// golib/internal/fsx).
func Load(path string) (*Model, error) {
	data, err := fsx.ReadFile(path, "model", maxFileBytes)
	if err != nil {
		return nil, err
	}
	m, err := Decode(data)
	if err != nil {
		return nil, xerr.Wrap(err, "%s", path)
	}
	return m, nil
}

// Decode validates and compiles a model file held in memory. Any structural
// problem is an error (StatusIO for a damaged file, StatusNotSupported for an
// unknown op or a newer format); it never panics on bad bytes. The container
// (checksum, metadata convention, bounded allocator) is checked by fsx.Open.
func Decode(data []byte) (m *Model, err error) {
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fsx.Recovered("model file", r)
		}
	}()
	if len(data) > maxFileBytes {
		return nil, xerr.IO("model file: %d bytes, more than %d", len(data), int64(maxFileBytes))
	}
	c, err := fsx.Open(data, KindModel, fsx.DecodeBound(len(data)))
	if err != nil {
		return nil, xerr.Wrap(err, "model file")
	}
	defer c.Close()
	r := c.Reader
	get := func(k string) (string, bool) {
		v, ok := c.Meta[k]
		return v, ok
	}
	ver, _ := get(MetaFormatVersion)
	gjs, ok := get(MetaGraph)
	v, verr := strconv.Atoi(ver)
	if verr != nil || v < 1 || v > FormatVersion {
		if verr == nil && v > FormatVersion {
			return nil, versionError(v, graphProducer(gjs))
		}
		return nil, xerr.IO("model file: format_version %q is not a version this library reads (%v)", ver, ReadableVersions)
	}
	if !ok || len(gjs) > maxGraphJSONSize {
		return nil, xerr.IO("model file: schema metadata %s missing or larger than %d bytes", MetaGraph, maxGraphJSONSize)
	}
	g, err := parseGraph([]byte(gjs), v)
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
			return nil, fsx.BatchError(fmt.Sprintf("model file: record batch %d", b), err)
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
// with pyarrow (exitnet.torch.export). g is a *Graph (format 2) or a *GraphV1.
func Encode(g any, names []string, shapes [][]int, data [][]float32) ([]byte, error) {
	js, err := jsonMarshal(g)
	if err != nil {
		return nil, err
	}
	ver := FormatVersion
	if _, v1 := g.(*GraphV1); v1 {
		ver = 1
	}
	md := arrow.NewMetadata([]string{MetaKind, fsx.MetaVersion, fsx.MetaChecksum, MetaFormatVersion, MetaGraph},
		[]string{KindModel, strconv.Itoa(fsx.ContainerVersion), fsx.ChecksumPlaceholder, strconv.Itoa(ver), string(js)})
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
	if err := fsx.Seal(buf.Bytes()); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
