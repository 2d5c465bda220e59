"""One training stage of the small CNN on CPU, 1 thread: exitnet's loop with LwF recorded targets vs
the same loop with the online teacher vs naive, and plain torch loops (naive, and with the teacher in
the loop) as the peers, in one run.

Stage k (default 2: exits 0 and 1 are protected) of ``small_cnn_28`` (width 16) on synthetic 28×28
inputs (N samples, batch 64, ``--epochs`` epochs, Adam). Each configuration starts from the same
weights; the exitnet times are the stage's train + target-recording seconds (``stage_timings``),
the torch loops' the same work written by hand. Reported: seconds, samples/s, the ratios
recorded/naive, recorded/online and exitnet/torch, and the forward GFLOP/s of the recording pass.

A warm-up stage on 64 samples runs first (imports and the Go library load are per process).
Also reported: the teacher forward in NCHW vs channels-last layout (what recording costs, and why
the teacher copies are channels-last).

    PYTHONPATH=python .venv/bin/python bench/bench_trainer.py [--n 2048] [--epochs 2] [--stage 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--stage", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the figures here")
    a = ap.parse_args()

    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch.utils.data import TensorDataset

    from exitnet.distill import kd_loss_torch
    from exitnet.torch import SequentialTrainer, small_cnn_28, stage_costs
    from exitnet.torch._batches import TrainData
    from exitnet.torch._loop import run_stage

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    N, k, E, B = a.n, a.stage, a.epochs, 64
    x = torch.randn(N, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (N,), generator=g)
    ds = TensorDataset(x, y, torch.arange(N))
    small = TensorDataset(x[:64], y[:64], torch.arange(64))
    torch.manual_seed(0)
    base = small_cnn_28()
    s_macs, h_macs = stage_costs(base.stages, base.heads, x[:1])
    fwd_macs = float(sum(s_macs[:k]) + sum(h_macs[:k]))  # exits 0..k-1: what a teacher pass runs

    def exitnet_stage(strategy: str, targets: str | None = None, data: TensorDataset = ds) -> float:
        net = copy.deepcopy(base)
        tr = SequentialTrainer(net, strategy, epochs_per_stage=E, batch_size=B, progress=False,
                               log=lambda r: None, lwf_targets=targets, bn_mode="adapt")
        tr.data, tr.val, tr.eval_data, tr.num_classes = TrainData(data), small, small, 10
        for p in tr.plugins:
            p.before_fit(tr)
        A = np.full((4, 4), np.nan)
        try:
            split = run_stage(tr, k, A, [], {})
        finally:
            for p in tr.plugins:
                p.after_fit(tr)
        return split["train"] + split["targets"]

    def torch_stage(teacher: bool) -> float:
        net = copy.deepcopy(base)
        t0 = time.perf_counter()
        tnet = copy.deepcopy(net).eval() if teacher else None
        net.train()
        params = [p for j in range(k + 1) for p in list(net.stages[j].parameters())] + list(net.heads[k].parameters())
        for p in net.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=1e-3)
        for e in range(E):
            perm = torch.randperm(N, generator=torch.Generator().manual_seed(e))
            for s in range(0, N, B):
                idx = perm[s : s + B]
                xb, yb = x[idx], y[idx]
                opt.zero_grad(set_to_none=True)
                outs = net.forward_exits(xb, upto=k) if teacher else [net.forward_exit(xb, k)]
                loss = F.cross_entropy(outs[-1], yb)
                if teacher:
                    with torch.no_grad():
                        tz = tnet.forward_exits(xb, upto=k - 1)
                    loss = loss + sum(kd_loss_torch(outs[j], tz[j], 2.0) for j in range(k))
                loss.backward()
                opt.step()
        return time.perf_counter() - t0

    def teacher_pass(channels_last: bool) -> float:
        t = copy.deepcopy(base).eval()
        if channels_last:
            t = t.to(memory_format=torch.channels_last)
        t0 = time.perf_counter()
        with torch.inference_mode():
            for s in range(0, N, 512):
                xb = x[s : s + 512]
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                t.forward_exits(xb, upto=k - 1)
        return time.perf_counter() - t0

    # warm-up: imports (pyarrow, tqdm), loading the Go library and first-call allocations are
    # one-off costs of a process (seconds), not of a stage; unwarmed they landed in the first
    # configuration's time
    for strat, tg in (("naive", None), ("lwf", "recorded"), ("lwf", "online")):
        exitnet_stage(strat, tg, small)

    load0 = os.getloadavg()
    res = {
        "exitnet_naive": exitnet_stage("naive"),
        "exitnet_lwf_recorded": exitnet_stage("lwf", "recorded"),
        "exitnet_lwf_online": exitnet_stage("lwf", "online"),
        "torch_naive": torch_stage(False),
        "torch_lwf_teacher_in_loop": torch_stage(True),
        "teacher_pass_nchw": teacher_pass(False),
        "teacher_pass_channels_last": teacher_pass(True),
    }
    load1 = os.getloadavg()
    samples = N * E
    print(f"small_cnn_28 stage {k}, N={N}, {E} epochs, batch {B}, 1 thread; "
          f"load average {load0[0]:.1f} -> {load1[0]:.1f} (2 cores)")
    for name, sec in res.items():
        n = N if name.startswith("teacher") else samples
        extra = ""
        if name.startswith("teacher"):
            extra = f"  {2 * fwd_macs * N / sec / 1e9:.2f} GFLOP/s (forward of exits 0..{k - 1})"
        print(f"  {name:28s} {sec:8.2f} s  {n / sec:8.1f} samples/s{extra}")
    r = res
    ratios = {
        "recorded / naive": r["exitnet_lwf_recorded"] / r["exitnet_naive"],
        "recorded / online": r["exitnet_lwf_recorded"] / r["exitnet_lwf_online"],
        "exitnet online / torch teacher-in-loop": r["exitnet_lwf_online"] / r["torch_lwf_teacher_in_loop"],
        "exitnet recorded / torch teacher-in-loop": r["exitnet_lwf_recorded"] / r["torch_lwf_teacher_in_loop"],
        "exitnet naive / torch naive": r["exitnet_naive"] / r["torch_naive"],
        "teacher pass NCHW / channels-last": r["teacher_pass_nchw"] / r["teacher_pass_channels_last"],
    }
    for n, v in ratios.items():
        print(f"  {n:42s} {v:6.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"seconds": res, "ratios": ratios, "load": [load0, load1], "n": N, "epochs": E,
                       "stage": k}, f, indent=1)


if __name__ == "__main__":
    main()
