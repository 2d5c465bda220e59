package distill

import (
	"math"
	"sync"

	"github.com/exitnet/exitnet/golib/par"
	"github.com/exitnet/exitnet/golib/xerr"
)

// ParallelMinElems is the batch size (rows·cols) from which SoftTargets and
// KDLoss split rows across par.Threads() workers. Below it a call runs on the
// calling goroutine only.
var ParallelMinElems = 1 << 16

// blockRows is the fixed row block whose partial sums are added in order, so
// that the loss does not depend on the number of threads.
const blockRows = 64

// checkTemperature validates T and returns 1/T in float32.
func checkTemperature(T float64) (float32, error) {
	inv := float32(1 / T)
	if !(T > 0) || math.IsInf(T, 0) || math.IsInf(float64(inv), 0) || inv == 0 {
		return 0, xerr.Invalid("temperature: %g (must be finite and > 0, with 1/T representable in float32)", T)
	}
	return inv, nil
}

// checkShape validates rows, cols and the length of a flat rows×cols slice.
func checkShape(name string, n, rows, cols int) error {
	if rows < 0 || cols < 1 {
		return xerr.Invalid("%s: shape %d×%d (need rows ≥ 0 and cols ≥ 1)", name, rows, cols)
	}
	if rows > math.MaxInt/cols || n != rows*cols {
		return xerr.Invalid("%s: %d values, want rows×cols = %d×%d", name, n, rows, cols)
	}
	return nil
}

// nonFinite returns the error for the first non-finite value of a row.
func nonFinite(name string, row []float32, r int) error {
	for j, v := range row {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return xerr.Invalid("%s: row %d, column %d is %g (logits must be finite)", name, r, j, v)
		}
	}
	return xerr.Invalid("%s: row %d has a non-finite value", name, r) // unreachable when maxCheck flagged it
}

// forBlocks runs fn over fixed row blocks, in parallel for large batches, and
// returns the error of the lowest failing block.
func forBlocks(rows, cols int, fn func(b, lo, hi int) error) error {
	nb := (rows + blockRows - 1) / blockRows
	errs := make([]error, nb)
	grain := 1
	if rows*cols < ParallelMinElems {
		grain = nb
	} else if g := ParallelMinElems / (blockRows * cols); g > 1 {
		grain = g
	}
	par.For(nb, grain, func(blo, bhi int) {
		for b := blo; b < bhi; b++ {
			lo, hi := b*blockRows, min((b+1)*blockRows, rows)
			if errs[b] = fn(b, lo, hi); errs[b] != nil {
				return
			}
		}
	})
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// SoftTargets writes dst = softmax(logits/T) row by row (see the package doc).
// dst and logits are rows×cols row-major; dst may be the same slice as logits.
// rows == 0 is a no-op.
func SoftTargets(dst, logits []float32, rows, cols int, T float64) error {
	invT, err := checkTemperature(T)
	if err != nil {
		return err
	}
	if err := checkShape("logits", len(logits), rows, cols); err != nil {
		return err
	}
	if len(dst) != len(logits) {
		return xerr.Invalid("dst: %d values, want %d (rows×cols)", len(dst), len(logits))
	}
	k := kern
	rowsOf := func(lo, hi int) error {
		for r := lo; r < hi; r++ {
			x := logits[r*cols : (r+1)*cols]
			d := dst[r*cols : (r+1)*cols]
			m, bad := k.maxCheck(x)
			if bad != 0 {
				return nonFinite("logits", x, r)
			}
			s := k.expSum(d, x, m, invT)
			k.scale(d, 1/s)
		}
		return nil
	}
	if rows*cols < ParallelMinElems || par.Threads() == 1 {
		return rowsOf(0, rows)
	}
	return forBlocks(rows, cols, func(_, lo, hi int) error { return rowsOf(lo, hi) })
}

// KDLoss returns L = T²·mean_rows KL(softmax(teacher/T) ‖ softmax(student/T))
// and, when grad is not nil, writes ∂L/∂student = (T/rows)·(p − q) into grad
// (see the package doc for the formulas). All slices are rows×cols row-major;
// grad must not alias student or teacher. rows == 0 is an error.
func KDLoss(grad, student, teacher []float32, rows, cols int, T float64) (float64, error) {
	invT, err := checkTemperature(T)
	if err != nil {
		return 0, err
	}
	if err := checkShape("student", len(student), rows, cols); err != nil {
		return 0, err
	}
	if len(teacher) != len(student) {
		return 0, xerr.Invalid("teacher: %d values, student: %d (shapes must match, %d×%d)", len(teacher), len(student), rows, cols)
	}
	if grad != nil && len(grad) != len(student) {
		return 0, xerr.Invalid("grad: %d values, want %d (rows×cols)", len(grad), len(student))
	}
	if rows == 0 {
		return 0, xerr.Invalid("student: empty batch (0 rows); the mean over rows is undefined")
	}
	gscale := float32(T / float64(rows))
	zeroGrad := grad != nil && gscale == 0 // T/rows underflows float32: so does every gradient value
	if grad == nil {
		gscale = 0 // loss only: the kernel skips the gradient pass
	}
	job := kdJob{k: kern, grad: grad, student: student, teacher: teacher, cols: cols,
		invT: invT, gscale: gscale, inv: float64(invT)}
	nb := (rows + blockRows - 1) / blockRows
	var total float64
	if rows*cols < ParallelMinElems || par.Threads() == 1 {
		// One goroutine: no closures, scratch from a pool (small calls stay cheap).
		sc := kdPool.Get().(*kdScratch)
		defer kdPool.Put(sc)
		for b := 0; b < nb; b++ {
			sum, err := job.block(b*blockRows, min((b+1)*blockRows, rows), sc)
			if err != nil {
				return 0, err
			}
			total += sum
		}
	} else {
		partial := make([]float64, nb)
		err := forBlocks(rows, cols, func(b, lo, hi int) error {
			sc := kdPool.Get().(*kdScratch)
			defer kdPool.Put(sc)
			var err error
			partial[b], err = job.block(lo, hi, sc)
			return err
		})
		if err != nil {
			return 0, err
		}
		for _, p := range partial { // block order: the same sum as the sequential path
			total += p
		}
	}
	if zeroGrad {
		clear(grad)
	}
	return T * T * total / float64(rows), nil
}

// kdJob holds one KDLoss call's arguments for its row blocks.
type kdJob struct {
	k                      kernels
	grad, student, teacher []float32
	cols                   int
	invT, gscale           float32
	inv                    float64
}

// kdScratch is per-goroutine scratch: the teacher's exponentials of one row,
// the student's when no gradient is wanted, and the statistics of one block.
type kdScratch struct {
	et, es []float32
	st     [blockRows * 5]float32
}

var kdPool = sync.Pool{New: func() any { return new(kdScratch) }}

// block computes rows [lo, hi) (at most blockRows) and returns the sum of their KL terms.
func (j *kdJob) block(lo, hi int, sc *kdScratch) (float64, error) {
	cols, k := j.cols, j.k
	if cap(sc.et) < cols {
		sc.et, sc.es = make([]float32, cols), make([]float32, cols)
	}
	et, es := sc.et[:cols], sc.es[:cols]
	n := hi - lo
	g, gstride := es, 0
	if j.grad != nil {
		g, gstride = j.grad[lo*cols:hi*cols], cols
	}
	st := sc.st[:5*n]
	k.kdRows(g, et, j.student[lo*cols:hi*cols], j.teacher[lo*cols:hi*cols], n, cols, gstride, j.invT, j.gscale, st)
	// The KL of each row after the kernel, so that the logs pipeline.
	var sum float64
	for i := range n {
		ms, mt, zs, zt, d := float64(st[5*i]), float64(st[5*i+1]), float64(st[5*i+2]), float64(st[5*i+3]), float64(st[5*i+4])
		// KL = E_q[(t − s)/T] + (m_s − m_t)/T + log(Z_s/Z_t), see the package doc.
		kl := d*j.inv/zt + (ms-mt)*j.inv + math.Log(zs/zt)
		if math.IsNaN(kl) || math.IsInf(kl, 0) {
			// A non-finite logit makes d non-finite; otherwise t − s overflowed.
			r := lo + i
			s, t := j.student[r*cols:(r+1)*cols], j.teacher[r*cols:(r+1)*cols]
			if _, b := k.maxCheck(s); b != 0 {
				return 0, nonFinite("student", s, r)
			}
			if _, b := k.maxCheck(t); b != 0 {
				return 0, nonFinite("teacher", t, r)
			}
			return 0, xerr.Invalid("student, teacher: row %d: logit differences overflow float32 (|teacher − student| too large)", r)
		}
		sum += max(kl, 0)
	}
	return sum, nil
}
