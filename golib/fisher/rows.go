package fisher

import (
	"sync"

	"github.com/exitnet/exitnet/golib/par"
	"github.com/exitnet/exitnet/golib/xerr"
)

// rowsBlock is the column-block width of the rows kernel: the float64 sums of
// one block (128 KiB) stay in L2 while all N rows stream through it, in runs of
// 64 KiB per row that keep the hardware prefetcher busy. Measured at N=64,
// P=11M on one core: 2048 → 25 GB/s, 8192 → 27.5, 16384 → 28.5, 32768 → 29
// (noisy, shared machine); 16384 leaves L2 room for the rows in flight.
const rowsBlock = 16384

// pfRows is how many rows ahead the rows kernel prefetches.
const pfRows = 4

// UpdateRows adds Σ_n w_n g_n∘g_n to the sums, for per-sample gradient rows
// over the whole layout: rows is n×p row-major with p == Layout().Size().
// weights is nil (all 1) or n finite values ≥ 0. It does not count samples.
//
// A NaN or ±Inf gradient is detected in the sums after the pass (it cannot
// be undone exactly), the error names the parameter, and the accumulator then
// refuses further use until Reset.
func (a *Accumulator) UpdateRows(rows []float32, n, p int, weights []float32) error {
	if err := a.perSampleOnly("update_rows"); err != nil {
		return err
	}
	if p != a.layout.Size() {
		return xerr.Invalid("rows: %d columns, layout has %d elements", p, a.layout.Size())
	}
	return a.updateRows(rows, n, p, 0, weights)
}

// UpdateRowsParam is UpdateRows for the per-sample gradient rows (n×p) of the
// one named parameter.
func (a *Accumulator) UpdateRowsParam(name string, rows []float32, n, p int, weights []float32) error {
	if err := a.perSampleOnly("update_rows"); err != nil {
		return err
	}
	lo, _, err := a.layout.span("param", name, p)
	if err != nil {
		return err
	}
	return a.updateRows(rows, n, p, lo, weights)
}

func (a *Accumulator) updateRows(rows []float32, n, p, off int, weights []float32) error {
	if n < 0 || p < 0 {
		return xerr.Invalid("rows: negative shape %d×%d", n, p)
	}
	if len(rows) != n*p {
		return xerr.Invalid("rows: %d values for a %d×%d matrix", len(rows), n, p)
	}
	if err := checkWeights(weights, n); err != nil {
		return err
	}
	if n == 0 || p == 0 {
		return nil
	}
	bad := -1
	var mu sync.Mutex
	sqAccRows(a.sums[off:off+p], rows, n, p, weights, func(j int) {
		mu.Lock()
		if bad < 0 || j < bad {
			bad = j
		}
		mu.Unlock()
	})
	if bad >= 0 {
		name := a.nameAt(off + bad)
		a.broken = "non-finite gradient for " + name
		return xerr.Invalid("rows: NaN or Inf gradient for parameter %q (flat element %d); the accumulator must be Reset", name, off+bad)
	}
	return nil
}

// sqAccRows adds Σ_r w_r·rows[r,j]² into acc[j] (len(acc) == p columns, row
// stride p), in parallel over column blocks. onBad(j) is called with a column
// whose sum became non-finite.
func sqAccRows(acc []float64, rows []float32, n, p int, weights []float32, onBad func(int)) {
	nb := (p + rowsBlock - 1) / rowsBlock
	// At least 4 blocks (64K columns) per chunk so a worker streams long runs of each row.
	par.For(nb, 4, func(blo, bhi int) {
		for b := blo; b < bhi; b++ {
			c0 := b * rowsBlock
			c1 := min(c0+rowsBlock, p)
			blk := acc[c0:c1]
			var w [4]float64
			var rs [4][]float32
			for r := 0; r < n; r += 4 {
				for k := 0; k < 4; k++ {
					rr := r + k
					if rr >= n { // pad with the last row, weight 0
						rs[k] = rs[0]
						w[k] = 0
						continue
					}
					rs[k] = rows[rr*p+c0 : rr*p+c1]
					w[k] = 1
					if weights != nil {
						w[k] = float64(weights[rr])
					}
				}
				if r+4+pfRows <= n {
					// prefetch the same columns of the next group of 4 rows
					sqAcc4Pf(blk, rs[0], rs[1], rs[2], rs[3], &w, 4*pfRows*p)
				} else {
					sqAcc4(blk, rs[0], rs[1], rs[2], rs[3], &w)
				}
			}
			for j, v := range blk {
				if v-v != 0 {
					onBad(c0 + j)
					break
				}
			}
		}
	})
}
