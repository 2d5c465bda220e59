"""``python -m exitnet demo``: the whole story on the embedded default data in a few minutes.

1. Load scikit-learn's 8×8 digits (seeded train / validation / test splits).
2. For each strategy, train the same 4-exit CNN (same initial weights) exit by exit.
3. Print the stability matrix A[k][j] (accuracy of exit j after stage k), the forgetting per exit
   and the test accuracy at 25 / 50 / 75 % of the full network's cost (thresholds calibrated on
   validation).
4. Save the plots (stability matrices, budget curves) as PNG files.
5. Export one trained model and run it in the Go runtime with compaction (real skipped compute),
   printing its accuracy, mean cost and speed-up next to the offline simulation.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, Optional, Sequence

import numpy as np

__all__ = ["run_demo", "DEFAULT_STRATEGIES"]

DEFAULT_STRATEGIES = ("naive", "frozen", "ewc", "lwf", "ewc+lwf", "joint")


def _print(*a, file=None) -> None:
    print(*a, file=file or sys.stdout, flush=True)


def run_demo(
    out_dir: str = "demo-output",
    *,
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
    epochs_per_stage: int = 4,
    width: int = 8,
    seed: int = 0,
    ewc_lambda: float = 1000.0,
    export_strategy: Optional[str] = None,
    threads: Optional[int] = 1,
    progress: bool = False,
    echo: Callable[..., None] = _print,
) -> dict:
    """Run the demo; returns ``{"results": {strategy: TrainingResult}, "runtime": {...}}``.

    Parameters
    ----------
    out_dir : str
        Where the PNG plots, the result JSON files and the exported model go (created).
    strategies : sequence of str
        Strategies to compare (default: all six).
    epochs_per_stage : int
        Epochs per stage (default 4).
    width : int
        Width of :func:`exitnet.torch.small_cnn_8` (default 8).
    seed : int
        Seed of the splits, the initial weights and the trainer.
    ewc_lambda : float
        λ of EWC (the ½ convention), default 1000.
    export_strategy : str, optional
        Which trained model to export and run in the Go runtime (default: ``ewc+lwf`` if trained,
        else the last strategy).
    threads : int, optional
        ``torch.set_num_threads`` for the run (default 1: tiny models are fastest single-threaded
        and the demo must behave on a shared 2-core machine); None leaves torch's setting.
    """
    import torch

    from . import data
    from .torch._model import small_cnn_8
    from .torch._results import compare, plot_budget_curves, plot_stability_matrices
    from .torch._trainer import STRATEGIES, SequentialTrainer

    for s in strategies:
        if s not in STRATEGIES:
            raise ValueError(f"strategies: unknown strategy {s!r}; valid: {', '.join(STRATEGIES)}")
    if not strategies:
        raise ValueError("strategies: empty")
    if threads is not None:
        torch.set_num_threads(int(threads))
    os.makedirs(out_dir, exist_ok=True)
    t_start = time.perf_counter()
    splits = data.digits(seed=seed)
    echo(f"data: {splits}")
    torch.manual_seed(seed)
    init = small_cnn_8(num_classes=splits.num_classes, width=width).state_dict()
    echo(f"model: small_cnn_8(width={width}), 4 exits, "
         f"{sum(v.numel() for k, v in init.items() if 'running' not in k and 'num_batches' not in k)} values")

    results = {}
    nets = {}
    import pandas as pd

    with pd.option_context("display.precision", 3, "display.width", 120):
        for strat in strategies:
            net = small_cnn_8(num_classes=splits.num_classes, width=width)
            net.load_state_dict(init)
            tr = SequentialTrainer(
                net, strat, epochs_per_stage=epochs_per_stage, lr=3e-3, batch_size=64,
                ewc_lambda=ewc_lambda, fisher_samples=500, seed=seed, progress=progress,
                log=lambda rec: None,
            )
            t0 = time.perf_counter()
            res = tr.fit(splits)
            dt = time.perf_counter() - t0
            results[strat] = res
            nets[strat] = net
            echo(f"\n=== {strat}  ({dt:.1f} s: train {res.timings['train']:.1f}, "
                 f"fisher {res.timings['fisher']:.1f}, targets {res.timings['targets']:.1f}) ===")
            echo("stability matrix A[k][j] = test accuracy of exit j after stage k:")
            echo((res.stability_frame() * 100).round(1).to_string(na_rep=""))
            echo("forgetting per exit (points): "
                 + ", ".join(f"exit {j}: {100 * f:.1f}" for j, f in enumerate(res.forgetting)))
            if res.budget_accuracy:
                echo("test accuracy at budget (thresholds calibrated on validation): "
                     + ", ".join(f"{int(b * 100)}%: {100 * a:.1f}" for b, a in sorted(res.budget_accuracy.items())))
            if res.analysis_error:
                echo(f"note: {res.analysis_error}")
            res.to_json(os.path.join(out_dir, f"result_{strat.replace('+', '_')}.json"))

        echo("\n=== summary (accuracies in %, forgetting in points) ===")
        table = compare(results)
        show = table[[c for c in table.columns if c.startswith(("acc_", "mean_forgetting", "speedup", "seconds_total"))]].copy()
        for c in show.columns:
            if c.startswith(("acc_", "mean_forgetting")):
                show[c] = 100 * show[c]
        echo(show.round(2).to_string())
        table.to_csv(os.path.join(out_dir, "summary.csv"))

    # plots
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plot_stability_matrices(results)
    p1 = os.path.join(out_dir, "stability_matrices.png")
    fig.savefig(p1, dpi=110)
    plt.close(fig)
    ax = plot_budget_curves(results)
    ax.set_title("digits: accuracy vs compute (exact curve, test)")
    p2 = os.path.join(out_dir, "budget_curves.png")
    ax.figure.savefig(p2, dpi=110, bbox_inches="tight")
    plt.close(ax.figure)
    echo(f"\nplots: {p1}, {p2}")

    runtime_info = run_in_runtime(
        results, nets, splits, out_dir,
        export_strategy or ("ewc+lwf" if "ewc+lwf" in results else list(results)[-1]), echo,
    )
    echo(f"\ndemo finished in {time.perf_counter() - t_start:.1f} s; outputs in {out_dir}/")
    return {"results": results, "runtime": runtime_info}


def run_in_runtime(results, nets, splits, out_dir, strat, echo=print) -> dict:
    """Export ``nets[strat]`` and run it in the Go runtime at the 50 % budget operating point.

    Prints (through ``echo``) and returns accuracy, mean cost, speed-up, the exit histogram, the
    MACs the runtime really executed, and how often its per-sample decisions equal the offline
    simulation (:func:`exitnet.policy.assign`) on torch's logits.
    """
    res = results[strat]
    net = nets[strat].eval()
    info: dict = {"strategy": strat}
    try:
        from .torch._export import export
        from .runtime import MACS_KEY, Model
    except ImportError as e:
        echo(f"\nruntime: skipped ({e})")
        info["skipped"] = str(e)
        return info
    from . import policy

    path = os.path.join(out_dir, f"model_{strat.replace('+', '_')}.exitnet")
    export(net, path, tuple(splits.input_shape))
    x = splits.test.tensors[0].numpy().astype(np.float32)
    y = splits.test.tensors[1].numpy()
    cm = policy.CostModel.from_cumulative(res.costs)
    tau = 1.0
    op = res.operating_points
    if op is not None and "tau" in op.columns and (op["budget"] == 0.5).any():
        tau = float(op.loc[op["budget"] == 0.5, "tau"].iloc[0])
    K = res.num_exits
    thr = float(tau)  # one global τ (the last exit always accepts)
    with Model(path) as m:
        full_macs = m.predict(x[:1], thresholds=None, output="numpy")["macs"]  # the full network once
        t0 = time.perf_counter()
        out = m.predict(x, thresholds=thr)
        dt = time.perf_counter() - t0
        run_macs = int(out.schema.metadata[MACS_KEY])
    pred, ex = _pred_exit(out)
    acc = float((pred == y).mean())
    mean_cost = float(np.mean(cm.costs[ex]))
    sim = policy.assign(np.ascontiguousarray(res.test_logits, np.float32), thr)
    sim_exit = sim.column("exit").to_numpy()
    sim_pred = sim.column("prediction").to_numpy()
    agree = float(np.mean((sim_exit == ex) & (sim_pred == pred)))
    info.update(path=path, tau=tau, accuracy=acc, mean_cost=mean_cost, speedup=cm.full / mean_cost,
                seconds=dt, agreement_with_simulation=agree,
                exit_histogram=np.bincount(ex, minlength=K).tolist(),
                runtime_macs_per_sample=run_macs / len(x), runtime_full_macs=full_macs,
                runtime_speedup=full_macs * len(x) / max(run_macs, 1))
    echo(f"\nGo runtime ({path}, threshold τ={tau:.4f} calibrated for a 50% budget):")
    echo(f"  test accuracy {100 * acc:.2f}%  mean cost {mean_cost:,.0f} MACs of {cm.full:,.0f}  "
         f"speed-up {cm.full / mean_cost:.2f}x  exits {info['exit_histogram']}")
    echo(f"  MACs executed by the runtime: {run_macs / len(x):,.0f} per sample vs {full_macs:,} for "
         f"the full network: {info['runtime_speedup']:.2f}x less compute (BatchNorm folded)")
    echo(f"  {len(x)} samples in {1000 * dt:.1f} ms; runtime decisions equal the offline "
         f"simulation on torch's logits for {100 * agree:.1f}% of samples")
    return info


def _pred_exit(out) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, exits) from whatever Model.predict returns (a table or a tuple or a dict)."""
    if hasattr(out, "column"):
        return out.column("prediction").to_numpy(), out.column("exit").to_numpy()
    if isinstance(out, dict):
        return np.asarray(out["prediction"]), np.asarray(out["exit"])
    if hasattr(out, "prediction") and hasattr(out, "exit"):
        return np.asarray(out.prediction), np.asarray(out.exit)
    raise TypeError(f"unexpected result of Model.predict: {type(out).__name__}")

