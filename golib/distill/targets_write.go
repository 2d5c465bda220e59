package distill

import (
	"cmp"
	"math"
	"os"
	"slices"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/exitnet/exitnet/golib/internal/fsx"
	"github.com/exitnet/exitnet/golib/xerr"
)

// Target file format (Arrow IPC file, one record batch, readable with pyarrow
// alone: pyarrow.ipc.open_file(pyarrow.memory_map(path))):
//
//	sample_id: int64, not null, strictly increasing
//	exit_0 … exit_<E−1>: fixed_size_list<item: float32 not null>[C], not null,
//	                     raw (temperature-free) logits of exit j for that sample
//	schema metadata: exitnet.kind=lwf_targets, exitnet.version=2,
//	                 exitnet.file_crc32=<checksum>, exitnet.format_version=1,
//	                 exitnet.num_exits=E, exitnet.num_classes=C, exitnet.logits=raw
//
// The container (checksum, metadata convention, limits) is specified in
// docs/file-format.md and implemented by golib/internal/fsx.
const (
	TargetsKind          = "lwf_targets"
	TargetsFormatVersion = 1
	metaKind             = fsx.MetaKind
	metaVersion          = "exitnet.format_version"
	metaExits            = "exitnet.num_exits"
	metaClasses          = "exitnet.num_classes"
	metaLogits           = "exitnet.logits"
	idColumn             = "sample_id"
)

// exitColumn is the column name of exit j.
func exitColumn(j int) string { return "exit_" + strconv.Itoa(j) }

// targetSchema is the schema of a target file with E exits of C classes.
func targetSchema(E, C int) *arrow.Schema {
	fields := make([]arrow.Field, 0, E+1)
	fields = append(fields, arrow.Field{Name: idColumn, Type: arrow.PrimitiveTypes.Int64})
	for j := 0; j < E; j++ {
		fields = append(fields, arrow.Field{Name: exitColumn(j), Type: fslType(C)})
	}
	md := arrow.NewMetadata(
		[]string{metaKind, fsx.MetaVersion, fsx.MetaChecksum, metaVersion, metaExits, metaClasses, metaLogits},
		[]string{TargetsKind, strconv.Itoa(fsx.ContainerVersion), fsx.ChecksumPlaceholder,
			strconv.Itoa(TargetsFormatVersion), strconv.Itoa(E), strconv.Itoa(C), "raw"})
	return arrow.NewSchema(fields, &md)
}

func fslType(C int) *arrow.FixedSizeListType {
	t := arrow.FixedSizeListOfNonNullable(int32(C), arrow.PrimitiveTypes.Float32)
	return t
}

// TargetWriter records the logits of several exits keyed by int64 sample ids,
// in chunks arriving in any order, and saves them as one Arrow IPC file.
// It is not safe for concurrent use (the C ABI serialises calls per handle).
type TargetWriter struct {
	numExits, numClasses int
	ids                  [][]int64   // per exit, in arrival order
	logits               [][]float32 // per exit, rows×C in arrival order
	seen                 []map[int64]struct{}
}

// NewTargetWriter returns a writer for numExits exits of numClasses classes each.
func NewTargetWriter(numExits, numClasses int) (*TargetWriter, error) {
	if numExits < 1 || numExits > 1<<16 {
		return nil, xerr.Invalid("num_exits: %d (must be in [1, 65536])", numExits)
	}
	if numClasses < 1 || numClasses > math.MaxInt32 {
		return nil, xerr.Invalid("num_classes: %d (must be ≥ 1)", numClasses)
	}
	w := &TargetWriter{numExits: numExits, numClasses: numClasses,
		ids: make([][]int64, numExits), logits: make([][]float32, numExits),
		seen: make([]map[int64]struct{}, numExits)}
	for j := range w.seen {
		w.seen[j] = map[int64]struct{}{}
	}
	return w, nil
}

// NumExits and NumClasses report the writer's shape.
func (w *TargetWriter) NumExits() int   { return w.numExits }
func (w *TargetWriter) NumClasses() int { return w.numClasses }

// NumRows returns how many samples have been recorded for exit j (0 for an out-of-range j).
func (w *TargetWriter) NumRows(j int) int {
	if j < 0 || j >= w.numExits {
		return 0
	}
	return len(w.ids[j])
}

// Add records a chunk for one exit: ids[i] is the sample id of row i of
// logits (len(ids)×C, row-major, raw logits). The chunk is validated as a
// whole (exit in range, shape, finite logits, no id recorded twice for this
// exit) and either recorded entirely or not at all. The data is copied.
func (w *TargetWriter) Add(exit int, ids []int64, logits []float32) error {
	if exit < 0 || exit >= w.numExits {
		return xerr.Invalid("exit: %d (the writer has exits 0..%d)", exit, w.numExits-1)
	}
	C := w.numClasses
	if len(logits) != len(ids)*C {
		return xerr.Invalid("logits: %d values, want len(ids)×num_classes = %d×%d", len(logits), len(ids), C)
	}
	for r := range ids {
		row := logits[r*C : (r+1)*C]
		if _, bad := kern.maxCheck(row); bad != 0 {
			return nonFinite("logits", row, r)
		}
	}
	seen := w.seen[exit]
	chunk := make(map[int64]struct{}, len(ids))
	for i, id := range ids {
		if _, dup := seen[id]; dup {
			return xerr.Invalid("ids: sample id %d (position %d) is already recorded for exit %d", id, i, exit)
		}
		if _, dup := chunk[id]; dup {
			return xerr.Invalid("ids: sample id %d appears twice in this chunk (position %d)", id, i)
		}
		chunk[id] = struct{}{}
	}
	for id := range chunk {
		seen[id] = struct{}{}
	}
	w.ids[exit] = append(w.ids[exit], ids...)
	w.logits[exit] = append(w.logits[exit], logits...)
	return nil
}

// checkCoverage verifies that every exit holds the same set of ids.
func (w *TargetWriter) checkCoverage() error {
	for j := 1; j < w.numExits; j++ {
		for _, id := range w.ids[0] {
			if _, ok := w.seen[j][id]; !ok {
				return xerr.State("exit %d: sample id %d (recorded for exit 0) is missing; every exit must cover the same ids", j, id)
			}
		}
		for _, id := range w.ids[j] {
			if _, ok := w.seen[0][id]; !ok {
				return xerr.State("exit 0: sample id %d (recorded for exit %d) is missing; every exit must cover the same ids", id, j)
			}
		}
	}
	return nil
}

// sortedOrder returns the permutation of exit j's rows that sorts them by id.
func (w *TargetWriter) sortedOrder(j int) []int32 {
	ids := w.ids[j]
	perm := make([]int32, len(ids))
	for i := range perm {
		perm[i] = int32(i)
	}
	slices.SortFunc(perm, func(a, b int32) int { return cmp.Compare(ids[a], ids[b]) })
	return perm
}

// record builds the single record batch of the file (Go-heap buffers; the
// IPC writer copies them into the file).
func (w *TargetWriter) record() arrow.RecordBatch {
	E, C := w.numExits, w.numClasses
	n := len(w.ids[0])
	cols := make([]arrow.Array, 0, E+1)
	sortedIDs := make([]int64, n)
	for i, p := range w.sortedOrder(0) {
		sortedIDs[i] = w.ids[0][p]
	}
	idData := array.NewData(arrow.PrimitiveTypes.Int64, n,
		[]*memory.Buffer{nil, memory.NewBufferBytes(arrow.Int64Traits.CastToBytes(sortedIDs))}, nil, 0, 0)
	cols = append(cols, array.MakeFromData(idData))
	idData.Release()
	for j := 0; j < E; j++ {
		vals := make([]float32, n*C)
		src := w.logits[j]
		for i, p := range w.sortedOrder(j) {
			copy(vals[i*C:(i+1)*C], src[int(p)*C:(int(p)+1)*C])
		}
		child := array.NewData(arrow.PrimitiveTypes.Float32, n*C,
			[]*memory.Buffer{nil, memory.NewBufferBytes(arrow.Float32Traits.CastToBytes(vals))}, nil, 0, 0)
		fsl := array.NewData(fslType(C), n, []*memory.Buffer{nil}, []arrow.ArrayData{child}, 0, 0)
		cols = append(cols, array.MakeFromData(fsl))
		child.Release()
		fsl.Release()
	}
	rec := array.NewRecordBatch(targetSchema(E, C), cols, int64(n))
	for _, c := range cols {
		c.Release()
	}
	return rec
}

// Save writes the recorded targets to path atomically: the file is written to
// a temporary file in the same directory, fsynced, then renamed over path
// (and the directory fsynced). On any failure the temporary file is removed
// and a previous file at path is left untouched. Every exit must cover the
// same set of sample ids (StatusInvalidState otherwise, naming the exit and a
// missing id). Rows are written sorted by sample id. The writer stays usable.
func (w *TargetWriter) Save(path string) error {
	if path == "" {
		return xerr.Invalid("path: empty")
	}
	if err := w.checkCoverage(); err != nil {
		return err
	}
	rec := w.record()
	defer rec.Release()
	return fsx.WriteSealed(path, func(f *os.File) error {
		fw, err := ipc.NewFileWriter(f, ipc.WithSchema(rec.Schema()), ipc.WithAllocator(memory.NewGoAllocator()))
		if err != nil {
			return err
		}
		if err := fw.Write(rec); err != nil {
			fw.Close()
			return err
		}
		return fw.Close()
	})
}
