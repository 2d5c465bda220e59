"""Per-sample Fisher from layer factors (exitnet.torch) vs a batched backward pass and torch.func.

Run:  PYTHONPATH=python .venv/bin/python bench/bench_fisher_torch.py [--threads 1] [--reps 7]

Contenders (timed in one process, round robin, so that load from other processes hits all alike;
peak memory measured in one subprocess per contender):

  backward      one ordinary training backward pass: forward, mean cross-entropy, loss.backward()
                (the parameter .grad of the minibatch; what the "batched" Fisher squares)
  factors       exitnet.torch: forward with hooks, one backward of the sum-reduced loss to the
                layer outputs, Go accumulates (G∘G)ᵀ(A∘A) (Linear) or Σ_n (G_n U_nᵀ)² (Conv2d);
                empirical labels, steady state after the first-batch plan
  factors-exact the same with label_mode="exact" (C = 10 backward passes per batch)
  factors-torch backend="torch": the same factor products formed by torch (Linear: one matmul
                (G∘G)ᵀ(A∘A); Conv2d: per-sample weight gradients from one grouped
                convolution_backward per chunk of samples, squared), sums to Go
  vmap          torch.func.vmap(grad(loss)) per-sample gradients of every parameter, squared and
                summed over the batch (what BackPACK-free PyTorch code does)

Workloads: MLP 784-512-512-10 at batch 256; small CNN (conv 1→32→64→128, 3×3, padding 1, ReLU,
on 28×28, then global average pool and Linear 128→10) at batch 64.

Targets (issue 3): MLP factors ≤ 1.5× backward and ≥ 50× faster than vmap; CNN factors ≥ 3×
faster than vmap, with peak memory of both. Peak memory is the growth of the resident set's high
water mark (VmHWM, reset before) over the RSS after setup (torch, the library, model and batch
loaded): "first" covers the contender's own setup (the first-batch plan for the factors) and first
call, "per batch" a later call.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def build(workload: str):
    import torch
    from torch import nn

    torch.manual_seed(0)
    if workload == "mlp":
        model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                              nn.Linear(512, 10))
        x = torch.randn(256, 784)
    else:
        model = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10),
        )
        x = torch.randn(64, 1, 28, 28)
    y = torch.randint(0, 10, (x.shape[0],))
    return model.eval(), x, y


def setup(threads: int):
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import torch

    torch.set_num_threads(threads)
    import exitnet

    exitnet.set_num_threads(threads)  # also loads the shared library
    return exitnet


def make(workload: str, contender: str):
    """Returns (run, info) for one contender on a fresh model and batch."""
    import torch
    from torch import nn

    model, x, y = build(workload)
    params = {n: p for n, p in model.named_parameters()}
    info: dict = {}
    if contender == "backward":
        def run():
            model.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
    elif contender.startswith("factors"):
        from exitnet.torch._fisher_runner import _FisherRunner, _ModeGuard

        mode = "exact" if contender == "factors-exact" else "empirical"
        backend = "torch" if contender == "factors-torch" else "go"
        runner = _FisherRunner(model, None, None, mode, 0, backend)
        _ModeGuard(model, runner.cand.values()).__enter__()
        runner.plan((x, y))
        info["methods"] = sorted(set(runner.methods.values()))

        def run():
            runner.step((x, y))
    elif contender == "vmap":
        from torch.func import functional_call, grad, vmap

        detached = {n: p.detach() for n, p in params.items()}

        def loss(p, xn, yn):
            z = functional_call(model, p, (xn.unsqueeze(0),))
            return nn.functional.cross_entropy(z, yn.unsqueeze(0), reduction="sum")

        def run():
            g = vmap(grad(loss), in_dims=(None, 0, 0))(detached, x, y)
            return {n: (t * t).sum(0) for n, t in g.items()}
    else:
        raise SystemExit(f"unknown contender {contender}")
    return run, info


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    raise KeyError(key)


def memory(workload: str, contender: str, threads: int) -> dict:
    """Child process: peak RSS growth of one contender over the RSS once torch, the library, the
    model and the batch are loaded. ``first``: its setup (the factors' first-batch plan) and first
    call; ``per_batch``: a later call (allocator caches warm). The peak is Linux's VmHWM, reset
    through /proc/self/clear_refs before each phase (so the transient peak of importing torch does
    not hide it)."""
    setup(threads)
    build(workload)

    def reset() -> int:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := current RSS
        return _status_kb("VmRSS")

    base = reset()
    run, _ = make(workload, contender)
    run()
    first = _status_kb("VmHWM") - base
    base = reset()
    run()
    later = _status_kb("VmHWM") - base
    return {"first_mb": first / 1024, "per_batch_mb": later / 1024}


def timing(workload: str, contenders: list[str], threads: int, reps: int) -> dict:
    """In-process, interleaved (round robin) so that load from other processes hits all alike."""
    exitnet = setup(threads)
    runs = {}
    for c in contenders:
        run, info = make(workload, c)
        run()  # warm-up
        runs[c] = (run, info)
    ts: dict[str, list[float]] = {c: [] for c in contenders}
    for r in range(reps):
        for c in contenders:
            if c in ("vmap", "factors-exact") and r >= max(3, reps // 2):
                continue
            t0 = time.perf_counter()
            runs[c][0]()
            ts[c].append(time.perf_counter() - t0)
    out = {}
    for c in contenders:
        v = sorted(ts[c])
        out[c] = {"median_s": v[len(v) // 2], "min_s": v[0], **runs[c][1]}
    out["_blas"] = exitnet.blas_backend()
    return out


def bench_ewc(threads: int, reps: int) -> None:
    """EWC penalty value + gradient at P = 11M float32 (one Fisher/anchor pair): the torch
    expression (forward + autograd backward, what a training step runs) vs Go's fused kernel."""
    exitnet = setup(threads)
    import numpy as np
    import torch

    from exitnet import fisher as gofisher
    from exitnet.torch._ewc import ewc_penalty

    P = 11_000_000
    g = torch.Generator().manual_seed(0)
    theta = torch.nn.Parameter(torch.randn(P, generator=g))
    F = {"w": torch.rand(P, generator=g)}
    A = {"w": torch.randn(P, generator=g)}
    npar = {"w": theta.detach().numpy()}
    npF, npA = {"w": F["w"].numpy()}, {"w": A["w"].numpy()}
    out = {"w": np.empty(P, np.float32)}

    def t_hand():  # what one writes by hand: λ/2·Σ F (θ−θ*)², autograd
        theta.grad = None
        (0.5 * (F["w"] * (theta - A["w"]) ** 2).sum()).backward()

    def t_ours():
        theta.grad = None
        ewc_penalty({"w": theta}, F, A, 1.0).backward()

    def t_go():
        gofisher.ewc_penalty(npar, npF, npA, 1.0, out=out)

    res = {}
    for name, f in (("hand", t_hand), ("ours", t_ours), ("go", t_go)):
        f()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        res[name] = sorted(ts)[len(ts) // 2]
    print(f"\nEWC penalty + gradient, P = 11M float32, one (F, θ*) pair, {exitnet.get_num_threads()} thread(s)")
    print(f"  hand-written torch expression, autograd        {1e3 * res['hand']:8.2f} ms")
    print(f"  exitnet.torch.ewc_penalty + backward (Go path) {1e3 * res['ours']:8.2f} ms")
    print(f"  exitnet.fisher.ewc_penalty (raw kernel, out=)  {1e3 * res['go']:8.2f} ms")
    print(f"  hand-written / exitnet.torch                   {res['hand'] / res['ours']:8.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--workload", choices=["mlp", "cnn", "ewc", "all"], default="all")
    ap.add_argument("--memory", nargs=2, metavar=("WORKLOAD", "CONTENDER"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.memory:
        print(json.dumps(memory(a.memory[0], a.memory[1], a.threads)))
        return
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "python") + os.pathsep + env.get("PYTHONPATH", "")
    workloads = ["mlp", "cnn"] if a.workload == "all" else [a.workload] if a.workload != "ewc" else []
    contenders = ["backward", "factors", "factors-torch", "factors-exact", "vmap"]
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    print(f"threads={a.threads} reps={a.reps} load average={load:.1f} on {os.cpu_count()} CPUs "
          "(median ms per batch, contenders interleaved; memory: peak RSS growth, one process each)")
    for w in workloads:
        res = timing(w, contenders, a.threads, a.reps)
        blas = res.pop("_blas")
        for c in contenders:
            p = subprocess.run([sys.executable, __file__, "--memory", w, c, "--threads", str(a.threads)],
                               env=env, capture_output=True, text=True)
            m = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else {}
            res[c]["first_mb"] = m.get("first_mb", float("nan"))
            res[c]["per_batch_mb"] = m.get("per_batch_mb", float("nan"))
        desc = "MLP 784-512-512-10, batch 256" if w == "mlp" else "CNN 1-32-64-128 3x3 28x28, batch 64"
        print(f"\n{desc}   (blas: {blas}; factor paths: {res['factors'].get('methods')})")
        print(f"  {'contender':<14}{'median ms':>11}{'min ms':>10}{'MB first':>10}{'MB/batch':>10}")
        for c in contenders:
            r = res[c]
            print(f"  {c:<14}{1e3 * r['median_s']:>11.2f}{1e3 * r['min_s']:>10.2f}"
                  f"{r['first_mb']:>10.1f}{r['per_batch_mb']:>10.1f}")
        b, v = res["backward"]["median_s"], res["vmap"]["median_s"]
        f, ft, fe = (res[k]["median_s"] for k in ("factors", "factors-torch", "factors-exact"))
        mlp = w == "mlp"
        print(f"  factors / backward       = {f / b:6.2f}x" + ("   (target <= 1.5x)" if mlp else ""))
        print(f"  factors-torch / backward = {ft / b:6.2f}x")
        print(f"  vmap / factors           = {v / f:6.2f}x   (target >= {'50' if mlp else '3'}x)")
        print(f"  vmap / factors-torch     = {v / ft:6.2f}x")
        print(f"  vmap / factors-exact     = {v / fe:6.2f}x   (exact: all 10 classes; vmap: one label)")
        print(f"  peak MB per batch factors / factors-torch / vmap = {res['factors']['per_batch_mb']:.1f} / "
              f"{res['factors-torch']['per_batch_mb']:.1f} / {res['vmap']['per_batch_mb']:.1f}")
    if a.workload in ("ewc", "all"):
        bench_ewc(a.threads, a.reps)


if __name__ == "__main__":
    main()
