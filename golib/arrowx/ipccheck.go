package arrowx

import (
	"encoding/binary"
	"fmt"
)

// Pre-validation of an Arrow IPC file footer before arrow-go parses it.
//
// arrow-go's schema decoder allocates slices sized by flatbuffer vector
// lengths (fields, children, custom_metadata) before reading them; a
// corrupted length there is an allocation of up to 2^32 elements, which
// aborts the process (out of memory cannot be recovered). CheckIPCFooter walks
// the footer's Footer → Schema → Field tables (Arrow's File.fbs/Schema.fbs)
// and verifies that every table, vtable, string and vector it reaches lies
// inside the footer bytes, so that every later allocation is bounded by the
// file size. Other corruption is left to arrow-go (its index panics are
// recovered by the readers).

// fb is a bounds-checked flatbuffer reader over one buffer.
type fb []byte

func (b fb) u32(pos int) (int, error) {
	if pos < 0 || pos+4 > len(b) {
		return 0, fmt.Errorf("offset %d out of range", pos)
	}
	return int(binary.LittleEndian.Uint32(b[pos:])), nil
}

// table checks the table at pos and its vtable and returns a field accessor:
// field(i) returns the absolute position of field i, or 0 if absent.
func (b fb) table(pos int) (func(i int) (int, error), error) {
	if pos < 0 || pos+4 > len(b) {
		return nil, fmt.Errorf("table at %d out of range", pos)
	}
	soff := int32(binary.LittleEndian.Uint32(b[pos:]))
	vt := pos - int(soff)
	if vt < 0 || vt+4 > len(b) {
		return nil, fmt.Errorf("vtable at %d out of range", vt)
	}
	vsize := int(binary.LittleEndian.Uint16(b[vt:]))
	tsize := int(binary.LittleEndian.Uint16(b[vt+2:]))
	if vsize < 4 || vsize%2 != 0 || vt+vsize > len(b) || pos+tsize > len(b) {
		return nil, fmt.Errorf("vtable at %d inconsistent", vt)
	}
	return func(i int) (int, error) {
		slot := 4 + 2*i
		if slot+2 > vsize {
			return 0, nil
		}
		fo := int(binary.LittleEndian.Uint16(b[vt+slot:]))
		if fo == 0 {
			return 0, nil
		}
		if fo >= tsize {
			return 0, fmt.Errorf("field %d outside its table", i)
		}
		return pos + fo, nil
	}, nil
}

// ref follows the uoffset stored at pos (a table, string or vector reference).
func (b fb) ref(pos int) (int, error) {
	off, err := b.u32(pos)
	if err != nil {
		return 0, err
	}
	return pos + off, nil
}

// vector checks the vector referenced at field position pos (elements of
// elemSize bytes) and returns the position of its first element and its length.
func (b fb) vector(pos, elemSize int) (start, n int, err error) {
	v, err := b.ref(pos)
	if err != nil {
		return 0, 0, err
	}
	n, err = b.u32(v)
	if err != nil {
		return 0, 0, err
	}
	if n > (len(b)-v-4)/elemSize {
		return 0, 0, fmt.Errorf("vector of %d elements at %d exceeds the buffer", n, v)
	}
	return v + 4, n, nil
}

// tables checks a vector of tables referenced at field position pos and calls
// each on every element's table position.
func (b fb) tables(pos int, each func(int) error) error {
	start, n, err := b.vector(pos, 4)
	if err != nil {
		return err
	}
	for k := 0; k < n; k++ {
		t, err := b.ref(start + 4*k)
		if err != nil {
			return err
		}
		if err := each(t); err != nil {
			return err
		}
	}
	return nil
}

// checkKeyValues checks custom_metadata: a vector of KeyValue{key, value: string}.
func (b fb) checkKeyValues(pos int) error {
	return b.tables(pos, func(t int) error {
		f, err := b.table(t)
		if err != nil {
			return err
		}
		for i := 0; i < 2; i++ {
			p, err := f(i)
			if err != nil {
				return err
			}
			if p != 0 {
				if _, _, err := b.vector(p, 1); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// checkField checks a Field table: name (0), children (5), custom_metadata (6).
func (b fb) checkField(t, depth int) error {
	if depth > 32 {
		return fmt.Errorf("fields nested deeper than 32 levels")
	}
	f, err := b.table(t)
	if err != nil {
		return err
	}
	if p, err := f(0); err != nil {
		return err
	} else if p != 0 {
		if _, _, err := b.vector(p, 1); err != nil {
			return err
		}
	}
	if p, err := f(5); err != nil {
		return err
	} else if p != 0 {
		if err := b.tables(p, func(c int) error { return b.checkField(c, depth+1) }); err != nil {
			return err
		}
	}
	if p, err := f(6); err != nil {
		return err
	} else if p != 0 {
		return b.checkKeyValues(p)
	}
	return nil
}

// CheckIPCFooter validates the footer flatbuffer of an Arrow IPC file (the whole
// file in data) before arrow-go parses it; see the comment at the top of this file.
// Every reader of untrusted IPC files in exitnet calls it first.
func CheckIPCFooter(data []byte) error {
	const eof = 10 // int32 footer size + "ARROW1"
	if len(data) < 8+eof {
		return fmt.Errorf("file too small")
	}
	size := int(binary.LittleEndian.Uint32(data[len(data)-eof:]))
	if size <= 0 || size > len(data)-8-eof {
		return fmt.Errorf("footer size %d inconsistent with the file size %d", size, len(data))
	}
	b := fb(data[len(data)-eof-size : len(data)-eof])
	root, err := b.ref(0)
	if err != nil {
		return err
	}
	footer, err := b.table(root)
	if err != nil {
		return err
	}
	for _, i := range []int{2, 3} { // dictionaries, recordBatches: vectors of 24-byte Block structs
		if p, err := footer(i); err != nil {
			return err
		} else if p != 0 {
			if _, _, err := b.vector(p, 24); err != nil {
				return err
			}
		}
	}
	sp, err := footer(1)
	if err != nil || sp == 0 {
		return fmt.Errorf("footer has no schema")
	}
	st, err := b.ref(sp)
	if err != nil {
		return err
	}
	schema, err := b.table(st)
	if err != nil {
		return err
	}
	if p, err := schema(1); err != nil {
		return err
	} else if p != 0 {
		if err := b.tables(p, func(t int) error { return b.checkField(t, 0) }); err != nil {
			return err
		}
	}
	if p, err := schema(2); err != nil {
		return err
	} else if p != 0 {
		if err := b.checkKeyValues(p); err != nil {
			return err
		}
	}
	if p, err := schema(3); err != nil { // features: vector of int64
		return err
	} else if p != 0 {
		if _, _, err := b.vector(p, 8); err != nil {
			return err
		}
	}
	return nil
}
