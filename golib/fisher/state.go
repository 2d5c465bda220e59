package fisher

import (
	"encoding/json"
	"math"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/exitnet/exitnet/golib/internal/fsx"
	"github.com/exitnet/exitnet/golib/memx"
	"github.com/exitnet/exitnet/golib/xerr"
)

// State is everything EWC needs between stages: one Fisher per exit (or one
// consolidated Fisher), one anchor θ* per stage, and free-form metadata
// (sample counts, label mode, granularity, normalisation, λ...). Every buffer
// has Layout.Size() elements.
//
// On disk it is one Arrow IPC file holding one record batch with Layout.Size()
// rows and float32 columns "fisher/0".."fisher/K-1", "anchor/0".."anchor/M-1"
// (and an optional float64 column "sums", see Sums); the schema metadata holds
//
//	exitnet.kind            "fisher_state"  (container version 1: exitnet.format)
//	exitnet.version         "2" (the container version, docs/file-format.md)
//	exitnet.file_crc32      whole-file checksum (container version 1: a CRC-32C
//	                        in exitnet.file_crc32c, still verified when read)
//	exitnet.format_version  "1"
//	exitnet.layout          JSON [{"name": ..., "shape": [...]}, ...]
//	exitnet.meta            JSON object of strings (by convention each value is
//	                        itself a JSON text: "\"exact\"", "1000")
//
// The container (regular files only, size limits, checksum verified before
// any Arrow parsing, decoded buffers bounded by the layout's declared sizes)
// is golib/internal/fsx. The checksum guards against accidents, not forgery;
// the values are then validated (types, lengths, no nulls, Fishers finite and
// >= 0, anchors finite).
type State struct {
	Layout  *Layout
	Fishers [][]float32
	Anchors [][]float32
	Meta    map[string]string
	// Sums, when not nil, are an accumulator's raw float64 sums (column "sums",
	// last), written by Accumulator.Save so LoadAccumulator restores it exactly.
	Sums []float64
}

const (
	// StateKind is the exitnet.kind of state and accumulator files.
	StateKind    = "fisher_state"
	stateVersion = "1"
)

type jsonParam struct {
	Name  string `json:"name"`
	Shape []int  `json:"shape"`
}

func f32bytes(x []float32) []byte {
	if len(x) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&x[0])), 4*len(x))
}

// Validate checks buffer lengths and values: Fishers finite and ≥ 0, anchors finite.
func (s *State) Validate() error {
	if s.Layout == nil {
		return xerr.Invalid("layout: nil")
	}
	p := s.Layout.Size()
	for k, f := range s.Fishers {
		if len(f) != p {
			return xerr.Invalid("fishers: Fisher %d has %d elements, layout has %d", k, len(f), p)
		}
		for i, v := range f {
			if !(v >= 0) || v-v != 0 {
				return xerr.Invalid("fishers: Fisher %d element %d is %v; must be finite and >= 0", k, i, v)
			}
		}
	}
	if s.Sums != nil {
		if len(s.Sums) != p {
			return xerr.Invalid("sums: %d elements, layout has %d", len(s.Sums), p)
		}
		for i, v := range s.Sums {
			if !(v >= 0) || math.IsInf(v, 1) {
				return xerr.Invalid("sums: element %d is %v; must be finite and >= 0", i, v)
			}
		}
	}
	for k, a := range s.Anchors {
		if len(a) != p {
			return xerr.Invalid("anchors: anchor %d has %d elements, layout has %d", k, len(a), p)
		}
		if i := firstNonFinite32(a); i >= 0 {
			return xerr.Invalid("anchors: anchor %d element %d is %v; must be finite", k, i, a[i])
		}
	}
	return nil
}

// Record builds the Arrow record of the state (zero-copy over the buffers; the
// record must not outlive them) with the schema metadata described on State.
func (s *State) Record() (arrow.RecordBatch, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	params := make([]jsonParam, s.Layout.Len())
	for i := range params {
		p := s.Layout.Param(i)
		params[i] = jsonParam{Name: p.Name, Shape: append([]int{}, p.Shape...)}
	}
	lj, _ := json.Marshal(params)
	meta := s.Meta
	if meta == nil {
		meta = map[string]string{}
	}
	for k, v := range meta {
		if strings.Contains(k, fsx.ChecksumMarker) || strings.Contains(v, fsx.ChecksumMarker) {
			return nil, xerr.Invalid("meta: %q may not contain %q", k, fsx.ChecksumMarker)
		}
	}
	mj, _ := json.Marshal(meta)
	var fields []arrow.Field
	var cols []arrow.Array
	add := func(name string, x []float32) {
		fields = append(fields, arrow.Field{Name: name, Type: arrow.PrimitiveTypes.Float32})
		data := array.NewData(arrow.PrimitiveTypes.Float32, len(x),
			[]*memory.Buffer{nil, memory.NewBufferBytes(f32bytes(x))}, nil, 0, 0)
		cols = append(cols, array.MakeFromData(data))
		data.Release()
	}
	for k, f := range s.Fishers {
		add("fisher/"+strconv.Itoa(k), f)
	}
	for k, a := range s.Anchors {
		add("anchor/"+strconv.Itoa(k), a)
	}
	if s.Sums != nil {
		fields = append(fields, arrow.Field{Name: "sums", Type: arrow.PrimitiveTypes.Float64})
		var b []byte
		if len(s.Sums) > 0 {
			b = unsafe.Slice((*byte)(unsafe.Pointer(&s.Sums[0])), 8*len(s.Sums))
		}
		data := array.NewData(arrow.PrimitiveTypes.Float64, len(s.Sums),
			[]*memory.Buffer{nil, memory.NewBufferBytes(b)}, nil, 0, 0)
		cols = append(cols, array.MakeFromData(data))
		data.Release()
	}
	md := arrow.NewMetadata(
		[]string{fsx.MetaKind, fsx.MetaVersion, fsx.MetaChecksum, "exitnet.format_version", "exitnet.layout", "exitnet.meta"},
		[]string{StateKind, strconv.Itoa(fsx.ContainerVersion), fsx.ChecksumPlaceholder, stateVersion, string(lj), string(mj)})
	schema := arrow.NewSchema(fields, &md)
	rec := array.NewRecordBatch(schema, cols, int64(s.Layout.Size()))
	for _, c := range cols {
		c.Release()
	}
	return rec, nil
}

// SaveState writes the state to path atomically: a temporary file in the same
// directory is written, sealed (whole-file checksum), fsynced and renamed over
// path (then the directory is fsynced). A failed save leaves any previous file
// at path intact.
func SaveState(path string, s *State) (err error) {
	rec, err := s.Record()
	if err != nil {
		return err
	}
	defer rec.Release()
	return fsx.WriteSealed(path, func(f *os.File) error {
		w, err := ipc.NewFileWriter(f, ipc.WithSchema(rec.Schema()))
		if err != nil {
			return err
		}
		if err := w.Write(rec); err != nil {
			w.Close()
			return err
		}
		return w.Close()
	})
}

// maxStateFileBytes bounds a state file (it is read into memory, which the
// memory limit bounds too).
const maxStateFileBytes = 1 << 40

// LoadState reads and fully validates a state file written by SaveState. A
// missing, truncated or corrupted file gives an IO error (never a panic); only
// regular files are read (golib/internal/fsx).
func LoadState(path string) (*State, error) {
	data, err := fsx.ReadFile(path, "Fisher state", maxStateFileBytes)
	if err != nil {
		return nil, err
	}
	s, err := DecodeState(data)
	if err != nil {
		return nil, xerr.Wrap(err, "path: %q", path)
	}
	return s, nil
}

// DecodeState parses and validates the bytes of a state file. The returned
// buffers alias data.
func DecodeState(data []byte) (s *State, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fsx.Recovered("state file", r)
		}
	}()
	c, err := fsx.Open(data, StateKind, fsx.DecodeBound(len(data)))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	rd := c.Reader
	schema := rd.Schema()
	get := func(k string) (string, error) {
		v, ok := c.Meta[k]
		if !ok {
			return "", xerr.IO("not an exitnet Fisher state: metadata key %q missing", k)
		}
		return v, nil
	}
	if v, err := get("exitnet.format_version"); err != nil || v != stateVersion {
		return nil, xerr.IO("unsupported Fisher state version %q", v)
	}
	lj, err := get("exitnet.layout")
	if err != nil {
		return nil, err
	}
	var jp []jsonParam
	if err := json.Unmarshal([]byte(lj), &jp); err != nil {
		return nil, xerr.IO("corrupted layout metadata: %v", err)
	}
	params := make([]Param, len(jp))
	for i, p := range jp {
		params[i] = Param{Name: p.Name, Shape: p.Shape}
	}
	layout, err := NewLayout(params)
	if err != nil {
		return nil, xerr.IO("corrupted layout metadata: %v", err)
	}
	mj, err := get("exitnet.meta")
	if err != nil {
		return nil, err
	}
	meta := map[string]string{}
	if err := json.Unmarshal([]byte(mj), &meta); err != nil {
		return nil, xerr.IO("corrupted meta metadata: %v", err)
	}
	// The layout declares every buffer: len(fields) columns of P values of at
	// most 8 bytes. Decoded (decompressed) buffers may not exceed that.
	declared, err := memx.Bytes("state file", len(schema.Fields())+1, 8*layout.Size())
	if err != nil {
		return nil, err
	}
	c.Alloc.Tighten(int64(declared) + 1<<20)
	if rd.NumRecords() != 1 {
		return nil, xerr.IO("expected 1 record batch, found %d", rd.NumRecords())
	}
	rec, err := rd.RecordBatch(0)
	if err != nil {
		return nil, fsx.BatchError("state file", err)
	}
	if rec.NumRows() != int64(layout.Size()) {
		return nil, xerr.IO("%d rows, the layout has %d elements", rec.NumRows(), layout.Size())
	}
	s = &State{Layout: layout, Meta: meta}
	nf := 0
	for i, f := range schema.Fields() {
		col := rec.Column(i)
		if f.Name == "sums" && i == len(schema.Fields())-1 && s.Sums == nil {
			sc, ok := col.(*array.Float64)
			if !ok || sc.NullN() != 0 || sc.Len() != layout.Size() {
				return nil, xerr.IO("column \"sums\" must be %d non-null float64 values", layout.Size())
			}
			s.Sums = append([]float64{}, sc.Float64Values()...)
			continue
		}
		if f.Type.ID() != arrow.FLOAT32 {
			return nil, xerr.IO("column %q has type %s, want float", f.Name, f.Type)
		}
		if col.NullN() != 0 {
			return nil, xerr.IO("column %q has nulls", f.Name)
		}
		vals := col.(*array.Float32).Float32Values()
		if len(vals) != layout.Size() {
			return nil, xerr.IO("column %q has %d values, want %d", f.Name, len(vals), layout.Size())
		}
		vals = append([]float32(nil), vals...) // own the memory; rec is released with the reader
		switch {
		case f.Name == "fisher/"+strconv.Itoa(nf) && len(s.Anchors) == 0:
			s.Fishers = append(s.Fishers, vals)
			nf++
		case f.Name == "anchor/"+strconv.Itoa(len(s.Anchors)):
			s.Anchors = append(s.Anchors, vals)
		default:
			return nil, xerr.IO("unexpected column %q", f.Name)
		}
	}
	if err := s.Validate(); err != nil {
		return nil, xerr.IO("invalid values: %v", err)
	}
	return s, nil
}
