"""Exact budget curve vs the best numpy alternative (K=4, C=100, N=10,000 and 100,000).

The real peer is the exact numpy sweep (numpy_sweep below: records of the running max, one
argsort, cumulative sums of the correctness and histogram deltas, the same columns with the exit
histograms); a 1001-point threshold grid (loop and vectorised) is shown too. All start from the
same precomputed confidences (exitnet.policy.confidence), on one thread, and are checked equal to
the exact curve before timing. Times are process CPU time, contenders interleaved, best of
--repeat; the machine line (one core's read GB/s, sgemm GFLOP/s, load average) comes first.
The confidence computation itself (the softmax over K·N·C logits, shared by all) is timed
separately, next to numpy's max softmax and argmax over the same float32 logits.

    PYTHONPATH=python .venv/bin/python bench/bench_policy.py [--n 10000 100000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import cpu_times, machine_line  # noqa: E402  (one BLAS thread, before numpy)

import numpy as np  # noqa: E402

from exitnet import _core, policy  # noqa: E402


def best_of(fn, repeat):
    t = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        t.append(time.process_time() - t0)
    return min(t)


def numpy_sweep(conf, pred, labels, costs):
    """The exact global-threshold curve in numpy: every record of the running max over exits
    0..K-2 is an event (sample i moves to exit k from its next record exit, or K-1); sort the
    events by value (descending), cumulative sums of the correctness and histogram deltas, keep
    the last event of each run of equal values. Returns tau, correct, hist (P, K), accuracy,
    mean cost, speed-up, in exitnet's order (row 0: tau = +inf)."""
    K, N = conf.shape
    correct = pred == labels[None, :]
    M = np.maximum.accumulate(conf[:-1], axis=0)
    rec = np.empty(M.shape, bool)
    rec[0] = True
    rec[1:] = M[1:] > M[:-1]
    ii, kk = np.nonzero(rec.T)  # by sample, then exit
    old = np.full(ii.shape, K - 1)
    same = ii[1:] == ii[:-1]
    old[:-1][same] = kk[1:][same]
    vals = conf[kk, ii]
    order = np.argsort(-vals, kind="stable")
    v, k, o, i = vals[order], kk[order], old[order], ii[order]
    E = len(v)
    dh = np.zeros((E + 1, K), np.int64)
    dh[0, K - 1] = N
    r = np.arange(1, E + 1)
    dh[r, k] = 1
    dh[r, o] = -1  # k < o: distinct cells
    hist = np.cumsum(dh, axis=0)
    dc = correct[k, i].astype(np.int64) - correct[o, i]
    corr = np.concatenate(([correct[K - 1].sum()], dc)).cumsum()
    last = np.ones(E, bool)
    last[:-1] = v[1:] != v[:-1]
    sel = np.concatenate(([0], 1 + np.nonzero(last)[0]))
    tau = np.concatenate(([np.inf], v[last])).astype(np.float32)
    h = hist[sel]
    mean_cost = h @ costs / N
    return tau, corr[sel], h, corr[sel] / N, mean_cost, costs[-1] / mean_cost


def grid_loop(conf, pred, labels, costs, taus):
    """What the anchors do: one pass over the exits per threshold."""
    K, N = conf.shape
    correct = pred == labels  # (K, N)
    out = np.empty((len(taus), 2))
    for j, t in enumerate(taus):
        ex = np.full(N, K - 1)
        done = np.zeros(N, bool)
        for k in range(K - 1):
            take = ~done & (conf[k] >= t)
            ex[take] = k
            done |= take
        out[j, 0] = correct[ex, np.arange(N)].mean()
        out[j, 1] = costs[ex].mean()
    return out


def grid_vectorised(conf, pred, labels, costs, taus, chunk=64):
    """A vectorised grid: exit = number of exits whose running max is below τ."""
    K, N = conf.shape
    M = np.maximum.accumulate(conf[:-1], axis=0)  # (K-1, N)
    correct = pred == labels
    out = np.empty((len(taus), 2))
    ar = np.arange(N)
    for j0 in range(0, len(taus), chunk):
        t = np.asarray(taus[j0:j0 + chunk])[:, None, None]
        ex = (M[None] < t).sum(axis=1)  # (G, N)
        out[j0:j0 + chunk, 0] = correct[ex, ar].mean(axis=1)
        out[j0:j0 + chunk, 1] = costs[ex].mean(axis=1)
    return out


def numpy_max_softmax(logits):
    """numpy's max softmax and argmax over the last axis (float32, max-subtracted)."""
    m = logits.max(axis=-1, keepdims=True)
    e = np.exp(logits - m)
    return 1.0 / e.sum(axis=-1), logits.argmax(axis=-1)


def run(n, k, c, repeat):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, c, n)
    logits = rng.normal(size=(k, n, c)).astype(np.float32)
    logits[:, np.arange(n), labels] += np.linspace(0.5, 3, k)[:, None].astype(np.float32)
    cost = policy.CostModel(np.full(k, 1e6), np.full(k, 1e4))
    s = policy.confidence(logits)
    np_conf, np_pred = numpy_max_softmax(logits)
    assert np.allclose(s.confidence, np_conf, atol=1e-6) and (s.prediction == np_pred).all()
    taus = np.linspace(0, 1, 1001)

    # every peer agrees with the exact curve before it is timed
    curve = policy.exact_curve(s, labels, cost)
    tau, corr, hist, acc_np, mc, sp = numpy_sweep(s.confidence, s.prediction, labels, cost.costs)
    assert np.array_equal(curve.column("tau").to_numpy(), tau)
    assert np.array_equal(curve.column("correct").to_numpy(), corr)
    assert np.array_equal(np.stack(curve.column("exit_histogram").to_numpy(zero_copy_only=False)), hist)
    assert np.allclose(curve.column("mean_cost").to_numpy(), mc, rtol=1e-12)
    g = grid_vectorised(s.confidence, s.prediction, labels, cost.costs, taus)
    ctau = curve.column("tau").to_numpy()
    acc = curve.column("accuracy").to_numpy()
    idx = np.array([np.nonzero(ctau >= t)[0][-1] for t in taus])
    assert np.allclose(acc[idx], g[:, 0])

    fns = {
        "exact": lambda: policy.exact_curve(s, labels, cost),
        "sweep": lambda: numpy_sweep(s.confidence, s.prediction, labels, cost.costs),
        "grid": lambda: grid_vectorised(s.confidence, s.prediction, labels, cost.costs, taus),
    }
    ts = {name: min(v) for name, v in cpu_times(fns, repeat).items()}
    t_loop = best_of(lambda: grid_loop(s.confidence, s.prediction, labels, cost.costs, taus), max(1, repeat // 4))
    t_conf = best_of(lambda: policy.confidence(logits), max(1, repeat // 2))
    t_np_conf = best_of(lambda: numpy_max_softmax(logits), max(1, repeat // 2))
    te = ts["exact"]
    print(f"\nK={k} N={n} C={c}, one thread, process CPU time, best of {repeat} (interleaved)")
    print(f"  numpy exact sweep (sort + cumsum, histograms) / exitnet = {ts['sweep'] / te:6.1f}x   (target >= 5x)")
    print(f"  numpy grid, 1001 points, vectorised / exitnet           = {ts['grid'] / te:6.1f}x")
    print(f"  numpy grid, 1001 points, loop / exitnet                 = {t_loop / te:6.1f}x")
    print(f"  exitnet exact curve ({curve.num_rows} points)      {te * 1e3:9.2f} ms")
    print(f"  numpy exact sweep                        {ts['sweep'] * 1e3:9.2f} ms")
    print(f"  numpy grid, vectorised                   {ts['grid'] * 1e3:9.2f} ms")
    print(f"  numpy grid, loop                         {t_loop * 1e3:9.2f} ms")
    print(f"  confidences (softmax, shared by all)     {t_conf * 1e3:9.2f} ms   "
          f"({4 * k * n * c / t_conf / 1e9:.1f} GB/s of logits)")
    print(f"  numpy max softmax + argmax               {t_np_conf * 1e3:9.2f} ms   ratio {t_np_conf / t_conf:6.1f}x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--c", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=9)
    a = ap.parse_args()
    _core.set_num_threads(1)
    print(machine_line())
    for n in a.n:
        run(n, a.k, a.c, a.repeat)


if __name__ == "__main__":
    main()
