// Package fisher accumulates the diagonal Fisher information of a model's
// parameters, consolidates Fishers across early exits and evaluates the EWC
// penalty.
//
// # Conventions
//
// Everything is float32, row-major and dst-first (gonum style). A Layout is
// an ordered list of named tensors; parameter i occupies the flat range
// [Offset(i), Offset(i)+Size(i)) of every flat buffer (sums, Fishers,
// anchors, gradients). Shapes follow PyTorch (Linear weight out×in, Conv2d
// weight Cout×(Cin/groups)×kh×kw). nil weights mean every weight is 1.
//
// The accumulator keeps float64 sums and an int64 sample count:
//
//	S_i = Σ_n w_n · g_{n,i}²          (g_n: per-sample gradient of sample n)
//	F_i = S_i / N                       (Compute; normalisation "mean_over_samples")
//
// Counting is explicit: updates add to S only; AddSamples(n) adds n to N. A
// training step that feeds several layers of the same batch calls AddSamples
// once for the batch. The gradients must be per-sample gradients of the loss of
// that sample alone (sum-reduced loss, not mean-reduced).
//
// Input modes (granularity "per_sample"):
//
//	rows:    S += Σ_n w_n g_n∘g_n                                 (g_n: one row of N×P)
//	linear:  S_W += (w∘G∘G)ᵀ (A∘A),  S_b += Σ_n w_n G_n∘G_n        (one GEMM, y = W a + b)
//	conv2d:  S_W += Σ_n w_n (G_n U_nᵀ)∘(G_n U_nᵀ)  per group,       (U_n: im2col of x_n)
//	         S_b += Σ_n w_n (Σ_l G_{n,:,l})²
//	squared: S += sq                                               (Σ_n g_n² summed by the caller)
//
// Label modes (metadata, chosen by the caller): "empirical" (true labels),
// "sampled" (labels drawn from softmax(logits), see SampleLabels), "argmax",
// "exact" (every class c of every sample, each row weighted by p(c|x), see
// ClassProbs) and "batched".
//
// Granularity "batched" (label mode "batched") exists only to reproduce what
// several continual-learning libraries compute: the square of the minibatch
// gradient of the mean-reduced loss, m_b = (1/B) Σ_{n∈b} g_n. UpdateSquared(name,
// sq=m_b∘m_b, n=B) stores
//
//	S += B · m_b∘m_b,   and AddSamples(B) counts B samples, so
//	F_batched = Σ_b B_b m_b² / Σ_b B_b
//
// which for equal batch sizes is exactly mean over minibatches of m_b², the
// value those libraries report (about F/B near convergence). The other update
// modes are refused in batched granularity.
//
// EWC penalty (the ½ convention), over K (Fisher, anchor) pairs:
//
//	value = λ/2 · Σ_k Σ_i F_{k,i} (θ_i − θ*_{k,i})²
//	grad_i = λ · Σ_k F_{k,i} (θ_i − θ*_{k,i})
//
// Labels: SampleLabels draws label r from softmax(logits_r) with the uniform
// splitmix64(splitmix64(seed) ^ (r + rowOffset)) / 2⁶⁴ (inverse CDF), so labels
// depend only on (seed, global row, logits); ClassProbs gives p(c|x) for "exact".
//
// Files: SaveState / LoadState write and validate an Arrow IPC file of Fishers,
// anchors and metadata (see State), atomically and with a whole-file CRC-32C;
// Accumulator.Save / LoadAccumulator checkpoint an accumulator exactly.
//
// Consolidation across exits: "separate" (keep the list), "sum" (Σ_k F_k),
// "weighted" (Σ_k c_k F_k) and "online" (F ← γ·F + F_k over the list in order,
// oldest first, γ ∈ (0, 1]).
package fisher
