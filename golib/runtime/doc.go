// Package runtime is exitnet's early-exit inference engine. It loads a model
// file written by exitnet.torch.export (an Arrow IPC file: a JSON graph in the
// schema metadata plus the weights as rows of a table), checks it completely,
// and runs batches stage by stage, sending on only the samples that have not
// yet left (batch compaction), so the compute saved by early exits is real.
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
//   - Cost is counted in multiply-accumulates (MACs) of Conv2d and Linear layers
//     only; pooling, activations and residual additions are not counted:
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
