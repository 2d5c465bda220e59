"""Command line: ``python -m exitnet {demo,train,evaluate,export,config} ...`` (also ``exitnet``).

``demo``
    The sequential-training demo on the embedded digits data (see :mod:`exitnet.demo`).
``train --config run.json``
    Train from a JSON config (keys ``data``, ``model``, ``trainer``, ``strategies``, ``output``,
    ``export``, ``threads``; an unknown key is an error listing the valid ones). Writes one
    ``result_<strategy>.json``, ``weights_<strategy>.pt`` (a state_dict of tensors) and plots per
    strategy into ``output``. Example::

        {"data": {"name": "fashion-mnist", "train_subset": 6000},
         "model": {"name": "small_cnn_28", "width": 16},
         "trainer": {"epochs_per_stage": 2, "lr": 0.002, "ewc_lambda": 1000},
         "strategies": ["naive", "ewc", "lwf"],
         "output": "runs/fmnist"}

``evaluate --logits test.npz [--val val.npz] [--costs c0,c1,...] [--budgets 0.25,0.5]``
    Recorded logits → the exact budget curve, accuracy at budgets, speed-up at iso-accuracy, and
    (with ``--val``) thresholds calibrated on validation. A logits file is ``.npz`` with arrays
    ``logits`` (K, N, C) and ``labels`` (N,) (read with ``allow_pickle=False``), or a result JSON
    saved with logits.
``export --weights w.pt --model small_cnn_28 --out model.exitnet``
    Export trained weights to a runtime model file.
``config [--cflags] [--libs] [--pkgconfigdir]``
    Flags for building C programs against the installed wheel's library and header:
    ``gcc app.c $(python -m exitnet config --cflags --libs)``.
``--version``
    The package version (the header's EXITNET_VERSION_STRING) and C ABI version.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence

import numpy as np

CONFIG_KEYS = ("data", "model", "trainer", "strategies", "output", "export", "threads", "seed")
MODELS = ("small_cnn_8", "small_cnn_28", "small_cnn", "small_resnet_32")


def _floats(s: str, name: str) -> list[float]:
    try:
        return [float(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"{name}: expected comma-separated numbers, got {s!r}") from None


def _build_model(spec: dict, num_classes: int, in_channels: int):
    from .torch import _model

    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in MODELS:
        raise ValueError(f"model.name: unknown model {name!r}; valid: {', '.join(MODELS)}")
    spec.setdefault("num_classes", num_classes)
    spec.setdefault("in_channels", in_channels)
    try:
        return getattr(_model, name)(**spec)
    except TypeError as e:
        raise ValueError(f"model: {e}") from None


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from . import data
    from .torch._results import compare, plot_budget_curves, plot_stability_matrices
    from .torch._trainer import SequentialTrainer

    with open(args.config) as f:
        try:
            cfg = json.load(f)
        except json.JSONDecodeError as e:
            raise SystemExit(f"config: {args.config} is not valid JSON ({e})")
    if not isinstance(cfg, dict):
        raise SystemExit("config: expected a JSON object")
    bad = sorted(set(cfg) - set(CONFIG_KEYS))
    if bad:
        raise SystemExit(f"config: unknown key(s) {', '.join(bad)}; valid: {', '.join(CONFIG_KEYS)}")
    if cfg.get("threads") is not None:
        torch.set_num_threads(int(cfg["threads"]))
    seed = int(cfg.get("seed", 0))
    dspec = dict(cfg.get("data", {"name": "digits"}))
    dname = dspec.pop("name", "digits")
    dspec.setdefault("seed", seed)
    splits = data.load(dname, **dspec)
    print(f"data: {splits}", flush=True)
    tspec = dict(cfg.get("trainer", {}))
    strategies = cfg.get("strategies") or [tspec.pop("strategy", "naive")]
    tspec.pop("strategy", None)
    tspec.setdefault("seed", seed)
    out = cfg.get("output", "exitnet-run")
    os.makedirs(out, exist_ok=True)
    mspec = cfg.get("model", {"name": "small_cnn_8" if splits.input_shape[-1] == 8 else "small_cnn_28"})
    torch.manual_seed(seed)
    init = _build_model(mspec, splits.num_classes, splits.input_shape[0]).state_dict()
    results = {}
    for strat in strategies:
        net = _build_model(mspec, splits.num_classes, splits.input_shape[0])
        net.load_state_dict(init)
        ck = tspec.pop("checkpoint_dir", None)
        tr = SequentialTrainer(
            net, strat, checkpoint_dir=None if ck is None else os.path.join(ck, strat.replace("+", "_")),
            **tspec,
        )
        if ck is not None:
            tspec["checkpoint_dir"] = ck
        res = tr.fit(splits)
        results[strat] = res
        tag = strat.replace("+", "_")
        res.to_json(os.path.join(out, f"result_{tag}.json"), include_logits=True)
        torch.save(net.state_dict(), os.path.join(out, f"weights_{tag}.pt"))
        print(f"\n{strat}:\n{(res.stability_frame() * 100).round(1).to_string(na_rep='')}", flush=True)
        if cfg.get("export"):
            from .torch._export import export

            export(net.eval(), os.path.join(out, f"model_{tag}.exitnet"), tuple(splits.input_shape))
    table = compare(results)
    table.to_csv(os.path.join(out, "summary.csv"))
    print("\n" + table.round(4).to_string(), flush=True)
    import matplotlib

    matplotlib.use("Agg")
    plot_stability_matrices(results).savefig(os.path.join(out, "stability_matrices.png"), dpi=110)
    plot_budget_curves(results).figure.savefig(os.path.join(out, "budget_curves.png"), dpi=110)
    print(f"outputs in {out}/")
    return 0


def _read_logits(path: str) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    if not os.path.exists(path):
        raise SystemExit(f"logits: {path} does not exist")
    if path.endswith(".json"):
        from .torch._results import TrainingResult

        r = TrainingResult.from_json(path)
        if r.test_logits is None:
            raise SystemExit(f"logits: {path} holds no logits (save with include_logits=True)")
        return np.asarray(r.test_logits, np.float32), np.asarray(r.test_labels), r.costs
    try:
        with np.load(path, allow_pickle=False) as z:
            if "logits" not in z or "labels" not in z:
                raise SystemExit(f"logits: {path} must hold arrays 'logits' (K, N, C) and 'labels' (N,)")
            costs = np.asarray(z["costs"]) if "costs" in z else None
            return np.ascontiguousarray(z["logits"], np.float32), np.asarray(z["labels"]), costs
    except (ValueError, OSError) as e:
        raise SystemExit(f"logits: cannot read {path} as .npz ({e})") from None


def cmd_evaluate(args: argparse.Namespace) -> int:
    from . import policy

    logits, labels, costs = _read_logits(args.logits)
    if logits.ndim != 3:
        raise SystemExit(f"logits: expected (K, N, C) logits, got shape {logits.shape}")
    if args.costs:
        costs = np.asarray(_floats(args.costs, "costs"))
    cm = policy.CostModel.from_cumulative(costs) if costs is not None else policy.CostModel.uniform(logits.shape[0])
    budgets = _floats(args.budgets, "budgets")
    curve = policy.exact_curve(logits, labels, cost=cm, measure=args.measure).to_pandas()
    K = logits.shape[0]
    print(f"{K} exits, {logits.shape[1]} samples, {logits.shape[2]} classes; costs {cm.costs.tolist()}")
    for k in range(K):
        print(f"  exit {k}: accuracy {100 * float((logits[k].argmax(1) == labels).mean()):.2f}%  "
              f"cost {cm.costs[k] / cm.full:.3f} of full")
    print(f"exact curve: {len(curve)} operating points")
    lo = cm.costs[0] / cm.full
    ok = [b for b in budgets if lo <= b <= 1]
    if ok:
        acc = policy.accuracy_at_budgets(logits, labels, ok, cost=cm, measure=args.measure)
        for b, a in zip(ok, acc):
            print(f"  best accuracy with mean cost ≤ {100 * b:.0f}%: {100 * a:.2f}%")
    sp = policy.speedup_at_iso_accuracy(logits, labels, delta=args.delta, cost=cm, measure=args.measure)
    print(f"speed-up at iso-accuracy (within {100 * args.delta:.1f} points of the last exit): {sp:.3f}x")
    if args.val:
        vl, vy, _ = _read_logits(args.val)
        for b in ok:
            cal = policy.calibrate(vl, vy, logits, labels, target_cost=b * cm.full, cost=cm,
                                   measure=args.measure)
            print(f"  calibrated on validation for {100 * b:.0f}%: τ={cal.thresholds[0]:.4f} "
                  f"test accuracy {100 * cal.test.accuracy:.2f}% cost {cal.test.mean_cost / cm.full:.3f}")
    if args.curve_csv:
        curve.drop(columns=[c for c in curve.columns if c == "exit_histogram"]).to_csv(args.curve_csv, index=False)
        print(f"curve written to {args.curve_csv}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import torch

    from .torch._export import export

    if not os.path.exists(args.weights):
        raise SystemExit(f"weights: {args.weights} does not exist")
    shape = tuple(int(v) for v in args.input_shape.split(","))
    net = _build_model({"name": args.model, **json.loads(args.model_args)}, args.num_classes, shape[0])
    sd = torch.load(args.weights, map_location="cpu", weights_only=True)
    try:
        net.load_state_dict(sd)
    except RuntimeError as e:
        raise SystemExit(f"weights: {args.weights} does not fit {args.model}: {e}") from None
    export(net.eval(), args.out, shape)
    print(f"exported {args.model} to {args.out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DEFAULT_STRATEGIES, run_demo

    strategies = args.strategies.split(",") if args.strategies else list(DEFAULT_STRATEGIES)
    run_demo(args.out, strategies=strategies, epochs_per_stage=args.epochs, seed=args.seed,
             progress=args.progress)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from . import _config

    parts = []
    try:
        if args.cflags:
            parts.append(_config.cflags())
        if args.libs:
            parts.append(_config.libs())
        if args.pkgconfigdir:
            parts.append(_config.get_pkgconfig_dir())
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not parts:
        print("error: config: give at least one of --cflags, --libs, --pkgconfigdir", file=sys.stderr)
        return 2
    print(" ".join(parts))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    from . import __version__, _abi

    p = argparse.ArgumentParser(prog="python -m exitnet", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"exitnet {__version__} (C ABI {_abi.ABI_VERSION})")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="train a 4-exit CNN on the digits with each strategy; run it in Go")
    d.add_argument("--out", default="demo-output", help="output directory (default demo-output)")
    d.add_argument("--strategies", default="", help="comma-separated (default: all six)")
    d.add_argument("--epochs", type=int, default=4, help="epochs per stage (default 4)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--progress", action="store_true", help="show tqdm progress bars")
    d.set_defaults(fn=cmd_demo)
    t = sub.add_parser("train", help="train from a JSON config")
    t.add_argument("--config", required=True)
    t.set_defaults(fn=cmd_train)
    e = sub.add_parser("evaluate", help="recorded logits -> budget curve, accuracy at budgets")
    e.add_argument("--logits", required=True, help=".npz with logits (K,N,C) and labels, or a result JSON")
    e.add_argument("--val", help="validation logits for calibration (same format)")
    e.add_argument("--costs", help="cumulative cost of each exit, comma-separated (default 1..K)")
    e.add_argument("--budgets", default="0.25,0.5,0.75")
    e.add_argument("--delta", type=float, default=0.01, help="iso-accuracy tolerance (default 0.01)")
    e.add_argument("--measure", default="max_softmax", choices=[m.lower() for m in _abi.POLICY_MEASURE])
    e.add_argument("--curve-csv", help="write the exact curve to this CSV file")
    e.set_defaults(fn=cmd_evaluate)
    x = sub.add_parser("export", help="export trained weights to a runtime model file")
    x.add_argument("--weights", required=True, help="state_dict saved with torch.save")
    x.add_argument("--model", required=True, choices=MODELS)
    x.add_argument("--model-args", default="{}", help='JSON kwargs of the model, e.g. \'{"width": 16}\'')
    x.add_argument("--num-classes", type=int, default=10)
    x.add_argument("--input-shape", default="1,28,28", help="C,H,W (default 1,28,28)")
    x.add_argument("--out", required=True)
    x.set_defaults(fn=cmd_export)
    c = sub.add_parser("config", help="compiler and linker flags for C programs using the installed library")
    c.add_argument("--cflags", action="store_true", help="-I<include dir>")
    c.add_argument("--libs", action="store_true", help="-L<dir> -Wl,-rpath,<dir> -lexitnet")
    c.add_argument("--pkgconfigdir", action="store_true", help="the directory of exitnet.pc")
    c.set_defaults(fn=cmd_config)
    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
