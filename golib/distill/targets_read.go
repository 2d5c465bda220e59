package distill

import (
	"runtime/debug"
	"slices"
	"strconv"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/exitnet/exitnet/golib/internal/fsx"
	"github.com/exitnet/exitnet/golib/xerr"
)

// Targets is an opened target file (see TargetWriter for the format): a
// read-only, memory-mapped view validated at open. Gather may be called from
// any number of goroutines at once; Close waits for running Gathers and makes
// later calls fail with StatusInvalidState.
type Targets struct {
	mu         sync.RWMutex
	closed     bool
	unmap      func() error
	path       string
	ids        []int64     // strictly increasing, views into the file
	exits      [][]float32 // per exit, rows×C, views into the file
	numClasses int
	dense      bool // ids[i] == ids[0] + i for all i
}

// maxTargetFileBytes bounds the size of a target file (it is mapped, not read).
const maxTargetFileBytes = 1 << 42

// OpenTargets opens and validates a target file written by TargetWriter.Save
// (or any writer producing the same schema). The file is memory-mapped where
// the platform allows (read into memory otherwise). Everything is checked
// before use: Arrow magic and structure, schema and metadata, one record
// batch, no nulls, lengths, strictly increasing ids and finite logits. Any
// failure, including a truncated or corrupted file, is a StatusIO error.
// Only regular files are opened (a FIFO or /dev/zero is refused without
// blocking), the whole-file checksum is verified before parsing, and decoded
// buffers (compressed bodies) are bounded in total (golib/internal/fsx).
func OpenTargets(path string) (*Targets, error) {
	data, unmap, err := fsx.MapFile(path, "target", maxTargetFileBytes)
	if err != nil {
		return nil, err
	}
	t, err := parseTargets(data)
	if err != nil {
		unmap()
		return nil, xerr.Wrap(err, "path: %q", path)
	}
	t.unmap, t.path = unmap, path
	return t, nil
}

// parseTargets validates data and builds the views; a panic inside the Arrow
// reader on corrupted bytes is turned into an IO error.
func parseTargets(data []byte) (t *Targets, err error) {
	// A fault on the mapping (file truncated under us: SIGBUS) becomes a panic here.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fsx.Recovered("target file", r)
		}
	}()
	c, err := fsx.Open(data, TargetsKind, fsx.DecodeBound(len(data)))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	rd := c.Reader
	sc := rd.Schema()
	E, C, err := checkTargetSchema(sc)
	if err != nil {
		return nil, err
	}
	if rd.NumRecords() != 1 {
		return nil, xerr.IO("target file holds %d record batches, want exactly 1", rd.NumRecords())
	}
	rec, err := rd.RecordBatch(0)
	if err != nil {
		return nil, fsx.BatchError("target file", err)
	}
	// rec is owned by the reader (released by rd.Close); the views below
	// point into data, which the caller keeps mapped.
	if !rec.Schema().Equal(sc) || int(rec.NumCols()) != E+1 {
		return nil, xerr.IO("record batch schema differs from the file schema")
	}
	n := int(rec.NumRows())
	t = &Targets{numClasses: C, exits: make([][]float32, E)}
	idArr, ok := rec.Column(0).(*array.Int64)
	if !ok || idArr.Len() != n || idArr.NullN() != 0 {
		return nil, xerr.IO("column %s: want %d non-null int64 values", idColumn, n)
	}
	t.ids = idArr.Int64Values()
	if len(t.ids) != n {
		return nil, xerr.IO("column %s: %d values, want %d", idColumn, len(t.ids), n)
	}
	for i := 1; i < n; i++ {
		if t.ids[i] <= t.ids[i-1] {
			return nil, xerr.IO("column %s: not strictly increasing at row %d (%d after %d)", idColumn, i, t.ids[i], t.ids[i-1])
		}
	}
	t.dense = n == 0 || t.ids[n-1]-t.ids[0] == int64(n-1)
	for j := 0; j < E; j++ {
		name := exitColumn(j)
		fsl, ok := rec.Column(j + 1).(*array.FixedSizeList)
		if !ok || fsl.Len() != n || fsl.NullN() != 0 {
			return nil, xerr.IO("column %s: want %d non-null fixed_size_list values", name, n)
		}
		child, ok := fsl.ListValues().(*array.Float32)
		if !ok || child.NullN() != 0 {
			return nil, xerr.IO("column %s: values must be non-null float32", name)
		}
		all := child.Float32Values()
		off := fsl.Data().Offset()
		if off < 0 || (off+n)*C > len(all) {
			return nil, xerr.IO("column %s: %d values, want at least %d", name, len(all), (off+n)*C)
		}
		vals := all[off*C : (off+n)*C]
		for r := 0; r < n; r++ {
			if _, bad := kern.maxCheck(vals[r*C : (r+1)*C]); bad != 0 {
				return nil, xerr.IO("column %s: row %d (sample id %d) holds a non-finite logit", name, r, t.ids[r])
			}
		}
		t.exits[j] = vals
	}
	return t, nil
}

// checkTargetSchema validates the schema and metadata and returns E and C.
func checkTargetSchema(sc *arrow.Schema) (E, C int, err error) {
	md := sc.Metadata()
	get := func(k string) string {
		if i := md.FindKey(k); i >= 0 {
			return md.Values()[i]
		}
		return ""
	}
	if get(metaKind) != TargetsKind {
		return 0, 0, xerr.IO("not an LwF target file (metadata %s = %q, want %q)", metaKind, get(metaKind), TargetsKind)
	}
	if v := get(metaVersion); v != strconv.Itoa(TargetsFormatVersion) {
		return 0, 0, xerr.IO("unsupported target file format version %q (this build reads %d)", v, TargetsFormatVersion)
	}
	if get(metaLogits) != "raw" {
		return 0, 0, xerr.IO("metadata %s = %q, want \"raw\"", metaLogits, get(metaLogits))
	}
	E, err1 := strconv.Atoi(get(metaExits))
	C, err2 := strconv.Atoi(get(metaClasses))
	if err1 != nil || err2 != nil || E < 1 || E > 1<<16 || C < 1 || C > 1<<30 {
		return 0, 0, xerr.IO("metadata %s=%q, %s=%q are not valid counts", metaExits, get(metaExits), metaClasses, get(metaClasses))
	}
	if sc.NumFields() != E+1 {
		return 0, 0, xerr.IO("schema has %d fields, want %d (sample_id + %d exits)", sc.NumFields(), E+1, E)
	}
	if f := sc.Field(0); f.Name != idColumn || f.Type.ID() != arrow.INT64 {
		return 0, 0, xerr.IO("field 0 is %s: %s, want %s: int64", f.Name, f.Type, idColumn)
	}
	for j := 0; j < E; j++ {
		f := sc.Field(j + 1)
		ft, ok := f.Type.(*arrow.FixedSizeListType)
		if f.Name != exitColumn(j) || !ok || int(ft.Len()) != C || ft.Elem().ID() != arrow.FLOAT32 {
			return 0, 0, xerr.IO("field %d is %s: %s, want %s: fixed_size_list<float32>[%d]", j+1, f.Name, f.Type, exitColumn(j), C)
		}
	}
	return E, C, nil
}

// NumRows, NumExits and NumClasses report the file's shape.
func (t *Targets) NumRows() int    { return len(t.ids) }
func (t *Targets) NumExits() int   { return len(t.exits) }
func (t *Targets) NumClasses() int { return t.numClasses }

// IDs returns a copy of the sorted sample ids.
func (t *Targets) IDs() []int64 { return slices.Clone(t.ids) }

// row returns the row index of id, or -1.
func (t *Targets) row(id int64) int {
	n := len(t.ids)
	if n == 0 {
		return -1
	}
	if t.dense {
		if d := id - t.ids[0]; id >= t.ids[0] && d < int64(n) {
			return int(d)
		}
		return -1
	}
	if i, ok := slices.BinarySearch(t.ids, id); ok {
		return i
	}
	return -1
}

// Gather copies the recorded logits of exit for each id into dst
// (len(ids)×C, row-major). An id absent from the file is a StatusNotFound
// error naming it (dst is then partially written).
func (t *Targets) Gather(dst []float32, ids []int64, exit int) (err error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	// The file was validated at open; a fault now means it was truncated
	// under the mapping by another process (SIGBUS): report it, do not crash.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = xerr.IO("targets: %q changed on disk while mapped (%v)", t.path, r)
		}
	}()
	if t.closed {
		return xerr.State("targets: already closed")
	}
	if exit < 0 || exit >= len(t.exits) {
		return xerr.Invalid("exit: %d (the file has exits 0..%d)", exit, len(t.exits)-1)
	}
	C := t.numClasses
	if len(dst) != len(ids)*C {
		return xerr.Invalid("dst: %d values, want len(ids)×num_classes = %d×%d", len(dst), len(ids), C)
	}
	src := t.exits[exit]
	for i, id := range ids {
		r := t.row(id)
		if r < 0 {
			return xerr.NotFound("ids: sample id %d (position %d) is not in the target file", id, i)
		}
		copy(dst[i*C:(i+1)*C], src[r*C:(r+1)*C])
	}
	return nil
}

// Close unmaps the file. It waits for running Gathers; later calls fail.
// Closing twice is a no-op.
func (t *Targets) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	t.ids, t.exits = nil, nil
	if t.unmap != nil {
		if err := t.unmap(); err != nil {
			return xerr.IO("targets: unmapping %q: %v", t.path, err)
		}
	}
	return nil
}
