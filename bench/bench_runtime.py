"""exitnet's Go runtime side by side with ONNX Runtime, torch eager and torch.compile.

    PYTHONPATH=python .venv/bin/python bench/bench_runtime.py [--threads 1 2]
        [--batches 1 8 64 256 1024] [--quick] [--no-compile] [--no-exits]

Needs the ``bench`` extra (onnxruntime, onnx); peers that are not installed are skipped
with a note. Every figure is per *process CPU second* (user + system time of this whole
process, all threads: a shared machine's waiting time does not count, a spinning worker
does), with wall-clock samples/s beside it, and GFLOP/s = 2 · MACs / CPU second.
Contenders are timed in alternating phases (a pause between them lets the others' spinning
workers sleep), each phase's figure is the median per call.

1. small_cnn_28 (conv 1→32→64→128, 3×3 pad 1, each + ReLU + 2×2 max-pool; Linear), the MLP
   784-512-512-10, and torchvision's resnet18 and mobilenet_v2 (10 classes) at 3×32×32, whole
   networks without exits: every batch size and thread count; ratio = exitnet / ONNX Runtime
   (> 1: exitnet is faster). `--models resnet18 mobilenet_v2` picks some.
2. Early exit: a 3-exit version of the CNN trained on Fashion-MNIST (Debian
   dataset-fashion-mnist; sklearn digits upscaled if absent), threshold τ chosen on a
   validation split as the cheapest global τ losing ≤ 0.5 accuracy points against the last
   exit. exitnet (compaction) against ONNX Runtime with one session per stage and head and a
   numpy exit rule that runs stage k only on the samples still running (the smart peer), the
   full network in ONNX Runtime, and torch; their exit decisions are compared.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import tempfile
import time
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

import exitnet
from exitnet.runtime import Model
from exitnet.torch import EarlyExitNet
from exitnet.torch._export import export

try:
    import onnxruntime as ort
except ImportError:  # the bench extra is not installed
    ort = None

FMNIST = "/usr/share/datasets/fashion-mnist"


def measure(fns: dict[str, Callable[[], object]], min_time: float, rounds: int = 3) -> dict[str, tuple[float, float]]:
    """Median (process CPU seconds, wall seconds) per call of each function, timed in
    alternating phases so that load from other processes hits all alike."""
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    wall: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, f in fns.items():
            time.sleep(0.2)  # let the previous contender's spinning workers go to sleep
            f()
            n = 0
            t_end = time.perf_counter() + min_time / rounds
            while n < 2 or time.perf_counter() < t_end:
                c0, t0 = time.process_time(), time.perf_counter()
                f()
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
                n += 1
    return {k: (statistics.median(cpu[k]), statistics.median(wall[k])) for k in fns}


def ort_session(path: str, threads: int):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # no spinning: a spinning worker burns CPU time between calls
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def onnx_export(module: nn.Module, shape, path: str) -> str:
    module.eval()
    torch.onnx.export(module, torch.zeros(1, *shape), path, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False)
    return path


def small_cnn_stage() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    )


def one_exit(stage: nn.Module, head: nn.Module) -> EarlyExitNet:
    return EarlyExitNet([stage], [head]).eval()


def compare(name: str, net: EarlyExitNet, shape, tmp: str, args) -> None:
    path = export(net, os.path.join(tmp, f"{name}.exitnet"), shape)
    full = nn.Sequential(net.stages[0], net.heads[0]).eval()
    sess_path = onnx_export(full, shape, os.path.join(tmp, f"{name}.onnx")) if ort else None
    compiled = None
    if not args.no_compile:
        compiled = torch.compile(full)
    with Model(path) as m:
        macs = int(m.exit_costs[-1])
        print(f"\n{name}: {macs / 1e6:.2f} M MACs per sample (GFLOP/s = 2·MACs/CPU s); samples per CPU second "
              f"[wall samples/s]; ratio = exitnet / ORT")
        hdr = f"{'thr':>3} {'batch':>5} | {'exitnet':>24} | {'ONNX Runtime':>24} | {'torch eager':>24} | {'torch.compile':>24} | ratio"
        print(hdr)
        for threads in args.threads:
            torch.set_num_threads(threads)
            exitnet.set_num_threads(threads)
            sess = ort_session(sess_path, threads) if sess_path else None
            for batch in args.batches:
                x = torch.randn(batch, *shape)
                xn = x.numpy()
                with torch.inference_mode():
                    ref = full(x).numpy()
                got = m.predict(xn, return_logits=True, output="numpy")["logits"][0]
                err = float(np.abs(got - ref).max() / (np.abs(ref).max() + 1e-30))
                if err > 1e-4:
                    raise SystemExit(f"{name} batch {batch}: exitnet differs from torch (rel {err:.1e})")
                fns: dict[str, Callable[[], object]] = {"exitnet": lambda: m.predict(xn, output="numpy")}
                if sess is not None:
                    fns["ort"] = lambda: sess.run(None, {"x": xn})

                def eager():
                    with torch.inference_mode():
                        full(x)
                fns["torch"] = eager
                if compiled is not None and batch in args.compile_batches:
                    def comp():
                        with torch.inference_mode():
                            compiled(x)
                    comp()  # compile outside the timing
                    fns["compile"] = comp
                res = measure(fns, args.min_time)

                def cell(k: str) -> str:
                    if k not in res:
                        return f"{'-':>24}"
                    c, w = res[k]
                    return f"{batch / c:7.0f} {2 * macs * batch / c / 1e9:5.1f}GF [{batch / w:6.0f}]"
                ratio = f"{res['ort'][0] / res['exitnet'][0]:5.2f}x" if "ort" in res else "  -"
                print(f"{threads:>3} {batch:>5} | {cell('exitnet')} | {cell('ort')} | {cell('torch')} | {cell('compile')} | {ratio}"
                      f"   load {os.getloadavg()[0]:.1f}", flush=True)


def torchvision_net(name: str) -> tuple[EarlyExitNet, tuple[int, int, int]]:
    """A torchvision classifier (random weights, 10 classes) as a one-exit network, 3×32×32."""
    import torchvision

    return one_exit(getattr(torchvision.models, name)(num_classes=10), nn.Identity()), (3, 32, 32)


MODELS: dict[str, Callable[[], tuple[EarlyExitNet, tuple[int, int, int]]]] = {
    "small_cnn_28": lambda: (one_exit(small_cnn_stage(), nn.Sequential(nn.Flatten(), nn.Linear(128 * 9, 10))), (1, 28, 28)),
    "mlp": lambda: (one_exit(nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU()),
                             nn.Linear(512, 10)), (1, 28, 28)),
    "resnet18": lambda: torchvision_net("resnet18"),
    "mobilenet_v2": lambda: torchvision_net("mobilenet_v2"),
}


def _idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        b = f.read()
    nd = b[3]
    dims = [int.from_bytes(b[4 + 4 * i: 8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(b, np.uint8, offset=4 + 4 * nd).reshape(dims)


def fashion():
    if os.path.exists(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz")):
        f = lambda a: ((a.astype(np.float32) / 255.0 - 0.286) / 0.353)[:, None]  # noqa: E731
        xtr = f(_idx(os.path.join(FMNIST, "train-images-idx3-ubyte.gz")))
        ytr = _idx(os.path.join(FMNIST, "train-labels-idx1-ubyte.gz")).astype(np.int64)
        xte = f(_idx(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz")))
        yte = _idx(os.path.join(FMNIST, "t10k-labels-idx1-ubyte.gz")).astype(np.int64)
        return "fashion-mnist", xtr, ytr, xte, yte
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.nn.functional.interpolate(torch.from_numpy(d.images[:, None].astype(np.float32) / 16), size=28).numpy()
    return "digits (upscaled)", x[:1300], d.target[:1300], x[1300:], d.target[1300:]


def exit_cnn() -> EarlyExitNet:
    """The small CNN cut into 3 stages, with cheap heads after the first two."""
    return EarlyExitNet(
        [nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2)),
         nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2)),
         nn.Sequential(nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(), nn.MaxPool2d(2))],
        [nn.Sequential(nn.Conv2d(32, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 49, 10)),
         nn.Sequential(nn.Flatten(), nn.Linear(64 * 49, 10)),
         nn.Sequential(nn.Flatten(), nn.Linear(128 * 9, 10))],
    )


class OrtPerStage:
    """ONNX Runtime, one session per stage and head, with the exit rule in numpy written the
    smart way: stage k runs only on the samples still running (index compaction), the max
    softmax is 1 / Σ exp(z − max z) without forming the softmax."""

    def __init__(self, net: EarlyExitNet, shape, tmp: str, threads: int) -> None:
        self.stages, self.heads = [], []
        s = torch.zeros(1, *shape)
        for k, (st, hd) in enumerate(zip(net.stages, net.heads)):
            self.stages.append(ort_session(onnx_export(st, s.shape[1:], os.path.join(tmp, f"s{k}.onnx")), threads))
            with torch.inference_mode():
                s = st.eval()(s)
            self.heads.append(ort_session(onnx_export(hd, s.shape[1:], os.path.join(tmp, f"h{k}.onnx")), threads))

    def __call__(self, x: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
        n = len(x)
        pred = np.empty(n, np.int64)
        exit_ = np.empty(n, np.int64)
        idx = np.arange(n)
        h = x
        last = len(self.stages) - 1
        for k in range(last + 1):
            h = self.stages[k].run(None, {"x": h})[0]
            z = self.heads[k].run(None, {"x": h})[0]
            if k == last:
                pred[idx], exit_[idx] = z.argmax(1), k
                break
            m = z.max(1, keepdims=True)
            conf = 1.0 / np.exp(z - m).sum(1)
            done = conf >= tau
            pred[idx[done]], exit_[idx[done]] = z[done].argmax(1), k
            keep = ~done
            if not keep.any():
                break
            idx, h = idx[keep], h[keep]
        return pred, exit_


def early_exit_bench(tmp: str, args) -> None:
    name, xtr, ytr, xte, yte = fashion()
    nval = len(xtr) // 6
    xva, yva, xtr, ytr = xtr[:nval], ytr[:nval], xtr[nval:], ytr[nval:]
    if args.train_samples:
        xtr, ytr = xtr[:args.train_samples], ytr[:args.train_samples]
    torch.manual_seed(0)
    net = exit_cnn()
    tag = f"_{args.train_samples}" if args.train_samples else ""
    weights = os.path.join(args.cache, f"exit_cnn_{name.split()[0]}_{args.epochs}ep{tag}.pt") if args.cache else ""
    if weights and os.path.exists(weights):
        net.load_state_dict(torch.load(weights, weights_only=True))
        print(f"\nloaded the trained 3-exit CNN from {weights}")
    else:
        opt = torch.optim.Adam(net.parameters(), 2e-3)
        X, Y = torch.from_numpy(xtr), torch.from_numpy(ytr)
        t0 = time.perf_counter()
        net.train()
        for _ in range(args.epochs):
            perm = torch.randperm(len(X))
            for i in range(0, len(X), 128):
                idx = perm[i:i + 128]
                loss = sum(nn.functional.cross_entropy(z, Y[idx]) for z in net(X[idx]))
                opt.zero_grad()
                loss.backward()
                opt.step()
        print(f"\ntrained the 3-exit CNN on {name} ({len(X)} images, {args.epochs} epochs) in {time.perf_counter() - t0:.0f} s")
        if weights:
            os.makedirs(args.cache, exist_ok=True)
            torch.save(net.state_dict(), weights)
    net.eval()
    path = export(net, os.path.join(tmp, "exits.exitnet"), (1, 28, 28))
    with Model(path) as m:
        val = m.predict(xva, return_logits=True, output="numpy")
        last_acc = float((val["logits"][-1].argmax(1) == yva).mean())
        best, best_cost = 1.0, float("inf")
        for tau in np.linspace(0.1, 1.0, 91):
            r = m.predict(xva, thresholds=float(tau), output="numpy")
            if (r["prediction"] == yva).mean() >= last_acc - 0.005 and r["macs"] < best_cost:
                best, best_cost = float(tau), r["macs"]
        tau = best
        res = m.predict(xte, thresholds=tau, output="numpy")
        acc = float((res["prediction"] == yte).mean())
        hist = np.bincount(res["exit"], minlength=m.num_exits)
        mean_cost = res["macs"] / len(xte)
        print(f"threshold τ={tau:.3f} (validation): test accuracy {100 * acc:.2f}%, exits {hist.tolist()}, "
              f"mean cost {mean_cost:,.0f} of {int(m.exit_costs[-1]):,} MACs ({m.exit_costs[-1] / mean_cost:.2f}x fewer)")
        batches = [xte[i:i + 256] for i in range(0, len(xte), 256)]
        full = nn.Sequential(*net.stages, net.heads[-1]).eval()
        for threads in args.threads:
            torch.set_num_threads(threads)
            exitnet.set_num_threads(threads)
            fns: dict[str, Callable[[], object]] = {
                "exitnet (early exit)": lambda: [m.predict(b, thresholds=tau, output="numpy") for b in batches]}
            if ort is not None:
                per_stage = OrtPerStage(net, (1, 28, 28), tmp, threads)
                ort_pred = np.concatenate([per_stage(b, tau)[0] for b in batches])
                ort_exit = np.concatenate([per_stage(b, tau)[1] for b in batches])
                agree = float((ort_exit == res["exit"]).mean())
                print(f"threads {threads}: ORT per-stage peer agrees with exitnet on {100 * agree:.2f}% of exits, "
                      f"{100 * float((ort_pred == res['prediction']).mean()):.2f}% of predictions")
                fns["ORT per-stage + numpy exit rule"] = lambda: [per_stage(b, tau) for b in batches]
                full_sess = ort_session(onnx_export(full, (1, 28, 28), os.path.join(tmp, "full.onnx")), threads)
                fns["ORT full network"] = lambda: [full_sess.run(None, {"x": b}) for b in batches]
            tb = [torch.from_numpy(b) for b in batches]

            def run_torch():
                with torch.inference_mode():
                    for b in tb:
                        full(b)
            fns["torch eager full network"] = run_torch
            r = measure(fns, args.min_time * 2, rounds=2)
            base = r["exitnet (early exit)"][0]
            for k, (c, w) in r.items():
                print(f"  threads {threads}  {k:34s} {c:6.3f} CPU s [{w:6.3f} s wall] for {len(xte)} images   "
                      f"exitnet is {c / base:5.2f}x faster   load {os.getloadavg()[0]:.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64, 256, 1024])
    ap.add_argument("--compile-batches", type=int, nargs="+", default=[1, 256],
                    help="batch sizes given a torch.compile peer (each compiles anew: slow)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile peer")
    ap.add_argument("--no-exits", action="store_true", help="skip the early-exit part")
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-samples", type=int, default=0,
                    help="train the early-exit CNN on this many images only (0: all; for a loaded machine)")
    ap.add_argument("--quick", action="store_true", help="shorter timing phases")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "exitnet-bench-cache"),
                    help="where the trained early-exit CNN's weights are kept between runs ('' = retrain)")
    args = ap.parse_args()
    args.min_time = 0.6 if args.quick else 2.0
    print(f"torch {torch.__version__}; onnxruntime {ort.__version__ if ort else 'not installed (pip install exitnet[bench])'}; "
          f"exitnet BLAS: {exitnet.blas_backend()}; load average {os.getloadavg()}")
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            net, shape = MODELS[name]()
            compare(name, net, shape, tmp, args)
        if not args.no_exits:
            early_exit_bench(tmp, args)


if __name__ == "__main__":
    main()
