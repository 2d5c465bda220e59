"""Execute a written v2 graph (JSON + weight rows) with torch functional ops.

This is the exporter's second opinion, independent of the fx graph it came from: it reads only
what the file says. :func:`exitnet.torch.export` uses it to name the first node whose value
differs from torch. With ``count=True`` it also applies the cost model to the file alone (the
formula the runtime applies at load).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["run_part", "run_graph"]

_ACT = {
    "relu": torch.relu, "relu6": F.relu6, "sigmoid": torch.sigmoid, "silu": F.silu,
    "hardswish": F.hardswish, "hardsigmoid": F.hardsigmoid,
}


def _w(weights: dict[str, np.ndarray], name: Any) -> Any:
    if name is None:
        return None
    return torch.from_numpy(np.asarray(weights[name], np.float32))


def run_part(part: dict, weights: dict[str, np.ndarray], x: torch.Tensor,
             count: bool = False) -> tuple[dict[str, torch.Tensor], int]:
    """Values of every node of one stage/head (``"input"`` included) and its MACs per sample."""
    env: dict[str, torch.Tensor] = {"input": x}
    macs = 0
    with torch.no_grad():
        for d in part["nodes"]:
            op = d["op"]
            ins = [env[i] for i in d["inputs"]]
            a = ins[0]
            if op == "conv2d":
                wt = _w(weights, d["weight"])
                y = F.conv2d(a, wt, _w(weights, d.get("bias")), tuple(d["stride"]), tuple(d["padding"]),
                             tuple(d["dilation"]), int(d["groups"]))
                macs += int(y.shape[1] * y.shape[2] * y.shape[3] * wt.shape[1] * wt.shape[2] * wt.shape[3])
            elif op == "linear":
                wt = _w(weights, d["weight"])
                y = F.linear(a, wt, _w(weights, d.get("bias")))
                macs += int(wt.shape[0] * wt.shape[1])
            elif op == "scale_shift":
                s, t = _w(weights, d["scale"]), _w(weights, d["shift"])
                shp = (1, -1) + (1,) * (a.dim() - 2)
                y = a * s.reshape(shp) + t.reshape(shp)
            elif op in _ACT:
                y = _ACT[op](a)
            elif op == "gelu":
                y = F.gelu(a, approximate=d.get("approximate", "none"))
            elif op == "identity":
                y = a
            elif op == "maxpool2d":
                y = F.max_pool2d(a, d["kernel"], d["stride"], d["padding"], d.get("dilation", [1, 1]),
                                 ceil_mode=bool(d.get("ceil_mode", False)))
            elif op == "avgpool2d":
                y = F.avg_pool2d(a, d["kernel"], d["stride"], d["padding"], ceil_mode=bool(d.get("ceil_mode", False)),
                                 count_include_pad=bool(d.get("count_include_pad", True)))
            elif op == "adaptive_avgpool2d":
                y = F.adaptive_avg_pool2d(a, d["output_size"])
            elif op == "mean":
                y = a.mean(dim=(2, 3), keepdim=bool(d.get("keepdim", False)))
            elif op in ("add", "mul"):
                # (N, C, 1, 1) against (N, C, H, W) broadcasts in torch as in the contract
                y = ins[0] + ins[1] if op == "add" else ins[0] * ins[1]
            elif op == "add_scalar":
                y = a + float(d["value"])
            elif op == "mul_scalar":
                y = a * float(d["value"])
            elif op == "cat":
                y = torch.cat(ins, dim=1)
            elif op == "flatten":
                y = torch.flatten(a, 1)
            else:
                raise ValueError(f"node {d['name']!r}: unknown op {op!r}")
            env[d["name"]] = y
    return env, macs if count else 0


def run_graph(graph: dict, weights: dict[str, np.ndarray], x: torch.Tensor) -> list[torch.Tensor]:
    """Every exit's logits for a batch x (already preprocessed)."""
    outs = []
    h = x
    for s, hd in zip(graph["stages"], graph["heads"]):
        env, _ = run_part(s, weights, h)
        h = env[s["output"]]
        henv, _ = run_part(hd, weights, h)
        outs.append(henv[hd["output"]])
    return outs
