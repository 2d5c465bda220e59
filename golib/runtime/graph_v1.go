package runtime

import (
	"strconv"

	"github.com/exitnet/exitnet/golib/xerr"
)

// GraphV1 is the format-1 graph (exitnet 0.1): each stage and head a list of
// ops applied in sequence, residual blocks nested. Decode converts it into a
// v2 Graph at load (toV2), so one compiler serves both.
type GraphV1 struct {
	FormatVersion int        `json:"format_version"`
	InputShape    []int      `json:"input_shape"` // [C, H, W]
	NumClasses    int        `json:"num_classes"`
	Stages        [][]OpSpec `json:"stages"`
	Heads         [][]OpSpec `json:"heads"`
}

type graphV1 = GraphV1

// OpSpec is one format-1 operation:
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

// toV2 converts a v1 graph. Node names are the op's path in the nested lists
// ("3", "3.main.0", "3.shortcut.0", "3.add", "3.relu"), so v2 messages still
// say which op of which stage is at fault.
func (g1 *GraphV1) toV2() (*Graph, error) {
	g := &Graph{FormatVersion: 1, Producer: "exitnet 0.1 (format 1)", InputShape: g1.InputShape, NumClasses: g1.NumClasses}
	if len(g1.Stages) > maxExits || len(g1.Heads) > maxExits {
		return nil, xerr.IO("model graph: more than %d stages or heads", maxExits)
	}
	c := v1converter{}
	for k, ops := range g1.Stages {
		b, err := c.block("stage "+strconv.Itoa(k), ops)
		if err != nil {
			return nil, err
		}
		g.Stages = append(g.Stages, b)
	}
	for k, ops := range g1.Heads {
		b, err := c.block("head "+strconv.Itoa(k), ops)
		if err != nil {
			return nil, err
		}
		g.Heads = append(g.Heads, b)
	}
	return g, nil
}

type v1converter struct {
	n     int // nodes emitted over the whole graph
	nodes []Node
}

func (c *v1converter) block(where string, ops []OpSpec) (Block, error) {
	c.nodes = nil
	out, err := c.list(where, "", ops, InputName, 0)
	if err != nil {
		return Block{}, err
	}
	if out == InputName { // an empty v1 list is the identity
		c.nodes = append(c.nodes, Node{Name: "identity", Op: "identity", Inputs: []string{InputName}})
		out = "identity"
	}
	return Block{Nodes: c.nodes, Output: out}, nil
}

// list appends the nodes of ops reading cur and returns the last node's name.
func (c *v1converter) list(where, prefix string, ops []OpSpec, cur string, depth int) (string, error) {
	if depth > maxDepth {
		return "", xerr.IO("model graph: %s: residual blocks nested deeper than %d", where, maxDepth)
	}
	for i := range ops {
		op := &ops[i]
		name := prefix + strconv.Itoa(i)
		if c.n++; c.n > maxNodes {
			return "", xerr.IO("model graph: more than %d ops", maxNodes)
		}
		switch op.Op {
		case "residual":
			m, err := c.list(where, name+".main.", op.Main, cur, depth+1)
			if err != nil {
				return "", err
			}
			sc := cur
			if len(op.Shortcut) > 0 {
				if sc, err = c.list(where, name+".shortcut.", op.Shortcut, cur, depth+1); err != nil {
					return "", err
				}
			}
			c.nodes = append(c.nodes, Node{Name: name + ".add", Op: "add", Inputs: []string{m, sc}})
			cur = name + ".add"
			if op.Relu {
				c.nodes = append(c.nodes, Node{Name: name + ".relu", Op: "relu", Inputs: []string{cur}})
				cur = name + ".relu"
			}
			continue
		case "conv2d", "linear", "relu", "relu6", "flatten", "maxpool2d", "avgpool2d":
		case "adaptive_avgpool2d":
			if len(op.OutputSize) == 0 {
				op.OutputSize = []int{1, 1}
			}
		case "":
			return "", xerr.IO("%s op %s: op without a name", where, name)
		default:
			return "", xerr.NotSupported("%s op %s: unknown op %q in a format-1 file", where, name, op.Op)
		}
		c.nodes = append(c.nodes, Node{
			Name: name, Op: op.Op, Inputs: []string{cur},
			Weight: op.Weight, Bias: op.Bias, Kernel: op.Kernel, Stride: op.Stride, Padding: op.Padding,
			Dilation: op.Dilation, Groups: op.Groups, CeilMode: op.CeilMode, CountIncludePad: op.CountIncludePad,
			OutputSize: op.OutputSize, InChannels: op.InChannels, OutChannels: op.OutChannels,
			InFeatures: op.InFeatures, OutFeatures: op.OutFeatures,
		})
		if op.Op == "conv2d" && (op.InChannels < 1 || op.OutChannels < 1) {
			return "", xerr.IO("%s op %s (conv2d): in_channels %d, out_channels %d (format 1 requires both)", where, name, op.InChannels, op.OutChannels)
		}
		if op.Op == "linear" && (op.InFeatures < 1 || op.OutFeatures < 1) {
			return "", xerr.IO("%s op %s (linear): in_features %d, out_features %d (format 1 requires both)", where, name, op.InFeatures, op.OutFeatures)
		}
		cur = name
	}
	return cur, nil
}
