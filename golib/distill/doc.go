// Package distill implements Learning without Forgetting (LwF) distillation for
// early-exit networks: temperature softmax, the knowledge-distillation loss and
// its gradient, and a store of recorded teacher logits keyed by sample id.
//
// Conventions (as in gonum): destination first, float32 data, row-major
// matrices given as a flat slice plus rows and cols, no allocation of
// C-visible memory (callers pass dst). T is the temperature.
//
// Soft targets, row-wise and numerically stable (the row maximum m is
// subtracted before exponentiating):
//
//	p_ij = softmax(z_i/T)_j = exp((z_ij − m_i)/T) / Σ_k exp((z_ik − m_i)/T)
//
// Distillation loss over a batch of N rows of C classes, student logits s and
// teacher logits t (Hinton et al. 2015; T² keeps gradient magnitudes
// comparable across temperatures), and its gradient:
//
//	q_i = softmax(t_i/T),  p_i = softmax(s_i/T)
//	L   = T² · (1/N) Σ_i KL(q_i ‖ p_i) = T² · (1/N) Σ_i Σ_j q_ij (log q_ij − log p_ij)
//	∂L/∂s_ij = (T/N) · (p_ij − q_ij)
//
// This equals torch's
// F.kl_div(F.log_softmax(s/T, 1), F.log_softmax(t/T, 1), reduction="batchmean", log_target=True)·T².
// Each row's KL is computed in one pass from the row maxima m_s, m_t and the
// partition sums Z_s, Z_t of the max-subtracted exponentials:
//
//	KL(q_i ‖ p_i) = (1/T)·Σ_j q_ij (t_ij − s_ij) + (m_s − m_t)/T + log Z_s − log Z_t
//
// and is clamped at 0 (it is ≥ 0 mathematically; rounding can make it −1e−8).
//
// Inputs are validated: T must be finite and > 0 (and 1/T representable in
// float32), logits finite (the error names the argument, row and column),
// shapes consistent. An empty batch (rows == 0) is an error for KDLoss (a mean
// over no rows is undefined, and an empty batch in a training step is almost
// always a bug) and a no-op for SoftTargets (there is nothing to normalise).
//
// Exponentials use an AVX2+FMA kernel when the CPU has one (pure-Go fallback
// otherwise, and with the purego build tag); see kernel.go for its accuracy.
// Rows are split across par.Threads() workers only for batches above
// ParallelMinElems elements; results do not depend on the thread count.
//
// TargetWriter and Targets record and serve LwF teacher logits: one Arrow IPC
// file per recording, column sample_id (int64, sorted, unique) plus one
// column exit_<j> of fixed_size_list<float32>[C] per exit, raw logits
// (temperature-free). See targets_write.go and targets_read.go.
package distill
