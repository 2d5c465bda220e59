// Package arrowx turns Arrow arrays into the dense Go views golib computes on, and
// back. It is pure Go (no cgo): the C Data Interface import/export lives in capi,
// which hands arrowx the imported arrow.Array and its arrow.Field.
//
// Accepted inputs (validated in full, since they come from strangers):
//
//	matrix  N×C float32: fixed_size_list<float32>[C], or the canonical extension
//	        arrow.fixed_shape_tensor over that storage (shape metadata, e.g. {"shape":[C]}
//	        or {"shape":[Cin,H,W]}; an identity "permutation" is accepted, any other refused)
//	ints    int32 or int64 arrays (labels, sample ids)
//	vector  float32 arrays
//
// Views are zero-copy: a Matrix's Data aliases the Arrow buffer, honouring the
// offsets of sliced arrays at both the list and the child level. Nulls are refused
// (a null row, or a null inside the rows in view). The caller keeps the arrow.Array
// alive (and released afterwards) for as long as it uses the view.
package arrowx
