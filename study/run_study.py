#!/usr/bin/env python3
"""The Fashion-MNIST study: sequential exit training with every strategy, several seeds.

For each strategy (naive, frozen, ewc, lwf, ewc+lwf, joint) and seed, the same 4-exit CNN
(``small_cnn_28``, same initial weights per seed for every strategy) is trained exit by exit and
measured:

- final test accuracy of every exit, mean forgetting over exits 0..2
  (forgetting_j = max_k A[k][j] − A[3][j]);
- test accuracy at 25 % and 50 % of the full network's MACs, with the global max-softmax
  threshold calibrated on the validation split (and the oracle best point of the test curve);
- speed-up at iso-accuracy: full cost / mean cost of the cheapest point of the exact test curve
  within 1 point of that run's last exit;
- wall-clock of the run and of its parts (training, Fisher passes, LwF target recording).

Results are written as JSON per run (``--out``/raw) and aggregated (mean ± sample std over seeds)
into ``--out``/summary.md and summary.csv.

Reproduce the reported run::

    PYTHONPATH=python .venv/bin/python study/run_study.py --out study/results

Reduced settings for a quick check: ``--train-subset 3000 --epochs 1 --seeds 0``.
An optional λ sweep for EWC on validation (seed 0): ``--sweep-lambda 10,100,1000``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

STRATEGIES = ("naive", "frozen", "ewc", "lwf", "ewc+lwf", "joint")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--data", default=None, help="Fashion-MNIST IDX directory (default: Debian's)")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--train-subset", type=int, default=12000, help="training samples (seeded subset)")
    p.add_argument("--test-subset", type=int, default=None, help="test samples (default: all 10,000)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=3, help="epochs per stage")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--ewc-lambda", type=float, default=10000.0, help="chosen by --sweep-lambda on validation (RESULTS.md)")
    p.add_argument("--fisher-samples", type=int, default=500)
    p.add_argument("--lwf-alpha", type=float, default=1.0)
    p.add_argument("--lwf-temperature", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--replot", action="store_true", help="redraw the plot from --out/meta.json only")
    p.add_argument("--sweep-lambda", default="", help="comma-separated λ values: validation sweep, seed 0")
    return p.parse_args(argv)


def load_splits(args):
    from exitnet import data

    kw = {} if args.data is None else {"root": args.data}
    # one split for every seed: seeds vary the initial weights and the training order
    return data.fashion_mnist(val_fraction=args.val_fraction, seed=0, train_subset=args.train_subset,
                              test_subset=args.test_subset, **kw)


def run_one(args, splits, strategy, seed, ewc_lambda=None, analyse=True):
    import torch

    from exitnet.torch._model import small_cnn_28
    from exitnet.torch._trainer import SequentialTrainer

    torch.manual_seed(1000 + seed)
    net = small_cnn_28(num_classes=10, width=args.width)
    tr = SequentialTrainer(
        net, strategy, epochs_per_stage=args.epochs, lr=args.lr, batch_size=args.batch_size,
        ewc_lambda=args.ewc_lambda if ewc_lambda is None else ewc_lambda,
        fisher_samples=args.fisher_samples, lwf_alpha=args.lwf_alpha,
        lwf_temperature=args.lwf_temperature, seed=seed, progress=False, log=lambda r: None,
    )
    t0 = time.perf_counter()
    res = tr.fit(splits, analyse=analyse)
    res.timings["wall"] = time.perf_counter() - t0
    return res, tr


def sweep_lambda(args, splits, values):
    """EWC λ on validation (seed 0): final validation accuracy per exit and its mean."""
    from exitnet.torch._trainer import SequentialTrainer  # noqa: F401

    rows = []
    for lam in values:
        res, tr = run_one(args, splits, "ewc", 0, ewc_lambda=lam, analyse=False)
        vl, vy = tr.predict_logits(splits.val)
        acc = (vl.argmax(2) == vy).mean(1)
        rows.append({"lambda": lam, **{f"val_exit{j}": float(a) for j, a in enumerate(acc)},
                     "val_mean": float(acc.mean()), "seconds": res.timings["wall"]})
        print(f"λ={lam:g}: validation accuracy per exit {np.round(100 * acc, 2)} mean {100 * acc.mean():.2f}",
              flush=True)
    return rows


def _nanmean(mats):
    a = np.array(mats, dtype=float)
    m = np.full(a.shape[1:], np.nan)
    ok = ~np.isnan(a).all(axis=0)
    m[ok] = np.nanmean(a[:, ok], axis=0)
    return m.tolist()


def fmt(mean, std, scale=100.0, digits=1):
    if mean is None or np.isnan(mean):
        return "–"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def aggregate(runs):
    """runs: {strategy: [summary dicts]} → list of rows with mean and sample std."""
    rows = []
    for strat, ss in runs.items():
        row = {"strategy": strat, "n": len(ss)}
        keys = sorted({k for s in ss for k in s if isinstance(s.get(k), (int, float))})
        for k in keys:
            v = np.array([s.get(k, np.nan) for s in ss], dtype=float)
            row[k] = (float(np.nanmean(v)), float(np.nanstd(v, ddof=1)) if len(v) > 1 else 0.0)
        rows.append(row)
    return rows


def write_summary(out, rows, args, meta):
    g = lambda r, k: r.get(k, (np.nan, np.nan))  # noqa: E731
    lines = []
    lines.append(f"Settings: {meta['settings']}\n")
    lines.append("### Final test accuracy per exit (%), mean ± std over seeds\n")
    lines.append("| strategy | exit 0 | exit 1 | exit 2 | exit 3 | mean forgetting (pts) | max forgetting (pts) |")
    lines.append("|---|---|---|---|---|---|---|")
    for r in rows:
        lines.append(f"| {r['strategy']} | " + " | ".join(fmt(*g(r, f"acc_exit{j}")) for j in range(4))
                     + f" | {fmt(*g(r, 'mean_forgetting'))} | {fmt(*g(r, 'max_forgetting'))} |")
    lines.append("\n### Budgets (test accuracy %, threshold calibrated on validation; oracle = best point of the test curve)\n")
    lines.append("| strategy | 25% budget | 50% budget | 25% oracle | 50% oracle | speed-up at iso-accuracy (×, within 1 pt of own last exit) |")
    lines.append("|---|---|---|---|---|---|")
    for r in rows:
        lines.append(f"| {r['strategy']} | {fmt(*g(r, 'acc_at_25pct'))} | {fmt(*g(r, 'acc_at_50pct'))} | "
                     f"{fmt(*g(r, 'best_at_25pct'))} | {fmt(*g(r, 'best_at_50pct'))} | "
                     f"{fmt(*g(r, 'speedup_iso'), scale=1, digits=2)} |")
    lines.append("\n### Wall-clock per run (s, mean ± std; 1 torch thread)\n")
    lines.append("| strategy | total | training | Fisher passes | LwF target recording | evaluation |")
    lines.append("|---|---|---|---|---|---|")
    for r in rows:
        lines.append(f"| {r['strategy']} | " + " | ".join(
            fmt(*g(r, f"seconds_{k}"), scale=1, digits=1) for k in ("wall", "train", "fisher", "targets", "eval")) + " |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(text)
    return text


def main(argv=None):
    args = parse_args(argv)
    if args.replot:
        with open(os.path.join(args.out, "meta.json")) as f:
            meta = json.load(f)
        plot_mean_stability(args.out, meta["mean_stability"], len(meta["args"]["seeds"].split(",")))
        return
    import torch

    torch.set_num_threads(args.threads)
    os.makedirs(os.path.join(args.out, "raw"), exist_ok=True)
    t_start = time.perf_counter()
    splits = load_splits(args)
    print(f"data: {splits}", flush=True)
    if args.sweep_lambda:
        vals = [float(v) for v in args.sweep_lambda.split(",")]
        rows = sweep_lambda(args, splits, vals)
        with open(os.path.join(args.out, "lambda_sweep.json"), "w") as f:
            json.dump(rows, f, indent=1)
    strategies = [s for s in args.strategies.split(",") if s]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    runs: dict = {s: [] for s in strategies}
    stab: dict = {s: [] for s in strategies}
    for seed in seeds:
        for strat in strategies:
            res, _ = run_one(args, splits, strat, seed)
            s = res.summary()
            s["seconds_wall"] = res.timings["wall"]
            s["seconds_eval"] = res.timings.get("eval", 0.0)
            for b, a in res.budget_best_accuracy.items():
                s[f"best_at_{int(round(b * 100))}pct"] = a
            runs[strat].append(s)
            stab[strat].append(res.stability.tolist())
            res.to_json(os.path.join(args.out, "raw", f"{strat.replace('+', '_')}_seed{seed}.json"))
            print(f"seed {seed} {strat:8s} {res.timings['wall']:6.1f} s  exits "
                  f"{np.round(100 * res.final_accuracy, 1)}  forgetting {100 * res.mean_forgetting:.2f}  "
                  f"25%: {100 * res.budget_accuracy.get(0.25, np.nan):.1f}  "
                  f"50%: {100 * res.budget_accuracy.get(0.5, np.nan):.1f}  "
                  f"speed-up {res.speedup_iso:.2f}", flush=True)
    rows = aggregate(runs)
    costs = res.costs.tolist() if res.costs is not None else None
    settings = (f"Fashion-MNIST, {len(splits.train)} train / {len(splits.val)} validation / "
                f"{len(splits.test)} test samples; small_cnn_28(width={args.width}); "
                f"{args.epochs} epochs per stage, Adam lr {args.lr}, batch {args.batch_size}; "
                f"EWC λ={args.ewc_lambda:g} (λ/2 convention, exact Fisher on {args.fisher_samples} samples, separate); "
                f"LwF α={args.lwf_alpha:g}, T={args.lwf_temperature:g}, recorded targets; seeds {seeds}; "
                f"cumulative exit costs (MACs) {costs}")
    meta = {"settings": settings, "python": platform.python_version(), "torch": torch.__version__,
            "seconds": time.perf_counter() - t_start, "args": vars(args)}
    text = write_summary(args.out, rows, args, meta)
    import pandas as pd

    pd.DataFrame([{k: (v[0] if isinstance(v, tuple) else v) for k, v in r.items()} for r in rows]).to_csv(
        os.path.join(args.out, "summary_mean.csv"), index=False)
    mean_stab = {s: _nanmean(v) for s, v in stab.items()}
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump({**meta, "mean_stability": mean_stab, "runs": runs}, f, indent=1, default=str)
    plot_mean_stability(args.out, mean_stab, len(seeds))
    print("\n" + text)
    print(f"total {time.perf_counter() - t_start:.0f} s")


def plot_mean_stability(out, mean_stab, n_seeds):
    try:
        import matplotlib

        matplotlib.use("Agg")
        from exitnet.torch._results import plot_stability

        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(mean_stab), figsize=(3.4 * len(mean_stab), 3.0), squeeze=False)
        lo = min(np.nanmin(np.array(A)) for A in mean_stab.values())
        hi = max(np.nanmax(np.array(A)) for A in mean_stab.values())
        for ax, (s, A) in zip(axes[0], mean_stab.items()):
            plot_stability(np.array(A), ax=ax, title=f"{s} (mean of {n_seeds})", vmin=lo, vmax=hi)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "stability_matrices.png"), dpi=100)
    except Exception as e:  # plots are a bonus
        print(f"plot failed: {e}")


if __name__ == "__main__":
    main()
