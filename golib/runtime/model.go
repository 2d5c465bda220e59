package runtime

import (
	"encoding/json"
	"fmt"
	"sync"

	"gorgonia.org/tensor"

	"github.com/exitnet/exitnet/golib/xerr"
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
	chunk   int // samples per internal chunk (bounds workspace memory)
	poolMu  sync.Mutex
	pool    []*workspace // idle workspaces, one per concurrent caller seen (kept, unlike sync.Pool, across GCs)
}

func jsonMarshal(g *Graph) ([]byte, error) { return json.Marshal(g) }

// compile checks the graph against the weights and builds the programs.
func compile(g *Graph, weights map[string]*tensor.Dense) (*Model, error) {
	c := &compiler{weights: weights}
	in := shape{C: g.InputShape[0], H: g.InputShape[1], W: g.InputShape[2]}
	m := &Model{graph: g, input: in, classes: g.NumClasses, weights: weights}
	cur, s, owned := -1, in, false
	for k := range g.Stages {
		st, err := c.program(fmt.Sprintf("stage %d", k), g.Stages[k], cur, owned, s, true)
		if err != nil {
			return nil, err
		}
		hd, err := c.program(fmt.Sprintf("head %d", k), g.Heads[k], st.out, false, st.outS, false)
		if err != nil {
			return nil, err
		}
		if !hd.outS.flat || hd.outS.C != g.NumClasses {
			return nil, xerr.IO("head %d: output %v, want flat [%d] logits (num_classes; end the head with Flatten/Linear)", k, hd.outS, g.NumClasses)
		}
		if hd.out != st.out {
			c.plan.release(hd.out)
		}
		m.stages = append(m.stages, st)
		m.heads = append(m.heads, hd)
		cur, s, owned = st.out, st.outS, true
	}
	m.slots = c.plan.sizes
	per := 0
	for _, sz := range m.slots {
		per += sz
	}
	m.chunk = max(1, min(256, (64<<20)/max(1, per)))
	return m, nil
}

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
