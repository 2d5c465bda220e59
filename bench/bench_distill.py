"""LwF distillation benchmarks: exitnet vs torch vs numpy, side by side, one core.

1. KD loss + gradient on 4096×100 float32 logits (T = 2):
   - exitnet: ``distill.kd_loss`` on numpy (raw pointers, gradient in a numpy array), on
     pyarrow (Arrow C Data in, gradient out as a C-heap Arrow array), and the bare
     ``exitnet_distill_kd_loss_raw`` ctypes call;
   - torch (no autograd): ``F.kl_div(F.log_softmax(s/T), F.log_softmax(t/T), log_target=True)``
     plus the explicit gradient ``T/N·(exp(ls) − exp(lt))``;
   - torch autograd (for reference): the same loss, ``.backward()``;
   - numpy: the same formulas in float32.
   Target (issue 2): ≤ 3 ns per element, ≥ 2× torch, ≥ 5× numpy.
2. Gather 256 rows × 100 classes from a 60,000-row target file: native TargetStore
   (raw buffer and Arrow out) and the pure-Python TargetFile. Target: ≤ 50 µs per call.
3. Per-call overhead from Python: a trivial call (exitnet_get_num_threads) and a 1×1 KD loss.

Run: ``PYTHONPATH=python .venv/bin/python bench/bench_distill.py`` (after ``make lib``).
"""

from __future__ import annotations

import ctypes
import os
import tempfile
import time

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F

import exitnet
from exitnet import _lib, distill

torch.set_num_threads(1)
exitnet.set_num_threads(1)


# Process CPU time, not wall time: every contender runs on one thread, and on a
# machine shared with other jobs CPU time does not count the time spent descheduled.
clock = time.process_time


def bench_all(fns, min_time=0.05, rounds=21):
    """Best mean CPU seconds per call of each function. Rounds interleave the
    contenders (other jobs on the machine disturb them alike), each round timing
    every function for about `min_time`; the best round counts."""
    counts = {}
    for k, fn in fns.items():
        fn()
        n, t0 = 0, clock()
        while clock() - t0 < min_time:
            fn()
            n += 1
        counts[k] = max(n, 1)
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = clock()
            for _ in range(counts[k]):
                fn()
            best[k] = min(best[k], (clock() - t0) / counts[k])
    return best


def bench(fn):
    return bench_all({"f": fn})["f"]


def row(name, sec, elems=None, base=None):
    s = f"  {name:<56s} {sec * 1e6:10.1f} µs"
    if elems:
        s += f"  {sec * 1e9 / elems:6.2f} ns/elem"
    if base is not None:
        s += f"  {sec / base:6.2f}× exitnet"
    print(s)


def main() -> None:
    N, C, T = 4096, 100, 2.0
    rng = np.random.default_rng(0)
    s = (rng.standard_normal((N, C)) * 3).astype(np.float32)
    t = (rng.standard_normal((N, C)) * 3).astype(np.float32)
    ts, tt = torch.from_numpy(s), torch.from_numpy(t)

    def torch_plain():
        with torch.no_grad():
            ls, lt = F.log_softmax(ts / T, 1), F.log_softmax(tt / T, 1)
            loss = F.kl_div(ls, lt, reduction="batchmean", log_target=True) * T * T
            grad = (ls.exp() - lt.exp()) * (T / N)
        return loss.item(), grad

    def torch_autograd():
        x = ts.detach().requires_grad_(True)
        loss = F.kl_div(F.log_softmax(x / T, 1), F.log_softmax(tt / T, 1), reduction="batchmean", log_target=True) * T * T
        loss.backward()
        return loss.item(), x.grad

    def numpy_ref():
        a, b = s / np.float32(T), t / np.float32(T)
        a = a - a.max(1, keepdims=True)
        b = b - b.max(1, keepdims=True)
        ls = a - np.log(np.exp(a).sum(1, keepdims=True))
        lt = b - np.log(np.exp(b).sum(1, keepdims=True))
        qt = np.exp(lt)
        loss = float((qt * (lt - ls)).sum()) / N * T * T
        grad = (np.exp(ls) - qt) * np.float32(T / N)
        return loss, grad

    g = np.empty_like(s)
    out = ctypes.c_double()
    raw = _lib.fn("exitnet_distill_kd_loss_raw")
    sp, tp, gp = s.ctypes.data, t.ctypes.data, g.ctypes.data

    def exitnet_raw():
        raw(ctypes.byref(out), gp, sp, tp, N, C, T)
        return out.value, g

    # same answers first
    l0, g0 = distill.kd_loss(s, t, T)
    for name, f in (("torch", torch_plain), ("numpy", numpy_ref), ("raw", exitnet_raw)):
        l1, g1 = f()
        assert abs(l1 - l0) < 1e-4 * l0, (name, l1, l0)
        assert np.abs(np.asarray(g1) - g0).max() < 1e-6, name

    print(f"KD loss + gradient, {N}×{C} float32, T={T}, 1 thread ({distill.__name__}, torch {torch.__version__})")
    ps, pt = pa.FixedSizeListArray.from_arrays(pa.array(s.reshape(-1)), C), pa.FixedSizeListArray.from_arrays(pa.array(t.reshape(-1)), C)
    gbuf = np.empty_like(s)
    r = bench_all({
        "np": lambda: distill.kd_loss(s, t, T),
        "np_out": lambda: distill.kd_loss(s, t, T, out=gbuf),
        "arrow": lambda: distill.kd_loss(ps, pt, T),
        "raw": exitnet_raw,
        "torch": torch_plain,
        "autograd": torch_autograd,
        "numpy": numpy_ref,
    })
    e = r["np"]
    el = N * C
    row("exitnet distill.kd_loss (numpy in, new grad)", r["np"], el, e)
    row("exitnet distill.kd_loss (numpy in, out= grad)", r["np_out"], el, e)
    row("exitnet distill.kd_loss (pyarrow in, Arrow out)", r["arrow"], el, e)
    row("exitnet kd_loss_raw (direct ctypes call)", r["raw"], el, e)
    row("torch no-autograd (kl_div + explicit grad)", r["torch"], el, e)
    row("torch autograd (kl_div + backward)", r["autograd"], el, e)
    row("numpy float32", r["numpy"], el, e)
    print(f"  ratios: torch/exitnet = {r['torch'] / e:.2f}× (target ≥ 2), numpy/exitnet = {r['numpy'] / e:.2f}× "
          f"(target ≥ 5), exitnet = {e * 1e9 / el:.2f} ns/elem (target ≤ 3)")

    print("\nGather 256 rows × 100 classes from a 60,000-row target file (random ids)")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "targets.arrow")
        R = 60_000
        with distill.TargetWriter(path, num_exits=2, num_classes=C) as w:
            ids = np.arange(R, dtype=np.int64)
            for j in range(2):
                for lo in range(0, R, 10_000):
                    w.add(j, ids[lo:lo + 10_000], rng.standard_normal((10_000, C)).astype(np.float32))
        q = rng.choice(R, 256).astype(np.int64)
        sparse = os.path.join(d, "sparse.arrow")  # non-contiguous ids: binary search path
        with distill.TargetWriter(sparse, num_exits=1, num_classes=C) as w:
            w.add(0, ids * 7 + 3, rng.standard_normal((R, C)).astype(np.float32))
        qs = q * 7 + 3
        with distill.TargetStore(path) as st, distill.read_targets(path) as tf, \
                distill.TargetStore(sparse) as st2, distill.read_targets(sparse) as tf2:
            buf = np.empty((256, C), np.float32)
            np.testing.assert_array_equal(st.gather(q, 1), tf.gather(q, 1))
            g = bench_all({
                "a": lambda: st.gather(q, 1, out=buf),
                "b": lambda: st.gather_arrow(q, 1),
                "c": lambda: tf.gather(q, 1),
                "d": lambda: st2.gather(qs, 0, out=buf),
                "e": lambda: tf2.gather(qs, 0),
            })
            a, b, c, d2, e = g["a"], g["b"], g["c"], g["d"], g["e"]
            row("TargetStore.gather (native, into buffer)", a)
            row("TargetStore.gather_arrow (native, Arrow out)", b)
            row("TargetFile.gather (pyarrow + numpy, fork-safe)", c)
            row("TargetStore.gather, sparse ids (binary search)", d2)
            row("TargetFile.gather, sparse ids (searchsorted)", e)
            print("  target: ≤ 50 µs per call")

    print("\nPer-call overhead from Python (ctypes)")
    nthreads = _lib.fn("exitnet_get_num_threads")
    ci = ctypes.c_int()
    row("exitnet_get_num_threads (trivial call)", bench(lambda: nthreads(ctypes.byref(ci))))
    s1, t1, g1 = s[:1, :1].copy(), t[:1, :1].copy(), np.empty((1, 1), np.float32)
    p1, q1, r1 = s1.ctypes.data, t1.ctypes.data, g1.ctypes.data
    row("kd_loss_raw 1×1 (ctypes, no Arrow)", bench(lambda: raw(ctypes.byref(out), r1, p1, q1, 1, 1, T)))
    row("distill.kd_loss 1×1 (numpy, raw pointers)", bench(lambda: distill.kd_loss(s1, t1, T)))
    a1, b1 = pa.FixedSizeListArray.from_arrays(pa.array(s1.reshape(-1)), 1), pa.FixedSizeListArray.from_arrays(pa.array(t1.reshape(-1)), 1)
    row("distill.kd_loss 1×1 (pyarrow → Arrow C Data → pyarrow)", bench(lambda: distill.kd_loss(a1, b1, T)))
    row("distill.kd_loss_torch 1×1 (torch, for comparison)",
        bench(lambda: distill.kd_loss_torch(torch.from_numpy(s1), torch.from_numpy(t1), T)))


if __name__ == "__main__":
    main()
