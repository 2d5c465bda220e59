package runtime

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/exitnet/exitnet/golib/xerr"
)

// FormatVersion is the model-file format this package writes and reads.
const FormatVersion = 1

// Bounds checked before anything is allocated from a file's declarations.
const (
	maxDim         = 1 << 16 // any single dimension (channels, height, width, features, kernel)
	maxActivation  = 1 << 24 // elements of one sample's activation after any op
	maxOpsPerModel = 4096    // ops over all stages and heads, residual bodies included
	maxDepth       = 8       // residual nesting
	maxExits       = 256
)

// Graph is the JSON description stored in the model file's schema metadata
// under "exitnet.graph".
type Graph struct {
	FormatVersion int        `json:"format_version"`
	InputShape    []int      `json:"input_shape"` // [C, H, W]
	NumClasses    int        `json:"num_classes"`
	Stages        [][]OpSpec `json:"stages"`
	Heads         [][]OpSpec `json:"heads"`
}

// OpSpec is one operation of the graph. Which fields matter depends on Op:
//
//	conv2d              weight [C_out, C_in/groups, k_h, k_w], bias [C_out] or "", in_channels,
//	                    out_channels, kernel, stride, padding, dilation ([2] each), groups
//	linear              weight [out, in], bias [out] or "", in_features, out_features
//	relu, relu6, flatten
//	maxpool2d           kernel, stride, padding, ceil_mode
//	avgpool2d           kernel, stride, padding, count_include_pad
//	adaptive_avgpool2d  output size 1×1 only
//	residual            main (ops), shortcut (ops; empty = identity), relu (after the sum)
type OpSpec struct {
	Op              string   `json:"op"`
	Weight          string   `json:"weight,omitempty"`
	Bias            string   `json:"bias,omitempty"`
	InChannels      int      `json:"in_channels,omitempty"`
	OutChannels     int      `json:"out_channels,omitempty"`
	InFeatures      int      `json:"in_features,omitempty"`
	OutFeatures     int      `json:"out_features,omitempty"`
	Kernel          []int    `json:"kernel,omitempty"`
	Stride          []int    `json:"stride,omitempty"`
	Padding         []int    `json:"padding,omitempty"`
	Dilation        []int    `json:"dilation,omitempty"`
	Groups          int      `json:"groups,omitempty"`
	CountIncludePad *bool    `json:"count_include_pad,omitempty"`
	CeilMode        bool     `json:"ceil_mode,omitempty"`
	OutputSize      []int    `json:"output_size,omitempty"`
	Main            []OpSpec `json:"main,omitempty"`
	Shortcut        []OpSpec `json:"shortcut,omitempty"`
	Relu            bool     `json:"relu,omitempty"`
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

// parseGraph decodes and checks the structural parts of the JSON graph that
// do not need weights.
func parseGraph(js []byte) (*Graph, error) {
	var g Graph
	dec := json.NewDecoder(bytes.NewReader(js))
	if err := dec.Decode(&g); err != nil {
		return nil, xerr.IO("model graph: invalid JSON: %v", err)
	}
	if g.FormatVersion != FormatVersion {
		return nil, xerr.NotSupported("model graph: format_version %d, this library reads %d", g.FormatVersion, FormatVersion)
	}
	if len(g.InputShape) != 3 {
		return nil, xerr.IO("model graph: input_shape has %d entries, want 3 ([C, H, W])", len(g.InputShape))
	}
	for i, d := range g.InputShape {
		if d < 1 || d > maxDim {
			return nil, xerr.IO("model graph: input_shape[%d] = %d outside [1, %d]", i, d, maxDim)
		}
	}
	if g.InputShape[0]*g.InputShape[1]*g.InputShape[2] > maxActivation {
		return nil, xerr.IO("model graph: input_shape %v has more than %d elements", g.InputShape, maxActivation)
	}
	if g.NumClasses < 1 || g.NumClasses > maxDim {
		return nil, xerr.IO("model graph: num_classes %d outside [1, %d]", g.NumClasses, maxDim)
	}
	if len(g.Stages) < 1 || len(g.Stages) > maxExits {
		return nil, xerr.IO("model graph: %d stages, want 1..%d", len(g.Stages), maxExits)
	}
	if len(g.Heads) != len(g.Stages) {
		return nil, xerr.IO("model graph: %d stages but %d heads (one head per stage)", len(g.Stages), len(g.Heads))
	}
	n := 0
	var count func(ops []OpSpec, depth int) error
	count = func(ops []OpSpec, depth int) error {
		if depth > maxDepth {
			return xerr.IO("model graph: residual blocks nested deeper than %d", maxDepth)
		}
		for _, op := range ops {
			n++
			if n > maxOpsPerModel {
				return xerr.IO("model graph: more than %d ops", maxOpsPerModel)
			}
			if err := count(op.Main, depth+1); err != nil {
				return err
			}
			if err := count(op.Shortcut, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	for _, ops := range append(append([][]OpSpec{}, g.Stages...), g.Heads...) {
		if err := count(ops, 0); err != nil {
			return nil, err
		}
	}
	return &g, nil
}

// pair reads a 2-element attribute (h, w), with a default when absent.
func pair(where, name string, v []int, def, lo, hi int) ([2]int, error) {
	if len(v) == 0 {
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
