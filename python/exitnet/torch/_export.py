"""Export an early-exit PyTorch model to the exitnet runtime's model file (format v2: a graph).

The file is one Arrow IPC file (readable with ``pyarrow.ipc.open_file``): the graph as versioned
JSON in the schema metadata (``exitnet.kind = "model"``, ``exitnet.format_version = "2"``,
``exitnet.graph``) and one row per weight tensor (``name`` string, ``shape`` list<int32>, ``data``
list<float32>). No pickle: loading a file runs no code.

Every stage and head is traced with torch.fx (a subclass's own ``forward`` is honoured, never
flattened by type) and converted node by node (:mod:`._graph`; BatchNorm folded). The export
checks itself before the file appears at ``path``: the written graph is evaluated from the file's
JSON alone (:mod:`._graph_run`) and by the Go runtime on the example input; any exit whose logits
differ from torch's eval-mode logits by more than ``1e-4 · max|logit|`` of the row refuses the
export (:class:`ExportMismatchError`, naming the first differing node) and leaves no file.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional, Sequence, Union

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from .._io import atomic_write, container_metadata
from ._graph import Part, Recorder, Weights, convert
from ._graph_run import run_part
from ._trace import device_of, trace

__all__ = ["export", "graph_of", "ResidualBlock", "FORMAT_VERSION", "ExportMismatchError", "RTOL"]

#: Model-file format version written (golib/runtime.FormatVersion).
FORMAT_VERSION = 2
#: Export refuses a model whose exit logits differ from torch beyond RTOL · max|logit| of the row.
RTOL = 1e-4


class ExportMismatchError(ValueError):
    """The written model does not reproduce torch's logits (the file is not written)."""


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


def _producer() -> str:
    try:
        from importlib.metadata import version

        return f"exitnet {version('exitnet')}"
    except Exception:
        return "exitnet"


def _preprocess(pre: Any, channels: int) -> Optional[dict]:
    """{"mean": [C floats], "std": [C floats]} from a dict, a (mean, std) pair or an object with
    .mean/.std (``exitnet.data.Splits``: one scalar for every channel)."""
    if pre is None:
        return None
    if isinstance(pre, dict):
        if set(pre) != {"mean", "std"}:
            raise ValueError(f"preprocess: expected keys 'mean' and 'std', got {sorted(pre)}")
        mean, std = pre["mean"], pre["std"]
    elif isinstance(pre, (tuple, list)) and len(pre) == 2:
        mean, std = pre
    elif hasattr(pre, "mean") and hasattr(pre, "std"):
        mean, std = pre.mean, pre.std
    else:
        raise TypeError(f"preprocess: expected None, {{'mean': ..., 'std': ...}}, (mean, std) or exitnet.data.Splits, "
                        f"got {type(pre).__name__}")
    out = {}
    for key, v in (("mean", mean), ("std", std)):
        a = np.atleast_1d(np.asarray(v, dtype=np.float64)).reshape(-1)
        if a.size == 1:
            a = np.repeat(a, channels)
        if a.size != channels:
            raise ValueError(f"preprocess: {key} has {a.size} values, the model's input has {channels} channels")
        if not np.all(np.isfinite(a)) or (key == "std" and np.any(a <= 0)):
            raise ValueError(f"preprocess: {key} must be finite" + (" and > 0" if key == "std" else "") + f", got {a.tolist()}")
        out[key] = [float(np.float32(t)) for t in a]
    return out


def _example(net: nn.Module, example_input: Any, input_shape: Any) -> torch.Tensor:
    if example_input is None and input_shape is None:
        input_shape = getattr(net, "input_shape", None)
        if input_shape is None:
            raise ValueError("example_input: required (a batch (N, C, H, W), or input_shape=(C, H, W))")
    if isinstance(example_input, (tuple, list)) and all(isinstance(v, int) for v in example_input):
        input_shape, example_input = example_input, None  # export(net, path, (C, H, W)) as in format v1
    if example_input is None:
        shape = [int(v) for v in input_shape]
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"input_shape: expected (C, H, W) with positive sizes, got {tuple(input_shape)}")
        g = torch.Generator().manual_seed(0)
        return torch.randn((8, *shape), generator=g)
    if not isinstance(example_input, torch.Tensor) or example_input.dim() != 4 or example_input.shape[0] < 1:
        raise ValueError(f"example_input: expected a float tensor (N, C, H, W) with N >= 1, got "
                         f"{getattr(example_input, 'shape', type(example_input).__name__)}")
    if not torch.isfinite(example_input).all():
        raise ValueError("example_input: has NaN or infinite values")
    return example_input.detach().float()


class _Built:
    """The v2 graph of a net and what export needs to check it."""

    def __init__(self, graph: dict, weights: Weights, logits: list[torch.Tensor], parts: list[tuple[str, Part, dict, torch.Tensor]]) -> None:
        self.graph, self.weights, self.logits, self.parts = graph, weights, logits, parts


def _build(net: nn.Module, x: torch.Tensor, preprocess: Any = None) -> _Built:
    stages, heads = getattr(net, "stages", None), getattr(net, "heads", None)
    if stages is None or heads is None:
        raise TypeError(f"net: expected an early-exit model with .stages and .heads (EarlyExitNet), got {type(net).__name__}")
    if len(stages) != len(heads) or len(stages) == 0:
        raise ValueError(f"net: {len(stages)} stages and {len(heads)} heads; need one head per stage")
    w = Weights()
    modes = [(m, m.training) for m in net.modules()]
    parts: list[tuple[str, Part, dict, torch.Tensor]] = []
    logits: list[torch.Tensor] = []
    g_stages: list[Part] = []
    g_heads: list[Part] = []
    try:
        net.eval()
        h = x.to(device_of(net))
        with torch.no_grad():
            for k, (s, hd) in enumerate(zip(stages, heads)):
                for kind, mod, dst in (("stages", s, g_stages), ("heads", hd, g_heads)):
                    what = f"{kind}[{k}]"
                    # a plain module is wrapped so that a leaf (nn.Conv2d as a whole stage) is one node
                    wrapped = not isinstance(mod, torch.fx.GraphModule)
                    gm = trace(nn.Sequential(mod) if wrapped else mod, what)
                    rec = Recorder(gm)
                    out = rec.run(h)
                    if not isinstance(out, torch.Tensor):
                        raise ValueError(f"{what}: must return one tensor, returns {type(out).__name__}")
                    vals = {n: v.cpu() if isinstance(v, torch.Tensor) else v for n, v in rec.values.items()}
                    part = convert(gm, vals, what, f"{kind}.{k}", w, wrapped)
                    dst.append(part)
                    parts.append((what, part, vals, h.cpu()))
                    if kind == "stages":
                        h = out
                    else:
                        logits.append(out.float().cpu())
    finally:
        for m, t in modes:
            m.train(t)
    classes = {int(z.shape[-1]) for z in logits}
    if len(classes) != 1 or any(z.dim() != 2 for z in logits):
        raise ValueError(f"net: exits give logits of shapes {[tuple(z.shape) for z in logits]}; need (N, C) with one C")
    shape = [int(v) for v in x.shape[1:]]
    graph = {
        "format_version": FORMAT_VERSION,
        "producer": _producer(),
        "input_shape": shape,
        "num_classes": classes.pop(),
        "preprocess": _preprocess(preprocess, shape[0]),
        "stages": [{"nodes": p["nodes"], "output": p["output"]} for p in g_stages],
        "heads": [{"nodes": p["nodes"], "output": p["output"]} for p in g_heads],
        "costs": {"stages": [p.macs for p in g_stages], "heads": [p.macs for p in g_heads]},  # type: ignore[attr-defined]
    }
    return _Built(graph, w, logits, parts)


def graph_of(net: nn.Module, example_input: Any = None, preprocess: Any = None) -> tuple[dict, list[str], list[np.ndarray]]:
    """The JSON graph and the weights (names, float32 arrays) :func:`export` writes."""
    b = _build(net, _example(net, example_input, None), preprocess)
    return b.graph, b.weights.names, b.weights.arrays


def _rows_differ(got: torch.Tensor, ref: torch.Tensor) -> Optional[str]:
    """None when every row agrees within RTOL · max|ref row|, else a description of the worst row."""
    got, ref = got.double().reshape(ref.shape[0], -1), ref.double().reshape(ref.shape[0], -1)
    scale = ref.abs().amax(dim=1).clamp_min(1e-30)
    err = (got - ref).abs().amax(dim=1)
    bad = ~(err <= RTOL * scale)  # NaN counts as a difference
    if not bool(bad.any()):
        return None
    i = int(torch.nonzero(bad)[0])
    return f"sample {i}: max |difference| {float(err[i]):.3g}, largest |value| {float(scale[i]):.3g}"


def _first_difference(b: _Built) -> Optional[str]:
    """The first node (in stage/head order) whose value, computed from the written graph alone,
    differs from torch's value of the fx node it stands for."""
    for what, part, vals, x in b.parts:
        env, _ = run_part(part, b.weights.by_name, x)
        for d in part["nodes"]:
            ref = vals[part.refs[d["name"]]]  # type: ignore[attr-defined]
            why = _rows_differ(env[d["name"]], ref)
            if why is not None:
                return f"{what} node {d['name']!r} (op {d['op']}): {why}"
    return None


def _write(path: str, graph: dict, w: Weights, check: Any) -> None:
    schema = pa.schema(
        [("name", pa.string()), ("shape", pa.list_(pa.int32())), ("data", pa.list_(pa.float32()))],
        metadata={
            **container_metadata("model"),  # kind, container version, checksum slot (docs/file-format.md)
            "exitnet.format_version": str(FORMAT_VERSION),
            "exitnet.graph": json.dumps(graph, separators=(",", ":")),
        },
    )
    with atomic_write(path, sealed=True, check=check) as f, pa.ipc.new_file(f, schema) as wr:
        # one record batch per tensor keeps list offsets (int32) far from overflow
        for n, a in zip(w.names, w.arrays):
            flat = pa.array(a.reshape(-1), type=pa.float32())
            data = pa.ListArray.from_arrays(pa.array([0, len(flat)], type=pa.int32()), flat)
            shape = pa.array([list(a.shape) if a.ndim else [1]], type=pa.list_(pa.int32()))
            wr.write_batch(pa.record_batch([pa.array([n]), shape, data], schema=schema))


def _check_runtime(tmp: str, b: _Built, x: torch.Tensor) -> None:
    from ..runtime import Model

    with Model(tmp) as m:
        got = m.predict(x.cpu().numpy(), thresholds=None, return_logits=True, output="numpy")["logits"]
    for k, ref in enumerate(b.logits):
        why = _rows_differ(torch.from_numpy(got[k]), ref)
        if why is not None:
            node = _first_difference(b)
            where = (f"first differing node: {node}" if node else
                     "the written graph evaluates correctly from the file, so the runtime executes it "
                     "differently (please report)")
            raise ExportMismatchError(
                f"export: exit {k}'s logits from the exitnet runtime differ from torch beyond rtol {RTOL} "
                f"({why}); {where}; nothing was written")


def export(
    net: nn.Module,
    path: Union[str, "os.PathLike[str]"],
    example_input: Union[torch.Tensor, Sequence[int], None] = None,
    preprocess: Any = None,
    *,
    input_shape: Optional[Sequence[int]] = None,
) -> str:
    """Write ``net`` (stages + heads: an :class:`EarlyExitNet` or :func:`attach_exits` result) to a
    runtime model file, after checking that the file reproduces torch.

    Parameters
    ----------
    net : nn.Module
        An early-exit model with ``.stages`` and ``.heads``. Exported in eval mode (BatchNorm
        running statistics, dropout off); its modes are restored.
    path : str or PathLike
        Destination; written atomically (a temporary file in the same directory, checked, then
        renamed). On any error no file is left behind and a previous file at ``path`` is untouched.
    example_input : Tensor (N, C, H, W), optional
        The batch the export is checked on (preprocessed, as the net sees it). A (C, H, W) tuple
        (or ``input_shape=``) means 8 standard-normal samples of that shape. Default:
        ``net.input_shape`` (set by :func:`attach_exits`).
    preprocess : optional
        Input normalisation stored in the file and applied by the runtime to raw inputs:
        ``{"mean": [...], "std": [...]}`` (one value per channel, or one for all), a (mean, std)
        pair, or an :class:`exitnet.data.Splits` (its mean/std; raw inputs are then pixel values
        scaled to [0, 1]).

    Returns
    -------
    str
        The path written.

    Raises
    ------
    ValueError
        A node the runtime cannot execute (named with its module and op), bad preprocessing.
    ExportMismatchError
        Some exit's logits differ from torch beyond ``RTOL`` (names the first differing node).

    Examples
    --------
    >>> import torch, tempfile, os, pyarrow as pa
    >>> from torch import nn
    >>> from exitnet.torch import EarlyExitNet
    >>> net = EarlyExitNet([nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())],
    ...                    [nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 3))])
    >>> p = export(net, os.path.join(tempfile.mkdtemp(), "m.exitnet"), (1, 8, 8))
    >>> pa.ipc.open_file(p).schema.metadata[b"exitnet.format_version"]
    b'2'
    """
    x = _example(net, example_input, input_shape)
    b = _build(net, x, preprocess)
    node = _first_difference(b)
    if node is not None:
        raise ExportMismatchError(f"export: the written graph does not reproduce torch beyond rtol {RTOL}; first "
                                  f"differing node: {node}; nothing was written")
    path = os.fspath(path)
    _write(path, b.graph, b.weights, check=lambda tmp: _check_runtime(tmp, b, x))
    return path
