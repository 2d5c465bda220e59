"""Export an early-exit PyTorch model to the exitnet runtime's model file.

The file is one Arrow IPC file (readable with ``pyarrow.ipc.open_file``): the
graph as versioned JSON in the schema metadata (``exitnet.kind = "model"``,
``exitnet.format_version = "1"``, ``exitnet.graph``) and one row per weight
tensor (``name`` string, ``shape`` list<int32>, ``data`` list<float32>). No
pickle: loading a file runs no code.

BatchNorm is folded into the preceding Conv2d / Linear with its running
statistics (eval-mode semantics)::

    s  = γ / sqrt(running_var + eps)
    W' = W · s  (per output channel),   b' = (b − running_mean) · s + β

Supported modules: Conv2d (any stride, padding, dilation, groups; zero padding),
Linear, BatchNorm1d/2d (after a Conv2d/Linear only), ReLU, ReLU6, MaxPool2d
(dilation 1; ceil_mode allowed), AvgPool2d (ceil_mode False, no
divisor_override), AdaptiveAvgPool2d(1), Flatten (start_dim=1), Dropout and
Identity (dropped), :class:`ResidualBlock`, and any nn.Sequential nesting of
these. Anything else is refused with its module path and type name.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional, Sequence

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from .._io import atomic_write, container_metadata

__all__ = ["export", "ResidualBlock", "FORMAT_VERSION"]

#: Model-file format version written (golib/runtime.FormatVersion).
FORMAT_VERSION = 1


class ResidualBlock(nn.Module):
    """``y = act(main(x) + shortcut(x))``, the residual block the runtime executes.

    Parameters
    ----------
    main : nn.Module
        The main path (e.g. conv-BN-ReLU-conv-BN).
    shortcut : nn.Module, optional
        None for the identity, or a projection (e.g. 1×1 conv + BN) giving the main
        path's output shape.
    relu : bool
        Apply ReLU after the sum (default True).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> b = ResidualBlock(nn.Conv2d(4, 4, 3, padding=1))
    >>> b(torch.zeros(2, 4, 5, 5)).shape
    torch.Size([2, 4, 5, 5])
    """

    def __init__(self, main: nn.Module, shortcut: Optional[nn.Module] = None, relu: bool = True) -> None:
        super().__init__()
        if not isinstance(main, nn.Module):
            raise TypeError(f"main: expected an nn.Module, got {type(main).__name__}")
        if shortcut is not None and not isinstance(shortcut, nn.Module):
            raise TypeError(f"shortcut: expected an nn.Module or None, got {type(shortcut).__name__}")
        self.main = main
        self.shortcut = shortcut
        self.relu = bool(relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.main(x) + (x if self.shortcut is None else self.shortcut(x))
        return torch.relu(y) if self.relu else y

    def extra_repr(self) -> str:
        return f"relu={self.relu}"


def _pair(v: Any) -> list[int]:
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            return [int(v[0]), int(v[0])]
        return [int(v[0]), int(v[1])]
    return [int(v), int(v)]


def _flatten(mod: nn.Module, path: str) -> list[tuple[str, nn.Module]]:
    """Leaf modules in execution order, nn.Sequential nesting removed."""
    if isinstance(mod, nn.Sequential):
        out: list[tuple[str, nn.Module]] = []
        for name, child in mod.named_children():
            out += _flatten(child, f"{path}.{name}")
        return out
    return [(path, mod)]


class _Writer:
    def __init__(self) -> None:
        self.names: list[str] = []
        self.arrays: list[np.ndarray] = []

    def add(self, name: str, value: np.ndarray) -> str:
        a = np.ascontiguousarray(value, dtype=np.float32)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name}: weight has NaN or infinite values")
        self.names.append(name)
        self.arrays.append(a)
        return name


def _bn_scale_shift(bn: nn.Module, path: str) -> tuple[np.ndarray, np.ndarray]:
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(
            f"{path}: {type(bn).__name__} without running statistics (track_running_stats=False) "
            "cannot be folded"
        )
    mean = bn.running_mean.detach().double().cpu().numpy()
    var = bn.running_var.detach().double().cpu().numpy()
    gamma = bn.weight.detach().double().cpu().numpy() if bn.weight is not None else np.ones_like(mean)
    beta = bn.bias.detach().double().cpu().numpy() if bn.bias is not None else np.zeros_like(mean)
    s = gamma / np.sqrt(var + bn.eps)
    return s, beta - mean * s


def _conv_padding(m: nn.Conv2d, path: str) -> list[int]:
    if m.padding_mode != "zeros":
        raise ValueError(f"{path}: Conv2d padding_mode={m.padding_mode!r} is not supported (only 'zeros')")
    p = m.padding
    if p == "valid":
        return [0, 0]
    if p == "same":
        out = []
        for k, d, s in zip(m.kernel_size, m.dilation, m.stride):
            if s != 1 or (d * (k - 1)) % 2:
                raise ValueError(f"{path}: Conv2d padding='same' with an asymmetric pad is not supported")
            out.append(d * (k - 1) // 2)
        return out
    return _pair(p)


def _convert(mods: list[tuple[str, nn.Module]], w: _Writer) -> list[dict]:
    ops: list[dict] = []
    i = 0
    while i < len(mods):
        path, m = mods[i]
        nxt = mods[i + 1][1] if i + 1 < len(mods) else None
        if isinstance(m, nn.Conv2d):
            weight = m.weight.detach().double().cpu().numpy()
            bias = m.bias.detach().double().cpu().numpy() if m.bias is not None else None
            if isinstance(nxt, nn.BatchNorm2d):
                s, t = _bn_scale_shift(nxt, mods[i + 1][0])
                if s.shape[0] != m.out_channels:
                    raise ValueError(f"{mods[i + 1][0]}: BatchNorm2d({s.shape[0]}) after Conv2d with {m.out_channels} channels")
                weight = weight * s[:, None, None, None]
                bias = (bias if bias is not None else 0.0) * s + t
                i += 1
            op = {
                "op": "conv2d",
                "weight": w.add(f"{path}.weight", weight),
                "in_channels": m.in_channels,
                "out_channels": m.out_channels,
                "kernel": _pair(m.kernel_size),
                "stride": _pair(m.stride),
                "padding": _conv_padding(m, path),
                "dilation": _pair(m.dilation),
                "groups": m.groups,
            }
            if bias is not None:
                op["bias"] = w.add(f"{path}.bias", np.asarray(bias))
            ops.append(op)
        elif isinstance(m, nn.Linear):
            weight = m.weight.detach().double().cpu().numpy()
            bias = m.bias.detach().double().cpu().numpy() if m.bias is not None else None
            if isinstance(nxt, nn.BatchNorm1d):
                s, t = _bn_scale_shift(nxt, mods[i + 1][0])
                weight = weight * s[:, None]
                bias = (bias if bias is not None else 0.0) * s + t
                i += 1
            op = {
                "op": "linear",
                "weight": w.add(f"{path}.weight", weight),
                "in_features": m.in_features,
                "out_features": m.out_features,
            }
            if bias is not None:
                op["bias"] = w.add(f"{path}.bias", np.asarray(bias))
            ops.append(op)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            raise ValueError(
                f"{path}: {type(m).__name__} must directly follow a Conv2d or Linear to be folded"
            )
        elif isinstance(m, nn.ReLU6):
            ops.append({"op": "relu6"})
        elif isinstance(m, nn.ReLU):
            ops.append({"op": "relu"})
        elif isinstance(m, nn.MaxPool2d):
            if _pair(m.dilation) != [1, 1] or m.return_indices:
                raise ValueError(f"{path}: MaxPool2d with dilation != 1 or return_indices is not supported")
            op = {
                "op": "maxpool2d",
                "kernel": _pair(m.kernel_size),
                "stride": _pair(m.stride if m.stride is not None else m.kernel_size),
                "padding": _pair(m.padding),
            }
            if m.ceil_mode:
                op["ceil_mode"] = True
            ops.append(op)
        elif isinstance(m, nn.AvgPool2d):
            if m.ceil_mode or m.divisor_override is not None:
                raise ValueError(f"{path}: AvgPool2d with ceil_mode or divisor_override is not supported")
            ops.append({
                "op": "avgpool2d",
                "kernel": _pair(m.kernel_size),
                "stride": _pair(m.stride if m.stride is not None else m.kernel_size),
                "padding": _pair(m.padding),
                "count_include_pad": bool(m.count_include_pad),
            })
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            if _pair(m.output_size) != [1, 1]:
                raise ValueError(f"{path}: AdaptiveAvgPool2d({m.output_size}) is not supported (only 1)")
            ops.append({"op": "adaptive_avgpool2d"})
        elif isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise ValueError(f"{path}: Flatten(start_dim={m.start_dim}, end_dim={m.end_dim}) is not supported (only 1, -1)")
            ops.append({"op": "flatten"})
        elif isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Identity)):
            pass  # identity at inference
        elif isinstance(m, ResidualBlock):
            op = {"op": "residual", "main": _convert(_flatten(m.main, f"{path}.main"), w), "relu": m.relu}
            if m.shortcut is not None:
                sc = _convert(_flatten(m.shortcut, f"{path}.shortcut"), w)
                if sc:
                    op["shortcut"] = sc
            ops.append(op)
        else:
            raise ValueError(
                f"{path}: module {type(m).__name__} is not supported by the exitnet runtime "
                "(supported: Conv2d, Linear, BatchNorm after Conv2d/Linear, ReLU, ReLU6, MaxPool2d, "
                "AvgPool2d, AdaptiveAvgPool2d(1), Flatten, Dropout, Identity, ResidualBlock, nn.Sequential)"
            )
        i += 1
    return ops


def graph_of(model: nn.Module, input_shape: Sequence[int]) -> tuple[dict, list[str], list[np.ndarray]]:
    """The JSON graph and the weights (names, float32 arrays) :func:`export` writes."""
    stages = getattr(model, "stages", None)
    heads = getattr(model, "heads", None)
    if stages is None or heads is None:
        raise TypeError(
            f"model: expected an early-exit model with .stages and .heads (EarlyExitNet), got {type(model).__name__}"
        )
    if len(stages) != len(heads) or len(stages) == 0:
        raise ValueError(f"model: {len(stages)} stages and {len(heads)} heads; need one head per stage")
    shape = [int(v) for v in input_shape]
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape: expected (C, H, W) with positive sizes, got {tuple(input_shape)}")
    w = _Writer()
    g_stages = [_convert(_flatten(s, f"stages.{k}"), w) for k, s in enumerate(stages)]
    g_heads = [_convert(_flatten(h, f"heads.{k}"), w) for k, h in enumerate(heads)]
    # num_classes from a forward pass (eval mode, no grad; the model's mode is restored)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            p = next(model.parameters(), None)
            dev = p.device if p is not None else torch.device("cpu")
            outs = model(torch.zeros((1, *shape), device=dev))
    finally:
        model.train(was_training)
    classes = {int(o.shape[-1]) for o in outs}
    if len(classes) != 1 or any(o.dim() != 2 for o in outs):
        raise ValueError(f"model: exits give logits of shapes {[tuple(o.shape) for o in outs]}; need (N, C) with one C")
    graph = {
        "format_version": FORMAT_VERSION,
        "input_shape": shape,
        "num_classes": classes.pop(),
        "stages": g_stages,
        "heads": g_heads,
    }
    return graph, w.names, w.arrays


def export(model: nn.Module, path: str | os.PathLike, input_shape: Optional[Sequence[int]] = None) -> str:
    """Write ``model`` (stages + heads, e.g. an :class:`EarlyExitNet`) to a runtime model file.

    Parameters
    ----------
    model : nn.Module
        An early-exit model with ``.stages`` and ``.heads`` (``forward`` returning the
        list of every exit's logits).
    path : str or PathLike
        Destination; written atomically (temporary file in the same directory, then rename).
    input_shape : (C, H, W)
        One sample's shape. Defaults to ``model.input_shape`` when the model has one.

    Returns
    -------
    str
        The path written.

    Examples
    --------
    >>> import torch, tempfile, os, pyarrow as pa
    >>> from torch import nn
    >>> from exitnet.torch import EarlyExitNet
    >>> net = EarlyExitNet([nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())],
    ...                    [nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 3))])
    >>> p = export(net, os.path.join(tempfile.mkdtemp(), "m.exitnet"), (1, 8, 8))
    >>> pa.ipc.open_file(p).schema.metadata[b"exitnet.kind"]
    b'model'
    """
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None)
        if input_shape is None:
            raise ValueError("input_shape: required (C, H, W) (the model has no .input_shape)")
    graph, names, arrays = graph_of(model, input_shape)
    schema = pa.schema(
        [("name", pa.string()), ("shape", pa.list_(pa.int32())), ("data", pa.list_(pa.float32()))],
        metadata={
            **container_metadata("model"),  # kind, container version, checksum slot (docs/file-format.md)
            "exitnet.format_version": str(FORMAT_VERSION),
            "exitnet.graph": json.dumps(graph, separators=(",", ":")),
        },
    )
    path = os.fspath(path)
    with atomic_write(path, sealed=True) as f, pa.ipc.new_file(f, schema) as wr:
        # one record batch per tensor keeps list offsets (int32) far from overflow
        for n, a in zip(names, arrays):
            flat = pa.array(a.reshape(-1), type=pa.float32())
            data = pa.ListArray.from_arrays(pa.array([0, len(flat)], type=pa.int32()), flat)
            shape = pa.array([list(a.shape) if a.ndim else [1]], type=pa.list_(pa.int32()))
            wr.write_batch(pa.record_batch([pa.array([n]), shape, data], schema=schema))
    return path
