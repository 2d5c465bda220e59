"""torchvision networks in the exitnet runtime, side by side with torch eager and ONNX Runtime.

    PYTHONPATH=python .venv/bin/python bench/bench_any_network.py [--epochs 3] [--quick]
                                                                  [--cache ~/.cache/exitnet-bench]

For resnet18 (exits after layer1, layer2, layer3) and mobilenet_v2 (after features.3, .6, .13),
at 3×32×32, 1 thread each:

1. full network, batch 1 and batch 64: torch eager (the torchvision module, inference mode),
   ONNX Runtime (torch.onnx.export of the same weights, all graph optimisations) and the exitnet
   runtime (threshold None: every stage and every head runs).
2. with exits: the network is trained with attach_exits (joint loss over the exits, Adam) on
   scikit-learn digits resized to 3×32×32 (Fashion-MNIST training of these networks takes too long
   on this 2-core CPU); the global max-softmax threshold is the cheapest one on the validation split
   losing ≤ 0.5 accuracy points against the last exit (exitnet.policy.calibrate); exitnet with that
   threshold runs the test split against torch and ONNX Runtime running the full network.

Each line prints samples/s and GFLOP/s (2 × MACs executed / s) per engine, and the ratios
exitnet/torch and exitnet/ORT (> 1: exitnet is faster). The load average is printed first: the
machine is shared, so compare ratios from the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

import exitnet
from exitnet import data, policy
from exitnet.runtime import Model
from exitnet.torch import attach_exits, export, stage_costs

NETS = {
    "resnet18": ["layer1", "layer2", "layer3"],
    "mobilenet_v2": ["features.3", "features.6", "features.13"],
}


def timed(fns: dict, min_time: float, rounds: int = 3) -> dict:
    """Median seconds per call of each function, timed in alternating phases (each engine for a
    while, then the next, repeated), so load from other processes hits all of them alike."""
    times: dict = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            time.sleep(0.2)  # let the previous engine's spinning worker threads go to sleep
            f()
            t_end = time.perf_counter() + min_time / rounds
            while True:
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
                if time.perf_counter() > t_end and len(times[k]) >= 2:
                    break
    return {k: statistics.median(v) for k, v in times.items()}


def digits32() -> dict:
    s = data.digits(seed=0)

    def rgb32(ds):
        x, y, ids = ds.tensors
        return TensorDataset(F.interpolate(x, size=(32, 32)).expand(-1, 3, -1, -1).contiguous(), y, ids)

    return {"train": rgb32(s.train), "val": rgb32(s.val), "test": rgb32(s.test)}


def trained(name: str, ds: dict, epochs: int, cache: str):
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None, num_classes=10)
    net = attach_exits(model, NETS[name], example_input=ds["test"].tensors[0][:4])
    path = os.path.join(cache, f"{name}_digits32_{epochs}ep.pt")
    if os.path.exists(path):
        net.load_state_dict(torch.load(path, weights_only=True))
        print(f"{name}: loaded trained weights from {path}")
        return model.eval(), net.eval()
    torch.set_num_threads(1)  # a shared, loaded machine: OpenMP barriers across threads stall
    x, y = ds["train"].tensors[0], ds["train"].tensors[1]
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    t0 = time.perf_counter()
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            loss = sum(F.cross_entropy(z, y[idx]) for z in net(x[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    print(f"{name}: trained {len(net.heads)} exits jointly on digits 3x32x32 ({len(x)} images, {epochs} epochs) "
          f"in {time.perf_counter() - t0:.0f} s")
    os.makedirs(cache, exist_ok=True)
    torch.save(net.state_dict(), path)
    return model.eval(), net.eval()


def onnx_session(model, x: torch.Tensor, tmp: str, name: str):
    import onnxruntime as ort

    path = os.path.join(tmp, f"{name}.onnx")
    torch.onnx.export(model, (x[:1],), path, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def bench_net(name: str, ds: dict, epochs: int, cache: str, tmp: str, min_time: float) -> None:
    model, net = trained(name, ds, epochs, cache)
    xte, yte = ds["test"].tensors[0], ds["test"].tensors[1].numpy()
    path = export(net, os.path.join(tmp, f"{name}.exitnet"), example_input=xte[:8])
    s_macs, h_macs = stage_costs(net, xte[:1])
    full_macs = sum(s_macs)  # the torchvision model itself: every stage, its own classifier
    sess = onnx_session(model, xte, tmp, name)
    torch.set_num_threads(1)
    exitnet.set_num_threads(1)
    with Model(path) as m, torch.inference_mode():
        ref = model(xte[:64]).numpy()
        got = m.predict(xte[:64].numpy(), return_logits=True, output="numpy")["logits"][-1]
        onx = sess.run(None, {"x": xte[:64].numpy()})[0]
        print(f"{name}: {full_macs / 1e6:.1f} MMAC/sample full; max |Δlogit| vs torch: exitnet "
              f"{np.abs(got - ref).max():.1e}, ORT {np.abs(onx - ref).max():.1e}")
        for batch in (1, 64):
            xs = [xte[i:i + batch] for i in range(0, 64 if batch == 1 else len(xte) - batch + 1, batch)][:16 if batch == 1 else 8]
            xn = [b.numpy() for b in xs]
            n = sum(len(b) for b in xs)
            t = timed({
                "torch": lambda: [model(b) for b in xs],
                "ort": lambda: [sess.run(None, {"x": b}) for b in xn],
                "exitnet": lambda: [m.predict(b, output="numpy") for b in xn],
            }, min_time)
            line = "   ".join(f"{k} {n / v:8.1f}/s {2 * full_macs * n / v / 1e9:6.2f} GFLOP/s" for k, v in t.items())
            print(f"{name:12s} full, batch {batch:2d}: {line}   exitnet/torch {t['torch'] / t['exitnet']:.2f}x  "
                  f"exitnet/ORT {t['ort'] / t['exitnet']:.2f}x", flush=True)

        # exits calibrated on validation: ≤ 0.5 points below the last exit's validation accuracy
        xva, yva = ds["val"].tensors[0], ds["val"].tensors[1].numpy()
        val_logits = np.stack([z.numpy() for z in net(xva)])
        test_logits = np.stack([z.numpy() for z in net(xte)])
        last_val = float((val_logits[-1].argmax(1) == yva).mean())
        costs = np.cumsum(np.add(s_macs, h_macs))
        cal = policy.calibrate(val_logits, yva, test_logits, yte, target_accuracy=last_val - 0.005,
                               cost=[float(c) for c in costs])  # cumulative MACs per exit
        tau = float(cal.thresholds[0])
        res = m.predict(xte.numpy(), thresholds=tau, output="numpy")
        acc = float((res["prediction"] == yte).mean())
        last = float((test_logits[-1].argmax(1) == yte).mean())
        mean_macs = res["macs"] / len(xte)
        if last < 0.5:
            print(f"{name}: WARNING the last exit is at {100 * last:.1f}% test accuracy: the training did not "
                  "converge, so the calibrated-exit lines below are not meaningful (rerun with more --epochs)")
        print(f"{name}: τ={tau:.4f} (validation, ≤0.5 pt): test accuracy {100 * acc:.2f}% vs last exit "
              f"{100 * last:.2f}%, exits {np.bincount(res['exit'], minlength=len(costs)).tolist()}, mean "
              f"{mean_macs / 1e6:.1f} of {costs[-1] / 1e6:.1f} MMAC ({costs[-1] / mean_macs:.2f}x fewer)")
        for batch in (1, 64):
            xs = [xte[i:i + batch] for i in range(0, len(xte) - batch + 1, batch)][:64 if batch == 1 else 8]
            xn = [b.numpy() for b in xs]
            n = sum(len(b) for b in xs)
            executed = sum(m.predict(b, thresholds=tau, output="numpy")["macs"] for b in xn)
            t = timed({
                "torch(full)": lambda: [model(b) for b in xs],
                "ort(full)": lambda: [sess.run(None, {"x": b}) for b in xn],
                "exitnet(exits)": lambda: [m.predict(b, thresholds=tau, output="numpy") for b in xn],
            }, min_time)
            flops = {"torch(full)": 2 * full_macs * n, "ort(full)": 2 * full_macs * n, "exitnet(exits)": 2 * executed}
            line = "   ".join(f"{k} {n / v:8.1f}/s {flops[k] / v / 1e9:6.2f} GFLOP/s" for k, v in t.items())
            print(f"{name:12s} exits, batch {batch:2d}: {line}   exitnet/torch {t['torch(full)'] / t['exitnet(exits)']:.2f}x  "
                  f"exitnet/ORT {t['ort(full)'] / t['exitnet(exits)']:.2f}x", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="shorter timing (noisier)")
    ap.add_argument("--nets", default=",".join(NETS))
    ap.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "exitnet-bench"))
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} "
          f"({os.cpu_count()} CPUs); torch {torch.__version__}; 1 thread per engine")
    ds = digits32()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.nets.split(","):
            bench_net(name, ds, args.epochs, args.cache, tmp, 1.0 if args.quick else 4.0)
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} at the end")


if __name__ == "__main__":
    main()
