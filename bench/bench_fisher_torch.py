"""Per-sample Fisher from layer factors (exitnet.torch) vs a batched backward pass and torch.func.

Run:  PYTHONPATH=python .venv/bin/python bench/bench_fisher_torch.py [--threads 1] [--reps 5]

Contenders (each in its own subprocess, so that its peak RSS is its own):

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
faster than vmap, with peak memory of both. Peak memory is the growth of ru_maxrss during the
timed calls over the process's RSS after setup (model, data and library loaded, one warm-up call).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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


def one(workload: str, contender: str, threads: int, reps: int) -> dict:
    """Runs in a child process: time and peak-RSS growth of one contender."""
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    import exitnet

    exitnet.set_num_threads(threads)
    model, x, y = build(workload)
    params = {n: p for n, p in model.named_parameters()}

    if contender == "backward":
        def run():
            model.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
    elif contender.startswith("factors"):
        from exitnet.torch._fisher import _FisherRunner, _ModeGuard

        mode = "exact" if contender == "factors-exact" else "empirical"
        backend = "torch" if contender == "factors-torch" else "go"
        runner = _FisherRunner(model, None, None, mode, 0, backend)
        guard = _ModeGuard(model, runner.cand.values()).__enter__()
        runner.plan((x, y))

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

    run()  # warm-up (allocator, OpenBLAS threads, lazy library load)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        ts.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ts.sort()
    out = {"median_s": ts[len(ts) // 2], "min_s": ts[0], "peak_growth_mb": (peak - base) / 1024,
           "rss_mb": peak / 1024}
    if contender.startswith("factors"):
        out["methods"] = sorted(set(runner.methods.values()))
        out["blas"] = exitnet.blas_backend()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--workload", choices=["mlp", "cnn", "all"], default="all")
    ap.add_argument("--one", nargs=2, metavar=("WORKLOAD", "CONTENDER"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one[0], a.one[1], a.threads, a.reps)))
        return
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "python") + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", str(a.threads))
    workloads = ["mlp", "cnn"] if a.workload == "all" else [a.workload]
    plan = {"mlp": ["backward", "factors", "factors-torch", "factors-exact", "vmap"],
            "cnn": ["backward", "factors", "factors-torch", "factors-exact", "vmap"]}
    print(f"threads={a.threads} reps={a.reps} (median seconds per batch; peak = RSS growth while timed)")
    for w in workloads:
        res = {}
        for c in plan[w]:
            reps = max(1, a.reps // 2) if c in ("vmap", "factors-exact") else a.reps
            p = subprocess.run([sys.executable, __file__, "--one", w, c, "--threads", str(a.threads),
                                "--reps", str(reps)], env=env, capture_output=True, text=True)
            if p.returncode != 0:
                print(f"{w}/{c}: FAILED\n{p.stderr[-2000:]}")
                continue
            res[c] = json.loads(p.stdout.strip().splitlines()[-1])
        desc = "MLP 784-512-512-10, batch 256" if w == "mlp" else "CNN 1-32-64-128 3x3 28x28, batch 64"
        print(f"\n{desc}")
        print(f"  {'contender':<14}{'median ms':>11}{'min ms':>10}{'peak MB':>10}")
        for c, r in res.items():
            print(f"  {c:<14}{1e3 * r['median_s']:>11.2f}{1e3 * r['min_s']:>10.2f}{r['peak_growth_mb']:>10.1f}")
        if "factors" in res:
            f = res["factors"]["median_s"]
            print(f"  blas: {res['factors'].get('blas')}, paths: {res['factors'].get('methods')}")
            if "backward" in res:
                print(f"  factors / backward         = {f / res['backward']['median_s']:.2f}x"
                      + ("   (target <= 1.5x)" if w == "mlp" else ""))
            if "vmap" in res:
                tgt = "   (target >= 50x)" if w == "mlp" else "   (target >= 3x)"
                print(f"  vmap / factors             = {res['vmap']['median_s'] / f:.1f}x{tgt}")
            if "factors-torch" in res:
                ft = res["factors-torch"]["median_s"]
                if "vmap" in res:
                    print(f"  vmap / factors-torch       = {res['vmap']['median_s'] / ft:.2f}x")
                if "backward" in res:
                    print(f"  factors-torch / backward   = {ft / res['backward']['median_s']:.2f}x")
            if "factors-exact" in res and "vmap" in res:
                print(f"  vmap / factors-exact       = {res['vmap']['median_s'] / res['factors-exact']['median_s']:.2f}x"
                      "   (exact = 10 label passes; vmap is one label)")
            if "vmap" in res:
                print(f"  peak memory factors / vmap = {res['factors']['peak_growth_mb']:.1f} MB"
                      f" / {res['vmap']['peak_growth_mb']:.1f} MB")


if __name__ == "__main__":
    main()
