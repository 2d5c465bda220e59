// Package policy holds exitnet's early-exit policies: per-exit confidence
// measures, exit assignment for thresholds, the declared cost model, the exact
// accuracy-versus-cost curve for a global threshold, calibration on a
// validation split, and curve summaries.
//
// # Data
//
// Logits are float32, row-major N×C, one matrix per exit k = 0..K−1 (exit 0 is
// the shallowest). Scores are stored exit-major: Conf[k][i], Pred[k][i].
// Confidences are computed in float32 with the vectorised exp of golib/internal/vexp
// (≤ 3 ulp; the entropy's Σ e·(z−m) is summed in float64) and stored as float32.
// Identical logit rows always get bit-identical confidences, wherever they sit in
// a batch and whatever the thread count, so ties stay exact. Every measure is
// "higher = more confident" (see Measure). Temperature T_k > 0 divides exit k's
// logits before the softmax (1 = none).
//
// # Policy
//
// Sample i leaves at the first exit k < K−1 with Conf[k][i] ≥ τ_k; the last exit
// always accepts. A global τ is τ_k = τ for every k.
//
// # Cost model
//
// Costs are in MACs (any unit works if it is the same for every exit), float64.
// Leaving at exit k costs
//
//	cost_k = Σ_{j≤k} (stage_j + head_j)
//
// since every stage and head up to k ran. Full cost = cost_{K−1};
// speed-up = full cost / mean cost, and
//
//	mean cost = Σ_k hist_k·cost_k / N,   accuracy = correct / N,
//
// computed from the exit histogram, so equal states give bit-identical costs.
//
// # Exact curve
//
// With a global τ and the running maximum M_ik = max_{j≤k} Conf[j][i], sample i
// leaves at
//
//	e_i(τ) = min{k < K−1 : M_ik ≥ τ}   (K−1 if there is none),
//
// which changes only where τ crosses a record value of M_i· (a strict increase
// of the running maximum) at an exit k < K−1. There are at most N·(K−1) such
// events; sorting them (descending, radix sort on the float bits) and sweeping
// gives every distinct operating point in O(NK log NK). Point 0 is τ = +Inf
// (everyone at the last exit); the point with threshold v describes every τ in
// (v_previous, v]. Equal event values are applied together, so ties are exact.
//
// # Errors
//
// Errors are *xerr.Error with StatusInvalidArgument; messages start with the
// argument's name as the user sees it (logits, labels, costs, thresholds,
// target_cost, budgets, ...).
package policy
