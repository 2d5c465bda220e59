package runtime

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"

	"github.com/exitnet/exitnet/golib/xerr"
)

// FormatVersion is the model-file format this package writes. It reads
// FormatVersion and every older version in ReadableVersions (v1 files, whose
// graph is a nested op list, are converted into a v2 graph at load).
const FormatVersion = 2

// ReadableVersions lists the model-file format versions Decode accepts.
var ReadableVersions = []int{1, 2}

// Bounds checked before anything is allocated from a file's declarations.
const (
	maxDim        = 1 << 16 // any single dimension (channels, height, width, features, kernel)
	maxActivation = 1 << 24 // elements of one sample's activation after any op
	maxNodes      = 1 << 14 // nodes over all stages and heads
	maxInputs     = 1 << 10 // inputs of one node (cat)
	maxNameLen    = 512     // bytes of a node name
	maxDepth      = 8       // v1 residual nesting
	maxExits      = 256
	// activations alive at once for one sample, over all workspace slots
	maxWorkspacePerSample = 1 << 27
)

// Graph is the v2 JSON description stored in the model file's schema metadata
// under "exitnet.graph" (docs: notes/model-format-v2.md, mirrored in
// include/exitnet.h). Stage k reads the model input (k = 0) or stage k−1's
// output; head k reads stage k's output and produces exit k's logits.
type Graph struct {
	FormatVersion int         `json:"format_version"`
	Producer      string      `json:"producer,omitempty"`
	InputShape    []int       `json:"input_shape"` // [C, H, W], after preprocessing
	NumClasses    int         `json:"num_classes"`
	Preprocess    *Preprocess `json:"preprocess,omitempty"`
	Stages        []Block     `json:"stages"`
	Heads         []Block     `json:"heads"`
	Costs         *Costs      `json:"costs,omitempty"`
}

// Preprocess is the per-channel input normalisation x' = (x − mean[c]) / std[c],
// applied (in float32, as torchvision's Normalize) when the caller passes raw inputs.
type Preprocess struct {
	Mean []float64 `json:"mean"`
	Std  []float64 `json:"std"`
}

// Costs are the MACs per sample the writer declares for each stage and head;
// the runtime recomputes them from the graph and refuses a file where they differ.
type Costs struct {
	Stages []int64 `json:"stages"`
	Heads  []int64 `json:"heads"`
}

// Block is one stage or head: nodes in topological order; the reserved input
// name "input" is the block's input tensor; Output names the node whose result
// leaves the block.
type Block struct {
	Nodes  []Node `json:"nodes"`
	Output string `json:"output"`
}

// InputName is the reserved name of a block's input tensor.
const InputName = "input"

// Node is one operation. Which attributes matter depends on Op (see the table
// in include/exitnet.h); pairs are [h, w]. Unknown JSON keys are refused, so an
// attribute this runtime does not implement is never silently ignored.
type Node struct {
	Name   string   `json:"name"`
	Op     string   `json:"op"`
	Inputs []string `json:"inputs"`
	// Module is the torch module path the node came from (messages only).
	Module string `json:"module,omitempty"`

	Weight string `json:"weight,omitempty"` // conv2d, linear
	Bias   string `json:"bias,omitempty"`   // conv2d, linear ("" = none)
	Scale  string `json:"scale,omitempty"`  // scale_shift
	Shift  string `json:"shift,omitempty"`  // scale_shift

	Kernel          []int    `json:"kernel,omitempty"` // conv2d (checked against the weight), pools
	Stride          []int    `json:"stride,omitempty"`
	Padding         []int    `json:"padding,omitempty"`
	Dilation        []int    `json:"dilation,omitempty"`
	Groups          int      `json:"groups,omitempty"`
	CeilMode        bool     `json:"ceil_mode,omitempty"`
	CountIncludePad *bool    `json:"count_include_pad,omitempty"` // avgpool2d (default true)
	OutputSize      []int    `json:"output_size,omitempty"`       // adaptive_avgpool2d
	Approximate     string   `json:"approximate,omitempty"`       // gelu: "none" | "tanh"
	Dims            []int    `json:"dims,omitempty"`              // mean: [2, 3]
	Keepdim         bool     `json:"keepdim,omitempty"`           // mean
	Value           *float64 `json:"value,omitempty"`             // add_scalar, mul_scalar
	Axis            *int     `json:"axis,omitempty"`              // cat: 1
	StartDim        *int     `json:"start_dim,omitempty"`         // flatten: 1
	EndDim          *int     `json:"end_dim,omitempty"`           // flatten: -1

	// Declared sizes, checked when nonzero (v1 files always carry them).
	InChannels  int `json:"in_channels,omitempty"`
	OutChannels int `json:"out_channels,omitempty"`
	InFeatures  int `json:"in_features,omitempty"`
	OutFeatures int `json:"out_features,omitempty"`
}

// shape is one sample's activation shape: [C, H, W] when flat is false,
// [C] (features) when flat is true (H = W = 1).
type shape struct {
	C, H, W int
	flat    bool
}

func (s shape) size() int { return s.C * s.H * s.W }

func (s shape) String() string {
	if s.flat {
		return fmt.Sprintf("[%d]", s.C)
	}
	return fmt.Sprintf("[%d, %d, %d]", s.C, s.H, s.W)
}

// decodeStrict decodes js into v, refusing unknown keys and trailing data.
func decodeStrict(js []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("data after the JSON object")
	}
	return nil
}

// parseGraph decodes the JSON graph of a file whose metadata declares format
// version metaVer, converts v1 graphs, and checks everything that needs no
// weights: bounds, names, topological order.
func parseGraph(js []byte, metaVer int) (*Graph, error) {
	var head struct {
		FormatVersion int    `json:"format_version"`
		Producer      string `json:"producer"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		return nil, xerr.IO("model graph: invalid JSON: %v", err)
	}
	if head.FormatVersion != metaVer {
		return nil, xerr.IO("model graph: format_version %d, but the file's metadata says %d", head.FormatVersion, metaVer)
	}
	var g *Graph
	switch head.FormatVersion {
	case 1:
		var g1 graphV1
		if err := decodeStrict(js, &g1); err != nil {
			return nil, xerr.IO("model graph (format 1): invalid JSON: %v", err)
		}
		var err error
		if g, err = g1.toV2(); err != nil {
			return nil, err
		}
	case 2:
		g = new(Graph)
		if err := decodeStrict(js, g); err != nil {
			return nil, xerr.IO("model graph: invalid JSON: %v", err)
		}
	default:
		return nil, versionError(head.FormatVersion, head.Producer)
	}
	if err := g.check(); err != nil {
		return nil, err
	}
	return g, nil
}

// graphProducer reads the "producer" of a graph JSON for messages ("" if none).
func graphProducer(js string) string {
	var head struct {
		Producer string `json:"producer"`
	}
	if len(js) > maxGraphJSONSize || json.Unmarshal([]byte(js), &head) != nil {
		return ""
	}
	return head.Producer
}

// versionError refuses a format version this library cannot read.
func versionError(v int, producer string) error {
	if producer == "" {
		producer = "unknown producer"
	}
	if v > FormatVersion {
		return xerr.NotSupported("model file: format_version %d, written by a newer exitnet (%s); this library reads versions %v",
			v, producer, ReadableVersions)
	}
	return xerr.IO("model file: format_version %d (%s) is not a version this library reads (%v)", v, producer, ReadableVersions)
}

// check validates the graph's structure (not its shapes or weights).
func (g *Graph) check() error {
	if len(g.InputShape) != 3 {
		return xerr.IO("model graph: input_shape has %d entries, want 3 ([C, H, W])", len(g.InputShape))
	}
	for i, d := range g.InputShape {
		if d < 1 || d > maxDim {
			return xerr.IO("model graph: input_shape[%d] = %d outside [1, %d]", i, d, maxDim)
		}
	}
	if g.InputShape[0]*g.InputShape[1]*g.InputShape[2] > maxActivation {
		return xerr.IO("model graph: input_shape %v has more than %d elements", g.InputShape, maxActivation)
	}
	if g.NumClasses < 1 || g.NumClasses > maxDim {
		return xerr.IO("model graph: num_classes %d outside [1, %d]", g.NumClasses, maxDim)
	}
	if len(g.Stages) < 1 || len(g.Stages) > maxExits {
		return xerr.IO("model graph: %d stages, want 1..%d", len(g.Stages), maxExits)
	}
	if len(g.Heads) != len(g.Stages) {
		return xerr.IO("model graph: %d stages but %d heads (one head per stage)", len(g.Stages), len(g.Heads))
	}
	if p := g.Preprocess; p != nil {
		C := g.InputShape[0]
		if len(p.Mean) != C || len(p.Std) != C {
			return xerr.IO("model graph: preprocess has %d means and %d stds, the input has %d channels", len(p.Mean), len(p.Std), C)
		}
		for c := range C {
			m, s := p.Mean[c], p.Std[c]
			// 1/std must be finite in float32 too, so the normalised input is
			if math.IsNaN(m) || math.Abs(m) > math.MaxFloat32 || !(s >= 1e-30) || s > math.MaxFloat32 {
				return xerr.IO("model graph: preprocess channel %d: mean %g, std %g (need finite values and std >= 1e-30)", c, m, s)
			}
		}
	}
	if c := g.Costs; c != nil && (len(c.Stages) != len(g.Stages) || len(c.Heads) != len(g.Heads)) {
		return xerr.IO("model graph: costs list %d stages and %d heads, the graph has %d of each", len(c.Stages), len(c.Heads), len(g.Stages))
	}
	n := 0
	for k := range g.Stages {
		n += len(g.Stages[k].Nodes) + len(g.Heads[k].Nodes)
		if n > maxNodes {
			return xerr.IO("model graph: more than %d nodes", maxNodes)
		}
	}
	for k := range g.Stages {
		if err := g.Stages[k].check(fmt.Sprintf("stage %d", k)); err != nil {
			return err
		}
		if err := g.Heads[k].check(fmt.Sprintf("head %d", k)); err != nil {
			return err
		}
	}
	return nil
}

// nodeWhere names a node in messages: `stage 1 node "layer2.0.conv1" (conv2d)`.
func nodeWhere(where string, nd *Node) string {
	return fmt.Sprintf("%s node %q (%s)", where, nd.Name, nd.Op)
}

// check validates names: unique, not reserved, every input defined before its
// reader (which also rules out cycles), the output defined, every node used.
func (b *Block) check(where string) error {
	if len(b.Nodes) == 0 {
		return xerr.IO("%s: no nodes", where)
	}
	idx := make(map[string]int, len(b.Nodes))
	for i := range b.Nodes {
		nd := &b.Nodes[i]
		if nd.Name == "" || len(nd.Name) > maxNameLen {
			return xerr.IO("%s: node %d has an empty name or one longer than %d bytes", where, i, maxNameLen)
		}
		if nd.Name == InputName {
			return xerr.IO("%s: node %d is named %q, which is reserved for the block's input", where, i, InputName)
		}
		if _, dup := idx[nd.Name]; dup {
			return xerr.IO("%s: two nodes are named %q", where, nd.Name)
		}
		idx[nd.Name] = i
	}
	used := make([]bool, len(b.Nodes))
	inputUsed := false
	for i := range b.Nodes {
		nd := &b.Nodes[i]
		if len(nd.Inputs) < 1 || len(nd.Inputs) > maxInputs {
			return xerr.IO("%s: %d inputs, want 1..%d", nodeWhere(where, nd), len(nd.Inputs), maxInputs)
		}
		for _, in := range nd.Inputs {
			if in == InputName {
				inputUsed = true
				continue
			}
			j, ok := idx[in]
			switch {
			case !ok:
				return xerr.IO("%s: reads %q, which is not a node of %s", nodeWhere(where, nd), in, where)
			case j >= i:
				return xerr.IO("%s: reads %q, which comes at or after it (nodes must be in topological order; a cycle?)", nodeWhere(where, nd), in)
			}
			used[j] = true
		}
	}
	if b.Output == InputName {
		inputUsed = true
	} else if j, ok := idx[b.Output]; !ok {
		return xerr.IO("%s: output %q is not a node of %s", where, b.Output, where)
	} else {
		used[j] = true
	}
	for i, u := range used {
		if !u {
			return xerr.IO("%s: the result is never used (not on the way to output %q)", nodeWhere(where, &b.Nodes[i]), b.Output)
		}
	}
	if !inputUsed {
		return xerr.IO("%s: never reads %q", where, InputName)
	}
	return nil
}

// pair reads a 2-element attribute (h, w), with a default when absent.
func pair(where, name string, v []int, def, lo, hi int) ([2]int, error) {
	if len(v) == 0 {
		if def < lo {
			return [2]int{}, xerr.IO("%s: %s is required", where, name)
		}
		return [2]int{def, def}, nil
	}
	if len(v) != 2 {
		return [2]int{}, xerr.IO("%s: %s has %d entries, want 2", where, name, len(v))
	}
	for _, x := range v {
		if x < lo || x > hi {
			return [2]int{}, xerr.IO("%s: %s = %v outside [%d, %d]", where, name, v, lo, hi)
		}
	}
	return [2]int{v[0], v[1]}, nil
}
