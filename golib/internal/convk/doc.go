// Package convk holds exitnet's CPU convolution and dense kernels: weights
// packed once at load into 8-wide output-channel blocks, a register-blocked
// micro-kernel (AVX2+FMA assembly on amd64, a pure-Go twin elsewhere or with
// the build tag purego) and drivers that split the work over golib/par.
//
// Convolution, for sample n, group g, output channel o (in g), position (y, x):
//
//	out[n,o,y,x] = act(b[o] + Σ_{c<Cin/G} Σ_{i<kh} Σ_{j<kw} w[o,c,i,j] · in[n, g·Cin/G + c, y·sh − ph + i·dh, x·sw − pw + j·dw])
//
// with zeros outside the input, act ∈ {none, relu, relu6}, optionally followed
// by a 2×2 stride-2 max-pool (floor) fused into the epilogue:
//
//	pooled[n,o,y,x] = act(b[o] + max_{u,v∈{0,1}} conv[n,o,2y+u,2x+v])   (act is monotonic)
//
// The micro-kernel computes a tile of 4 output pixels × up to 3 blocks of 8
// output channels (12 accumulators in ymm0–11, 3 weight vectors, 1 broadcast)
// as a sum over K = (Cin/G)·kh·kw steps:
//
//	acc[p][o] += in[ptr_p + off[k]] · wp[k][o]
//
// where ptr_p is pixel p's input address and off[k] the byte offset of step k
// (channel, tap) in the padded blocked input. The 4 pixel pointers are
// independent, so a tile may span output rows and samples (the idea of
// XNNPACK's indirection buffer), a pool tile is the 2×2 window of one pooled
// output, and a dense layer is the same kernel with pixels = samples.
//
// Input layout (packed per call, cost ∝ rows run): per sample and group,
// [Cin/G/cb][H+2ph][W+2pw][cb] with cb the largest divisor of Cin/G ≤ 8 (no
// channel padding) and explicit zero borders (no bounds checks in the kernel).
// Output: NCHW, written straight from the accumulators (the runtime's layout).
package convk
