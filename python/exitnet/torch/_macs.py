"""Multiply-accumulate (MAC) counting for the cost model of early-exit networks.

:func:`stage_costs` returns what the exitnet runtime executes (the exported graph's costs:
conv2d and linear only, BatchNorm folded). :func:`count_macs` is a general per-module counter
for any torch module, with the rules below.

What counts as one MAC
----------------------
GEMM-like layers count their multiply-adds exactly (per sample, bias adds not
counted):

* ``Conv1d/2d/3d``: ``out_elements * (in_channels / groups) * prod(kernel_size)``
  (dilation, stride and padding change ``out_elements`` only; padded zeros count).
* ``ConvTranspose1d/2d/3d``: ``in_elements * (out_channels / groups) * prod(kernel_size)``.
* ``Linear``: ``out_elements * in_features`` (leading dimensions included).
* ``Bilinear``: ``out_elements * in1_features * in2_features``.

Other layers count one MAC per elementary operation per element, so that a
cheap layer is not free:

* ``BatchNorm*`` (inference: folded into one scale-and-shift): 1 per element.
* ``LayerNorm``, ``GroupNorm``, ``InstanceNorm*`` (statistics computed at run
  time): 3 per element (mean, variance, scale-and-shift).
* ``MaxPool*``, ``AvgPool*``, ``LPPool*``: ``out_elements * prod(kernel_size)``
  (one comparison or add per window element).
* ``AdaptiveAvgPool*``, ``AdaptiveMaxPool*``: ``in_elements`` (each input read
  once; exact when the sizes divide).
* Activations (``ReLU``, ``GELU``, ``SiLU``, ``Sigmoid``, ``Tanh``, ``Softmax``, ...):
  1 per output element.
* ``Dropout``, ``Identity``, ``Flatten``, ``Unflatten``: 0.

Only ``nn.Module`` calls are seen (forward hooks on leaf modules): functional
operations written inside ``forward`` (``x + y`` of a residual connection,
``torch.flatten``) are not counted. A leaf module of an unknown type that has
parameters raises ``ValueError`` (so that a cost model never silently misses a
layer); unknown parameter-free leaves count 0 and are listed in a warning.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import torch
from torch import nn

__all__ = ["count_macs", "stage_costs"]

_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish, nn.Softplus,
    nn.Softsign, nn.Tanhshrink, nn.LogSigmoid, nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.GLU,
    nn.Threshold,
)
_FREE = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity,
         nn.Flatten, nn.Unflatten)
_POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
         nn.LPPool1d, nn.LPPool2d)
_ADAPTIVE = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
             nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_RUNTIME_NORM = (nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d,
                 nn.InstanceNorm3d, nn.LocalResponseNorm, nn.RMSNorm)


def _first_tensor(x: Any) -> torch.Tensor | None:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)):
        for v in x:
            t = _first_tensor(v)
            if t is not None:
                return t
    if isinstance(x, dict):
        for v in x.values():
            t = _first_tensor(v)
            if t is not None:
                return t
    return None


def _prod(v: Any, dims: int) -> int:
    if isinstance(v, int):
        return v ** dims
    return math.prod(v)


def _layer_macs(m: nn.Module, inputs: tuple, output: Any) -> int | None:
    """MACs of one call of leaf module m; None when the type is unknown."""
    x = _first_tensor(inputs)
    y = _first_tensor(output)
    nin = x.numel() if x is not None else 0
    nout = y.numel() if y is not None else 0
    if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return nout * (m.in_channels // m.groups) * math.prod(m.kernel_size)
    if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        return nin * (m.out_channels // m.groups) * math.prod(m.kernel_size)
    if isinstance(m, nn.Linear):
        return nout * m.in_features
    if isinstance(m, nn.Bilinear):
        return nout * m.in1_features * m.in2_features
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)):
        return nout
    if isinstance(m, _RUNTIME_NORM):
        return 3 * nout
    if isinstance(m, _POOL):
        dims = int(type(m).__name__[-2])
        return nout * _prod(m.kernel_size, dims)
    if isinstance(m, _ADAPTIVE):
        return nin
    if isinstance(m, _ACTIVATIONS):
        return nout
    if isinstance(m, _FREE):
        return 0
    return None


def _batch(example_input: Any) -> int:
    t = _first_tensor(example_input)
    if t is None or t.dim() == 0:
        raise ValueError("example_input: need a tensor (or a tuple of tensors) with a batch dimension")
    if t.shape[0] < 1:
        raise ValueError("example_input: empty batch")
    return int(t.shape[0])


def _call(module: nn.Module, x: Any) -> Any:
    if isinstance(x, tuple):
        return module(*x)
    return module(x)


def _count(module: nn.Module, example_input: Any) -> tuple[int, Any]:
    total = 0
    unknown: list[str] = []
    bad: list[str] = []
    names = {m: n for n, m in module.named_modules()}

    def hook(m: nn.Module, inputs: tuple, output: Any) -> None:
        nonlocal total
        c = _layer_macs(m, inputs, output)
        if c is None:
            label = f"{names.get(m, '?')} ({type(m).__name__})"
            if any(True for _ in m.parameters(recurse=False)):
                bad.append(label)
            else:
                unknown.append(label)
            return
        total += c

    leaves = [m for m in module.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    modes = [(m, m.training) for m in module.modules()]
    try:
        module.eval()
        with torch.no_grad():
            out = _call(module, example_input)
    finally:
        for h in handles:
            h.remove()
        for m, t in modes:
            m.train(t)
    if bad:
        raise ValueError("module: no MAC rule for leaf layers with parameters: " + ", ".join(bad))
    if unknown:
        warnings.warn("count_macs: counted 0 MACs for unknown parameter-free layers: " + ", ".join(unknown),
                      stacklevel=3)
    return total, out


def count_macs(module: nn.Module, example_input: Any, per_sample: bool = True) -> int:
    """Count the MACs of one forward pass of ``module`` on ``example_input``.

    Parameters
    ----------
    module : torch.nn.Module
        Run once in eval mode under ``torch.no_grad()``; its train/eval modes are
        restored afterwards.
    example_input : Tensor or tuple of Tensors
        Passed as ``module(example_input)`` (a tuple is unpacked). Dimension 0 of
        the first tensor is the batch.
    per_sample : bool, default True
        Divide the total by the batch size (every counted layer is linear in the
        batch), giving the cost of one sample.

    Returns
    -------
    int
        MACs, following the rules in the module docstring.

    Examples
    --------
    >>> import torch
    >>> count_macs(torch.nn.Linear(3, 2), torch.zeros(5, 3))
    6
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module: expected torch.nn.Module, got {type(module).__name__}")
    b = _batch(example_input)
    total, _ = _count(module, example_input)
    return total // b if per_sample else total


def stage_costs(net: Any, heads: Any = None, example_input: Any = None,
                per_sample: bool = True) -> tuple[list[int], list[int]]:
    """Per-stage and per-head MACs of an early-exit network: what the exitnet runtime executes.

    Called as ``stage_costs(net)`` / ``stage_costs(net, example_input)`` (``net`` with
    ``.stages`` and ``.heads``, e.g. an :class:`EarlyExitNet` or an :func:`attach_exits`
    result; ``example_input`` defaults to ``net.input_shape``) or, as before,
    ``stage_costs(stages, heads, example_input)``.

    For image inputs (N, C, H, W) the costs come from the graph :func:`exitnet.torch.export`
    writes, BatchNorm folded: ``conv2d = C_out·H_out·W_out·(C_in/groups)·k_h·k_w``,
    ``linear = in·out``, every other op 0. They equal the costs the runtime recomputes from the
    file at load (``Model.exit_costs``) exactly. If the network cannot be exported (an op the
    runtime lacks), or the input is not an image batch, the layers are counted with
    :func:`count_macs`'s rules instead (a warning says why in the first case).

    Stage k reads the output of stage k−1 (stage 0 reads ``example_input``); head k reads the
    output of stage k. The results feed ``exitnet.policy.CostModel(stage_macs, head_macs)``:
    leaving at exit k costs ``sum(stage_macs[:k+1]) + sum(head_macs[:k+1])``.

    Returns
    -------
    (stage_macs, head_macs) : two lists of K ints.
    """
    from ._model import EarlyExitNet

    if heads is not None and (isinstance(heads, torch.Tensor) or (
            isinstance(heads, tuple) and all(isinstance(v, int) for v in heads))):
        heads, example_input = None, heads  # stage_costs(net, example_input)
    if heads is None:
        if not hasattr(net, "stages") or not hasattr(net, "heads"):
            raise TypeError(f"net: expected an early-exit model with .stages and .heads, got {type(net).__name__}")
        stages, heads = list(net.stages), list(net.heads)
    else:
        stages, heads = list(net), list(heads)
        net = None
    if len(stages) != len(heads):
        raise ValueError(f"heads: {len(heads)} heads for {len(stages)} stages (need one per stage)")
    if len(stages) == 0:
        raise ValueError("stages: empty")
    if net is None:
        net = EarlyExitNet(stages, heads)
    if example_input is None:
        example_input = getattr(net, "input_shape", None)
        if example_input is None:
            raise ValueError("example_input: required (the net has no .input_shape)")
    if isinstance(example_input, tuple) and all(isinstance(v, int) for v in example_input):
        example_input = torch.zeros((1, *example_input))
    b = _batch(example_input)
    if isinstance(example_input, torch.Tensor) and example_input.dim() == 4:
        from ._export import _build
        from ._trace import UntraceableError

        try:
            costs = _build(net, example_input[:1].detach().float()).graph["costs"]
            f = 1 if per_sample else b
            return [c * f for c in costs["stages"]], [c * f for c in costs["heads"]]
        except (ValueError, UntraceableError) as e:
            warnings.warn(f"stage_costs: the network cannot be exported ({e}); counting with count_macs's "
                          "rules instead, which is not what the exitnet runtime would execute", stacklevel=2)
    s_macs: list[int] = []
    h_macs: list[int] = []
    x = example_input
    for s, h in zip(stages, heads):
        c, x = _count(s, x)
        s_macs.append(c // b if per_sample else c)
        c, _ = _count(h, x)
        h_macs.append(c // b if per_sample else c)
    return s_macs, h_macs
