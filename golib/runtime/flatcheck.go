package runtime

import (
	"encoding/binary"

	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/exitnet/exitnet/golib/xerr"
)

// checkFooter bounds every vector length in an Arrow IPC file's footer and
// schema before arrow-go reads them: arrow-go allocates slices of the declared
// lengths (e.g. make([]Field, FieldsLength())), so one corrupted length would
// be a fatal out-of-memory instead of an error. A vector of n tables or
// offsets takes at least 4n bytes, so n·4 must fit in the footer.
//
// Layout (Arrow File.fbs / Schema.fbs vtable slots):
//
//	file    = "ARROW1" pad … footer, int32 footer length, "ARROW1"
//	Footer  { version 4, schema 6, dictionaries 8, recordBatches 10, custom_metadata 12 }
//	Schema  { endianness 4, fields 6, custom_metadata 8, features 10 }
//	Field   { name 4, nullable 6, type_type 8, type 10, dictionary 12, children 14, custom_metadata 16 }
//
// Out-of-range offsets panic inside flatbuffers; Decode recovers them.
func checkFooter(data []byte) error {
	const magic = "ARROW1"
	if len(data) < 2*len(magic)+4 || string(data[len(data)-len(magic):]) != magic {
		return xerr.IO("model file: not an Arrow IPC file (no trailing ARROW1 magic)")
	}
	flen := int(int32(binary.LittleEndian.Uint32(data[len(data)-len(magic)-4:])))
	end := len(data) - len(magic) - 4
	if flen <= 0 || flen > end {
		return xerr.IO("model file: footer length %d outside the file", flen)
	}
	buf := data[end-flen : end]
	limit := len(buf) / 4
	vec := func(t *flatbuffers.Table, slot flatbuffers.VOffsetT, what string) (int, flatbuffers.UOffsetT, error) {
		o := flatbuffers.UOffsetT(t.Offset(slot))
		if o == 0 {
			return 0, 0, nil
		}
		n := t.VectorLen(o)
		if n < 0 || n > limit {
			return 0, 0, xerr.IO("model file: footer declares %d %s, more than it can hold", n, what)
		}
		return n, t.Vector(o), nil
	}
	var field func(t *flatbuffers.Table, depth int) error
	field = func(t *flatbuffers.Table, depth int) error {
		if depth > 64 {
			return xerr.IO("model file: schema nested deeper than 64")
		}
		if _, _, err := vec(t, 16, "field metadata entries"); err != nil {
			return err
		}
		n, start, err := vec(t, 14, "child fields")
		if err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			c := &flatbuffers.Table{Bytes: buf, Pos: t.Indirect(start + flatbuffers.UOffsetT(i*4))}
			if err := field(c, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	footer := &flatbuffers.Table{Bytes: buf, Pos: flatbuffers.GetUOffsetT(buf)}
	for _, s := range []struct {
		slot flatbuffers.VOffsetT
		what string
	}{{8, "dictionary blocks"}, {10, "record batch blocks"}, {12, "footer metadata entries"}} {
		if _, _, err := vec(footer, s.slot, s.what); err != nil {
			return err
		}
	}
	so := flatbuffers.UOffsetT(footer.Offset(6))
	if so == 0 {
		return xerr.IO("model file: footer has no schema")
	}
	schema := &flatbuffers.Table{Bytes: buf, Pos: footer.Indirect(footer.Pos + so)}
	if _, _, err := vec(schema, 8, "schema metadata entries"); err != nil {
		return err
	}
	if _, _, err := vec(schema, 10, "schema features"); err != nil {
		return err
	}
	n, start, err := vec(schema, 6, "fields")
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		f := &flatbuffers.Table{Bytes: buf, Pos: schema.Indirect(start + flatbuffers.UOffsetT(i*4))}
		if err := field(f, 0); err != nil {
			return err
		}
	}
	return nil
}
