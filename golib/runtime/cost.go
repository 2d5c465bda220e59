package runtime

import (
	"sync/atomic"

	"github.com/exitnet/exitnet/golib/xerr"
)

// Work bound. A model file declares its graph; a forged one can describe a
// network that is small on disk but enormous to run (thousands of pooling
// nodes on a 2048×2048 input: minutes per sample). Decode therefore computes
// each model's work per sample from the graph and refuses it above a limit:
//
//	work = Σ conv2d, linear MACs                (the cost model of ExitCosts)
//	     + Σ pools: output elements · kh·kw     (window reads)
//	     + Σ adaptive pools, mean: input elements read
//	     + Σ other ops: output elements         (activations, add, mul, cat, ...)
//
// The default, 1e11 per sample, is about 5× VGG-19 (19.6 G MACs) and 9×
// ResNet-152 (11.5 G) at 224×224: every common ImageNet network fits, while
// the worst file the other bounds allow (16384 nodes of 2^24 elements each,
// 2.7e11) does not.
const DefaultMaxWorkPerSample int64 = 100_000_000_000

var maxWork atomic.Int64

func init() { maxWork.Store(DefaultMaxWorkPerSample) }

// SetMaxWorkPerSample sets the largest work per sample (see above) a model
// may need to load; it applies to later loads. n must be ≥ 1.
func SetMaxWorkPerSample(n int64) error {
	if n < 1 {
		return xerr.Invalid("max work per sample: %d, need >= 1", n)
	}
	maxWork.Store(n)
	return nil
}

// MaxWorkPerSample returns the current bound (DefaultMaxWorkPerSample unless set).
func MaxWorkPerSample() int64 { return maxWork.Load() }
