package runtime

import (
	"encoding/json"
	"sync"

	"gorgonia.org/tensor"
)

// Model is a loaded, validated and compiled early-exit network. It is
// immutable and safe for concurrent use.
type Model struct {
	graph   *Graph
	input   shape
	classes int
	stages  []program
	heads   []program
	slots   []int // per-sample elements of each workspace slot
	weights map[string]*tensor.Dense
	chunk   int       // samples per internal chunk (bounds workspace memory)
	work    int64     // per sample, every op (cost.go)
	mean    []float32 // preprocessing (nil when the file stores none)
	std     []float32
	poolMu  sync.Mutex
	pool    []*workspace // idle workspaces, one per concurrent caller seen (kept, unlike sync.Pool, across GCs)
}

func jsonMarshal(g any) ([]byte, error) { return json.Marshal(g) }

// Preprocess returns copies of the stored per-channel normalisation (applied
// as (x − mean[c]) / std[c] in float32 when Options.Raw is set), and false
// when the model stores none.
func (m *Model) Preprocess() (mean, std []float32, ok bool) {
	if m.mean == nil {
		return nil, nil, false
	}
	return append([]float32(nil), m.mean...), append([]float32(nil), m.std...), true
}

// WorkPerSample returns the work per sample computed at load (see
// SetMaxWorkPerSample): MACs plus pooling and elementwise operations.
func (m *Model) WorkPerSample() int64 { return m.work }

// NumExits returns K, the number of exits (= stages = heads).
func (m *Model) NumExits() int { return len(m.stages) }

// NumClasses returns the number of logits per exit.
func (m *Model) NumClasses() int { return m.classes }

// InputShape returns the declared input shape [C, H, W].
func (m *Model) InputShape() [3]int { return [3]int{m.input.C, m.input.H, m.input.W} }

// ExitCosts returns, for each exit k, the MACs per sample of leaving there:
// Σ_{j≤k} (MACs(s_j) + MACs(h_j)).
func (m *Model) ExitCosts() []int64 {
	out := make([]int64, len(m.stages))
	var acc int64
	for k := range m.stages {
		acc += m.stages[k].macs + m.heads[k].macs
		out[k] = acc
	}
	return out
}

// Graph returns the model's graph description (do not modify).
func (m *Model) Graph() *Graph { return m.graph }
