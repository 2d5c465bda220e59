"""Exact budget curve vs a 1001-point numpy threshold grid (K=4, N=10,000, C=100).

Both start from the same precomputed confidences (exitnet.policy.confidence), on one
thread. Printed side by side with the ratio. The confidence computation itself (the
softmax over K·N·C logits, shared by both) is timed separately, next to numpy's
max softmax and argmax over the same float32 logits.

    PYTHONPATH=python .venv/bin/python bench/bench_policy.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from exitnet import _core, policy


def best_of(fn, repeat):
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return min(t)


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--c", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    _core.set_num_threads(1)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, a.c, a.n)
    logits = rng.normal(size=(a.k, a.n, a.c)).astype(np.float32)
    logits[:, np.arange(a.n), labels] += np.linspace(0.5, 3, a.k)[:, None].astype(np.float32)
    cost = policy.CostModel(np.full(a.k, 1e6), np.full(a.k, 1e4))
    t_conf = best_of(lambda: policy.confidence(logits), a.repeat)
    s = policy.confidence(logits)
    t_np_conf = best_of(lambda: numpy_max_softmax(logits), a.repeat)
    np_conf, np_pred = numpy_max_softmax(logits)
    assert np.allclose(s.confidence, np_conf, atol=1e-6) and (s.prediction == np_pred).all()
    taus = np.linspace(0, 1, 1001)

    t_exact = best_of(lambda: policy.exact_curve(s, labels, cost), a.repeat)
    curve = policy.exact_curve(s, labels, cost)
    t_loop = best_of(lambda: grid_loop(s.confidence, s.prediction, labels, cost.costs, taus), max(1, a.repeat // 2))
    t_vec = best_of(lambda: grid_vectorised(s.confidence, s.prediction, labels, cost.costs, taus), a.repeat)

    # the grid agrees with the exact curve where it samples it
    g = grid_vectorised(s.confidence, s.prediction, labels, cost.costs, taus)
    tau = curve.column("tau").to_numpy()
    acc = curve.column("accuracy").to_numpy()
    idx = np.array([np.nonzero(tau >= t)[0][-1] for t in taus])
    assert np.allclose(acc[idx], g[:, 0])

    print(f"K={a.k} N={a.n} C={a.c}, one thread, best of {a.repeat}")
    print(f"  confidences (softmax, shared by all)   {t_conf * 1e3:9.2f} ms")
    print(f"  numpy max softmax + argmax             {t_np_conf * 1e3:9.2f} ms   ratio {t_np_conf / t_conf:6.1f}x")
    print(f"  exitnet exact curve ({curve.num_rows} points)   {t_exact * 1e3:9.2f} ms")
    print(f"  numpy grid, 1001 points, loop          {t_loop * 1e3:9.2f} ms   ratio {t_loop / t_exact:6.1f}x")
    print(f"  numpy grid, 1001 points, vectorised    {t_vec * 1e3:9.2f} ms   ratio {t_vec / t_exact:6.1f}x")


if __name__ == "__main__":
    main()
