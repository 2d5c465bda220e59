package fisher

import (
	"github.com/exitnet/exitnet/golib/xerr"
)

// Param is one named tensor of a Layout.
type Param struct {
	Name  string
	Shape []int
}

// Layout is an ordered list of named tensors laid out back to back in flat
// buffers. It is immutable after NewLayout.
type Layout struct {
	params  []Param
	offsets []int // len(params)+1
	index   map[string]int
}

// maxLayoutElems bounds a layout so that every buffer over it (P float64
// sums, K×P float32 results) has a byte size far from int overflow; the
// buffers themselves are checked against the memory limit when allocated.
const maxLayoutElems = 1 << 50

// MaxDims is the most dimensions a parameter may have (the C ABI's dims[16]).
const MaxDims = 16

// NewLayout validates params (non-empty unique names, non-negative dims) and
// computes the flat offsets.
func NewLayout(params []Param) (*Layout, error) {
	l := &Layout{index: make(map[string]int, len(params)), offsets: make([]int, 1, len(params)+1)}
	total := 0
	for i, p := range params {
		if p.Name == "" {
			return nil, xerr.Invalid("layout: parameter %d has an empty name", i)
		}
		if _, dup := l.index[p.Name]; dup {
			return nil, xerr.Invalid("layout: parameter %q appears twice", p.Name)
		}
		if len(p.Shape) > MaxDims {
			return nil, xerr.Invalid("layout: parameter %q has %d dimensions, at most %d", p.Name, len(p.Shape), MaxDims)
		}
		size := 1
		for _, d := range p.Shape {
			if d < 0 {
				return nil, xerr.Invalid("layout: parameter %q has negative dimension %d", p.Name, d)
			}
			if d > 0 && size > maxLayoutElems/d {
				return nil, xerr.OOM("layout: parameter %q (shape %v) has more than %d elements", p.Name, p.Shape, maxLayoutElems)
			}
			size *= d
		}
		if total > maxLayoutElems-size {
			return nil, xerr.OOM("layout: more than %d elements in total", maxLayoutElems)
		}
		total += size
		l.index[p.Name] = i
		l.params = append(l.params, Param{Name: p.Name, Shape: append([]int(nil), p.Shape...)})
		l.offsets = append(l.offsets, total)
	}
	return l, nil
}

// Len is the number of parameters.
func (l *Layout) Len() int { return len(l.params) }

// Size is the total number of elements of all parameters.
func (l *Layout) Size() int { return l.offsets[len(l.params)] }

// Param returns parameter i (its Shape must not be modified).
func (l *Layout) Param(i int) Param { return l.params[i] }

// Params returns a copy of the parameter list.
func (l *Layout) Params() []Param {
	out := make([]Param, len(l.params))
	for i, p := range l.params {
		out[i] = Param{Name: p.Name, Shape: append([]int(nil), p.Shape...)}
	}
	return out
}

// Offset returns the flat offset of parameter i.
func (l *Layout) Offset(i int) int { return l.offsets[i] }

// ParamSize returns the number of elements of parameter i.
func (l *Layout) ParamSize(i int) int { return l.offsets[i+1] - l.offsets[i] }

// Lookup returns the index of the named parameter, or a NOT_FOUND error.
func (l *Layout) Lookup(name string) (int, error) {
	i, ok := l.index[name]
	if !ok {
		return -1, xerr.NotFound("param: %q is not in the layout", name)
	}
	return i, nil
}

// Equal reports whether two layouts have the same names and shapes in the same order.
func (l *Layout) Equal(o *Layout) bool {
	if l == o {
		return true
	}
	if l == nil || o == nil || len(l.params) != len(o.params) {
		return false
	}
	for i, p := range l.params {
		q := o.params[i]
		if p.Name != q.Name || len(p.Shape) != len(q.Shape) {
			return false
		}
		for j := range p.Shape {
			if p.Shape[j] != q.Shape[j] {
				return false
			}
		}
	}
	return true
}

// span returns the flat range of the named parameter, checking its element count.
func (l *Layout) span(arg, name string, want int) (lo, hi int, err error) {
	i, err := l.Lookup(name)
	if err != nil {
		return 0, 0, xerr.Wrap(err, "%s", arg)
	}
	lo, hi = l.offsets[i], l.offsets[i+1]
	if want >= 0 && hi-lo != want {
		return 0, 0, xerr.Invalid("%s: parameter %q has %d elements (shape %v), the input implies %d",
			arg, name, hi-lo, l.params[i].Shape, want)
	}
	return lo, hi, nil
}
