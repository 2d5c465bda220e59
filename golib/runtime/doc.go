// Package runtime is exitnet's early-exit inference engine. It loads a model
// file written by exitnet.torch.export (an Arrow IPC file: a JSON graph in the
// schema metadata plus the weights as rows of a table), checks it completely,
// and runs batches stage by stage, sending on only the samples that have not
// yet left (batch compaction), so the compute saved by early exits is real.
//
// Graph (format 2, Graph): K stages and K heads, each a list of named nodes in
// topological order reading named inputs ("input" is the block's input), so
// residual branches, squeeze-excitation and concatenations are expressed as
// they are in torch.fx. Format-1 files (nested op lists) are converted into a
// format-2 graph at load (graph_v1.go); other versions are refused naming the
// version. Load checks, before allocating anything from the file's
// declarations: bounds on sizes and node counts, names (unique, resolved,
// defined before use, every node used), every node's shapes and weights, the
// declared costs against the graph's, and the work per sample against
// MaxWorkPerSample (cost.go).
//
// Compilation (compile.go, ops.go): one instruction per node, except that an
// activation that is the only reader of a conv2d/linear/add/scale_shift is
// fused into its epilogue, as is a 2×2 stride-2 max-pool after conv[→relu].
// Values live in workspace slots, reference-counted by their pending reads, so
// a value read by several nodes stays alive until its last reader and memory
// is reused after; unary and binary elementwise ops write in place when they
// are their input's last reader. chooseConvKernel is the one place that
// picks a convolution's kernel by shape.
//
// Preprocessing: a graph may store x' = (x − mean[c]) / std[c]; Options.Raw
// applies it (float32, like torchvision's Normalize) before stage 0.
//
// Conventions:
//
//   - Activations are float32, row-major, one sample after the other; a sample is
//     [C, H, W] (4-D) or [F] after Flatten/Linear (2-D).
//
//   - A model has K stages s_1..s_K and K heads h_1..h_K; head h_k reads the
//     output of stage s_k and produces the logits of exit k.
//
//   - After head k, policy.ExitStep decides which of the running samples leave
//     (one implementation shared with golib/policy); the last exit always accepts.
//
//   - Cost is counted in multiply-accumulates (MACs) of conv2d and linear nodes
//     only; pooling, activations and residual additions are not counted (they
//     are in the work bound, cost.go):
//
//     conv:   MACs = C_out · H_out · W_out · (C_in / groups) · k_h · k_w
//     linear: MACs = in · out
//     cost(exit k) = Σ_{j≤k} (MACs(s_j) + MACs(h_j))
//
//   - Non-finite inputs (NaN, ±Inf) are refused with an invalid-argument error
//     naming the sample; a model that turns finite inputs into non-finite logits
//     is reported the same way (naming the exit and the sample).
//
//   - Threads: each Conv2d group (over a sub-batch of samples whose im2col
//     matrices fit in L2) and each Linear is one blas32 GEMM, threaded by the BLAS
//     (OpenBLAS in the shared library, exitnet_set_num_threads threads; gonum's
//     parallel Sgemm in pure Go); im2col, the fused bias/activation epilogue,
//     pooling and depthwise convolutions run on par.For. One or two rows use GEMV.
//
//   - A *Model is immutable after loading and safe for concurrent Predict calls;
//     each call borrows a workspace from a pool, so steady-state calls do not
//     allocate.
package runtime
