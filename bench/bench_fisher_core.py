"""Core Fisher kernels of exitnet (golib/fisher through the C ABI) against the obvious alternatives.

Run:  PYTHONPATH=python .venv/bin/python bench/bench_fisher_core.py [--p 11000000] [--n 256] [--reps 3]
      [--only rows,linear,penalty]

1. rows     Σ_n g_n² over per-sample gradient rows N×P float32 (N=256, P=11M: 11.3 GB of rows;
            use --p to shrink, the GB/s figure does not depend on P once the rows exceed L3):
            exitnet update_rows on 1 and 2 threads vs numpy einsum('ij,ij->j') (float32, one core).
            Targets: ≥10 GB/s on one core, ≥20 GB/s on two, ≥1.4× numpy.
2. linear   exact per-sample Fisher of an MLP 784-512-512-10 at batch 256 from layer factors
            (A, G already captured: three update_linear calls = three GEMMs on squared factors)
            vs one batched backward pass (forward + mean CE + backward), and vs torch.func
            vmap(grad) per-sample gradients + squaring + sum. Targets: ≤1.5× backward, ≥50× vmap.
            (The end-to-end torch path with hooks is bench/bench_fisher_torch.py.)
3. penalty  EWC value + gradient at P=11M (one (F, θ*) pair), one thread: exitnet ewc_penalty
            (into a reused output buffer, and returning a new array) vs numpy vs torch CPU.
            Target: ≤15 ms.

Times are process CPU time (what the cores did; with 2 threads the sum over both), best of
--reps, contenders interleaved round robin; wall time is printed beside it (under load from
other processes wall time is not a property of the code). Ratios and the 1-thread GB/s use CPU
time; the 2-thread GB/s uses wall time (CPU time would add both threads). The machine line
(one core's read GB/s, sgemm GFLOP/s, load average) comes first.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import load_average, machine_line  # noqa: E402  (one BLAS thread, before numpy)

import numpy as np  # noqa: E402


class T:
    """Best process CPU time and best wall time of one contender (seconds)."""

    def __init__(self, cpu, wall):
        self.cpu, self.wall = cpu, wall


def times(fns, reps):
    """{name: T} over reps rounds, the contenders interleaved (load hits all alike)."""
    cpu = {k: [] for k in fns}
    wall = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            cpu[k].append(time.process_time() - c0)
            wall[k].append(time.perf_counter() - w0)
    return {k: T(min(cpu[k]), min(wall[k])) for k in fns}


def row(name, t, extra=""):
    print(f"  {name:<44s} {t.cpu * 1e3:10.2f} ms CPU  ({t.wall * 1e3:9.2f} ms wall)  {extra}")


def _mem_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def bench_rows(n, p, reps):
    import exitnet
    from exitnet import fisher

    avail = _mem_available()
    if avail and n * p * 4 > 0.6 * avail:  # the GB/s figure does not need all N rows
        n2 = max(8, int(0.6 * avail / (4 * p)) // 8 * 8)
        print(f"rows: N={n} x P={p} needs {n * p * 4 / 1e9:.1f} GB, {avail / 1e9:.1f} GB available: using N={n2}")
        n = n2
    print(f"rows: N={n} x P={p} float32 ({n * p * 4 / 1e9:.2f} GB)")
    rng = np.random.default_rng(0)
    rows = np.empty((n, p), np.float32)
    for i in range(n):  # cheap fill: one random row, scaled copies
        if i == 0:
            rows[0] = rng.standard_normal(p, dtype=np.float32)
        else:
            np.multiply(rows[0], np.float32(1 + i / n), out=rows[i])
    gb = rows.nbytes / 1e9
    acc = fisher.FisherAccumulator({"theta": (p,)}, label_mode="empirical")

    def go(th):
        exitnet.set_num_threads(th)
        acc.update_rows(rows)

    out = np.empty(p, np.float32)
    go(1), go(2)  # warm-up
    np.einsum("ij,ij->j", rows[:, :1000], rows[:, :1000])
    ts = times({1: lambda: go(1), 2: lambda: go(2),
                "np": lambda: np.einsum("ij,ij->j", rows, rows, out=out)}, reps)
    res, t_np = ts, ts["np"]
    exitnet.set_num_threads(2)
    # correctness spot check against float64
    acc.reset()
    acc.update_rows(rows)
    s, _ = acc.state()
    ref = (rows[:, :1000].astype(np.float64) ** 2).sum(0)
    assert np.allclose(s["theta"][:1000], ref, rtol=1e-12)
    acc.close()
    row("exitnet update_rows, 1 thread", res[1], extra=f"{gb / res[1].cpu:6.1f} GB/s (CPU)")
    row("exitnet update_rows, 2 threads", res[2], extra=f"{gb / res[2].wall:6.1f} GB/s (wall)")
    row("numpy einsum('ij,ij->j') (float32 sums)", t_np, extra=f"{gb / t_np.cpu:6.1f} GB/s (CPU)")
    print(f"  ratio numpy/exitnet (CPU time): 1 thread {t_np.cpu / res[1].cpu:.2f}x; "
          f"2 threads, wall: {t_np.wall / res[2].wall:.2f}x")
    del rows


def bench_linear(reps):
    import torch
    from torch import nn
    from torch.func import functional_call, grad, vmap

    import exitnet
    from exitnet import fisher

    exitnet.set_num_threads(1)
    torch.set_num_threads(1)
    print(f"linear: MLP 784-512-512-10, batch 256, 1 thread (GEMM backend: {exitnet.blas_backend()})")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    x = torch.randn(256, 784)
    y = torch.randint(0, 10, (256,))
    lins = [m for m in model if isinstance(m, nn.Linear)]
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]

    # factors: inputs of every Linear and per-sample output gradients (sum-reduced loss)
    acts, outs = [], []
    def hook(m, i, o):
        acts.append(i[0].detach())
        o.retain_grad()
        outs.append(o)

    hs = [m.register_forward_hook(hook) for m in lins]
    loss = nn.functional.cross_entropy(model(x), y, reduction="sum")
    loss.backward()
    for h in hs:
        h.remove()
    A = [a.numpy() for a in acts]
    G = [o.grad.numpy() for o in outs]
    layout = {}
    for nm, m in zip(names, lins):
        layout[nm + ".weight"] = tuple(m.weight.shape)
        layout[nm + ".bias"] = tuple(m.bias.shape)
    acc = fisher.FisherAccumulator(layout, label_mode="empirical")

    def factors():
        for nm, a, g in zip(names, A, G):
            acc.update_linear(nm + ".weight", nm + ".bias", a, g)
        acc.add_samples(256)

    def backward():
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()

    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss1(p, xi, yi):
        return nn.functional.cross_entropy(functional_call(model, p, (xi[None],)), yi[None])

    per_sample = vmap(grad(loss1), in_dims=(None, 0, 0))

    def vmapped():
        g = per_sample(params, x, y)
        return {k: (v * v).sum(0) for k, v in g.items()}

    factors(), backward(), vmapped()
    ts = times({"f": factors, "b": backward, "v": vmapped}, reps * 3)
    t_f, t_b, t_v = ts["f"], ts["b"], ts["v"]
    # agreement with vmap (float32 both): mean over samples
    acc.reset()
    factors()
    F_ = acc.compute()
    ref = vmapped()
    err = max(float(np.abs(F_[k] - ref[k].numpy() / 256).max() / (np.abs(ref[k].numpy() / 256).max() + 1e-30))
              for k in ref)
    acc.close()
    row("exitnet update_linear x3 (factors given)", t_f)
    row("torch one batched backward (fwd + bwd)", t_b)
    row("torch.func vmap per-sample grads + square", t_v)
    print(f"  ratio (CPU time) exitnet/backward {t_f.cpu / t_b.cpu:.2f}x (target <= 1.5); "
          f"vmap/exitnet {t_v.cpu / t_f.cpu:.0f}x "
          f"(target >= 50); max rel. diff vs vmap {err:.1e}")


def bench_penalty(p, reps):
    import torch

    import exitnet
    from exitnet import fisher

    exitnet.set_num_threads(1)
    torch.set_num_threads(1)
    print(f"penalty: value + gradient, P={p}, one (F, θ*) pair, 1 thread")
    rng = np.random.default_rng(1)
    th = rng.standard_normal(p, dtype=np.float32)
    an = rng.standard_normal(p, dtype=np.float32)
    fi = rng.random(p, dtype=np.float32)
    lam = 10.0
    go = lambda: fisher.ewc_penalty({"t": th}, {"t": fi}, {"t": an}, lam)  # noqa: E731
    buf = {"t": np.empty(p, np.float32)}
    go_into = lambda: fisher.ewc_penalty({"t": th}, {"t": fi}, {"t": an}, lam, out=buf)  # noqa: E731

    def np_pen():
        d = th - an
        fd = fi * d
        return 0.5 * lam * float(np.dot(fd, d)), lam * fd

    tt, ta, tf = (torch.from_numpy(v) for v in (th, an, fi))

    def torch_pen():
        d = tt - ta
        fd = tf * d
        return 0.5 * lam * float(torch.dot(fd, d)), lam * fd

    go(), go_into()
    ts = times({"go": go, "into": go_into, "np": np_pen, "torch": torch_pen}, reps * 3)
    t_go, t_into, t_np, t_t = ts["go"], ts["into"], ts["np"], ts["torch"]
    v_go, g_go = go()
    v_np, g_np = np_pen()
    d64 = th.astype(np.float64) - an
    v64 = 0.5 * lam * float(np.dot(fi * d64, d64))
    assert abs(v_go - v64) <= 1e-6 * abs(v64), (v_go, v64)
    print(f"  value rel. error vs float64: exitnet {abs(v_go - v64) / v64:.1e}, numpy float32 {abs(v_np - v64) / v64:.1e}")
    assert np.allclose(g_go["t"], g_np, rtol=1e-6)
    row("exitnet ewc_penalty (out= reused buffer)", t_into, extra=f"{16 * p / 1e9 / t_into.cpu:6.1f} GB/s (CPU)")
    row("exitnet ewc_penalty (new grad array)", t_go, extra=f"{16 * p / 1e9 / t_go.cpu:6.1f} GB/s (CPU)")
    row("numpy (d, F*d, dot, lam*)", t_np)
    row("torch CPU (same expression)", t_t)
    print(f"  ratio (CPU time) numpy/exitnet {t_np.cpu / t_into.cpu:.1f}x (out=), {t_np.cpu / t_go.cpu:.1f}x "
          f"(new array); torch/exitnet {t_t.cpu / t_into.cpu:.1f}x (target <= 15 ms)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--p", type=int, default=11_000_000)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default="rows,linear,penalty")
    a = ap.parse_args()
    parts = a.only.split(",")
    print(machine_line())
    for name, fn in (("rows", lambda: bench_rows(a.n, a.p, a.reps)), ("linear", lambda: bench_linear(a.reps)),
                     ("penalty", lambda: bench_penalty(a.p, a.reps))):
        if name in parts:
            fn()
            print(f"  load average {load_average()}")


if __name__ == "__main__":
    main()
