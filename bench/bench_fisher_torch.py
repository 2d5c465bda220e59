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
  factors-auto  backend="auto" (the default): per layer type the faster of the two, see
                exitnet.torch.fisher_diagonal
  vmap          torch.func.vmap(grad(loss)) per-sample gradients of every parameter, squared and
                summed over the batch (what BackPACK-free PyTorch code does)
  vmap-compiled the same under torch.compile (--compile; compilation is not timed)
  backpack-sgs  BackPACK SumGradSquared: forward + sum-reduced CE + backward inside
                backpack(SumGradSquared()), reading p.sum_grad_squared (the same quantity)
  backpack-bg   BackPACK BatchGrad: per-sample gradients p.grad_batch, squared and summed
  backpack-ggn  BackPACK DiagGGNExact (the diagonal of the exact GGN: another quantity, the
                best-known "diagonal curvature" peer; timed for scale, not compared numerically)
  opacus        Opacus GradSampleModule: per-sample gradients p.grad_sample, squared and summed

Every contender that computes the empirical Fisher sum is checked against the factors' result
(relative 1e-3) before timing. Times are process CPU seconds (time.process_time), so that other
processes' load does not count; the machine line (one core's read bandwidth, sgemm GFLOP/s, load
average) is printed first.

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
    sys.path.insert(0, HERE)
    import _machine  # noqa: F401  (one BLAS thread for numpy, before torch/numpy load)
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
        backend = {"factors-torch": "torch", "factors-auto": "auto"}.get(contender, "go")
        runner = _FisherRunner(model, None, None, mode, 0, backend)
        _ModeGuard(model, runner.cand.values()).__enter__()
        runner.plan((x, y))
        info["methods"] = sorted(set(runner.methods.values()))
        if backend == "auto":
            info["methods"] = [f"{s.path}:{s.backend or runner.backend}" for s in runner.sites]

        def run():
            runner.step((x, y))
            return runner
    elif contender.startswith("vmap"):
        from torch.func import functional_call, grad, vmap

        detached = {n: p.detach() for n, p in params.items()}

        def loss(p, xn, yn):
            z = functional_call(model, p, (xn.unsqueeze(0),))
            return nn.functional.cross_entropy(z, yn.unsqueeze(0), reduction="sum")

        def sq(p, xb, yb):
            g = vmap(grad(loss), in_dims=(None, 0, 0))(p, xb, yb)
            return {n: (t * t).sum(0) for n, t in g.items()}

        f = torch.compile(sq) if contender == "vmap-compiled" else sq

        def run():
            return f(detached, x, y)
    elif contender.startswith("backpack"):
        from backpack import backpack, extend
        from backpack.extensions import BatchGrad, DiagGGNExact, SumGradSquared

        import warnings

        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        bmodel = extend(model)
        lossf = extend(nn.CrossEntropyLoss(reduction="sum"))
        ext, attr = {"backpack-sgs": (SumGradSquared, "sum_grad_squared"),
                     "backpack-bg": (BatchGrad, "grad_batch"),
                     "backpack-ggn": (DiagGGNExact, "diag_ggn_exact")}[contender]

        def run():
            bmodel.zero_grad(set_to_none=True)
            with backpack(ext()):
                lossf(bmodel(x), y).backward()
            out = {}
            for n, p in bmodel.named_parameters():
                v = getattr(p, attr)
                out[n] = (v * v).sum(0) if attr == "grad_batch" else v
            return out
    elif contender == "opacus":
        from opacus import GradSampleModule

        # Opacus records activations in training mode only; its grad_sample follows the loss reduction
        gsm = GradSampleModule(model.train(), loss_reduction="sum")
        lossf = nn.CrossEntropyLoss(reduction="sum")

        def run():
            gsm.zero_grad(set_to_none=True)
            lossf(gsm(x), y).backward()
            return {n.removeprefix("_module."): (p.grad_sample * p.grad_sample).sum(0)
                    for n, p in gsm.named_parameters()}
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


SLOW = ("vmap", "vmap-compiled", "factors-exact", "backpack-ggn", "opacus", "backpack-bg")


def _fisher_sums(res) -> dict:
    """name -> float64 sum of squared per-sample gradients from a contender's return value."""
    import numpy as np

    if hasattr(res, "acc"):  # the factors' runner: Go sums over this one batch
        sums, _ = res.acc.state()
        return {k: np.asarray(v, np.float64) for k, v in sums.items()}
    return {k: v.detach().double().numpy() for k, v in res.items()}


def timing(workload: str, contenders: list[str], threads: int, reps: int) -> dict:
    """In-process, interleaved (round robin) so that load from other processes hits all alike;
    process CPU time per call."""
    import numpy as np

    exitnet = setup(threads)
    sys.path.insert(0, HERE)
    from _machine import cpu_times

    runs, out = {}, {}
    ref = None
    for c in contenders:
        try:
            run, info = make(workload, c)
            res = run()  # warm-up (and compilation)
        except Exception as e:  # a peer that cannot run this model: say so, keep going
            out[c] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"}
            continue
        if hasattr(res, "acc"):  # the accumulator's sums of exactly one batch
            res.acc.reset()
            res = run()
        if c == "factors":
            ref = _fisher_sums(res)
        elif ref is not None and c not in ("backward", "factors-exact", "backpack-ggn"):
            got = _fisher_sums(res)
            for k, v in ref.items():
                g = got[k].reshape(v.shape)
                if not np.allclose(g, v, rtol=1e-3, atol=1e-6 * np.abs(v).max()):
                    raise SystemExit(f"{c}: {k} differs from the factors' Fisher sums")
        runs[c] = (run, info)
    ts = cpu_times({c: r[0] for c, r in runs.items()}, reps,
                   skip=lambda c, r: c in SLOW and r >= max(3, reps // 2))
    for c in runs:
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


PEERS = ["backward", "factors", "factors-torch", "factors-auto", "factors-exact", "vmap",
         "backpack-sgs", "backpack-bg", "backpack-ggn", "opacus"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--workload", choices=["mlp", "cnn", "ewc", "all"], default="all")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(vmap(grad))")
    ap.add_argument("--peak-memory", action="store_true", help="also measure peak RSS (one process each)")
    ap.add_argument("--memory", nargs=2, metavar=("WORKLOAD", "CONTENDER"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.memory:
        print(json.dumps(memory(a.memory[0], a.memory[1], a.threads)))
        return
    sys.path.insert(0, HERE)
    from _machine import machine_line

    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "python") + os.pathsep + env.get("PYTHONPATH", "")
    workloads = ["mlp", "cnn"] if a.workload == "all" else [a.workload] if a.workload != "ewc" else []
    contenders = PEERS + (["vmap-compiled"] if a.compile else [])
    print(machine_line())
    print(f"threads={a.threads} reps={a.reps} (process CPU ms per batch, contenders interleaved)")
    for w in workloads:
        res = timing(w, contenders, a.threads, a.reps)
        blas = res.pop("_blas")
        for c in contenders:
            m = {}
            if a.peak_memory and "error" not in res[c]:
                p = subprocess.run([sys.executable, __file__, "--memory", w, c, "--threads", str(a.threads)],
                                   env=env, capture_output=True, text=True)
                m = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else {}
            res[c]["first_mb"] = m.get("first_mb", float("nan"))
            res[c]["per_batch_mb"] = m.get("per_batch_mb", float("nan"))
        desc = "MLP 784-512-512-10, batch 256" if w == "mlp" else "CNN 1-32-64-128 3x3 28x28, batch 64"
        f = res["factors"]["median_s"]
        print(f"\n{desc}   (blas: {blas}; factor paths: {res['factors'].get('methods')}; "
              f"auto: {res.get('factors-auto', {}).get('methods')})")
        print(f"  {'contender':<15}{'median ms':>11}{'min ms':>10}{'peer/factors':>14}{'MB first':>10}{'MB/batch':>10}")
        for c in contenders:
            r = res[c]
            if "error" in r:
                print(f"  {c:<15}  n/a: {r['error']}")
                continue
            print(f"  {c:<15}{1e3 * r['median_s']:>11.2f}{1e3 * r['min_s']:>10.2f}{r['median_s'] / f:>13.2f}x"
                  f"{r['first_mb']:>10.1f}{r['per_batch_mb']:>10.1f}")
        if "factors-auto" in res and "median_s" in res["factors-auto"]:
            fa = res["factors-auto"]["median_s"]
            for peer in ("backpack-sgs", "factors-torch", "vmap", "opacus"):
                if "median_s" in res.get(peer, {}):
                    print(f"  {peer} / factors-auto = {res[peer]['median_s'] / fa:6.2f}x")
    if a.workload in ("ewc", "all"):
        bench_ewc(a.threads, a.reps)


if __name__ == "__main__":
    main()
