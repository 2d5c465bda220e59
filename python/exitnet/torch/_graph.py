"""torch.fx graph -> model-file graph (format v2, docs: /docs/design.md "Model format v2").

Each stage and head is traced (:mod:`._trace`) and run once on the example input in eval mode
(:class:`Recorder` keeps every node's value: its shape decides flatten/view rewrites and costs,
and :func:`exitnet.torch.export` compares against it to name the first node that differs).
Nodes become ops with named inputs; BatchNorm is folded into the Conv2d/Linear that feeds it
when that layer feeds nothing else (eval semantics)::

    s = γ / sqrt(running_var + eps),   W' = W · s (per output channel),   b' = (b − running_mean) · s + β

and becomes ``scale_shift`` (scale = s, shift = β − running_mean · s) otherwise. Dropout,
StochasticDepth and Identity vanish (eval identity). Anything else is refused naming the node,
the module it came from and its op.

Cost model (the runtime recomputes it at load and must agree exactly), MACs per sample:
``conv2d = C_out·H_out·W_out·(C_in/groups)·k_h·k_w``, ``linear = in·out``, every other op 0.
"""

from __future__ import annotations

import operator
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from ._trace import scope_of

__all__ = ["Weights", "Part", "Recorder", "convert"]


class Weights:
    """Weight rows of the model file (name, float32 array), in order."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.arrays: list[np.ndarray] = []
        self.by_name: dict[str, np.ndarray] = {}

    def add(self, name: str, value: np.ndarray) -> str:
        a = np.ascontiguousarray(value, dtype=np.float32)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name}: weight has NaN or infinite values")
        if name in self.by_name:
            raise AssertionError(f"duplicate weight name {name}")
        self.names.append(name)
        self.arrays.append(a)
        self.by_name[name] = a
        return name


class Part(dict):
    """One stage or head: ``{"nodes": [...], "output": name}`` plus private fields (``refs``:
    emitted node name -> fx node name whose torch value it equals; ``macs``)."""


class Recorder(fx.Interpreter):
    """Runs a GraphModule and keeps a copy of every node's value (in-place ops cannot alter it)."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.values: dict[str, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        v = super().run_node(n)
        self.values[n.name] = v.detach().clone() if isinstance(v, torch.Tensor) else v
        return v


def _pair(v: Any) -> list[int]:
    if isinstance(v, (tuple, list)):
        return [int(v[0]), int(v[-1])]
    return [int(v), int(v)]


def _np(t: Optional[torch.Tensor]) -> Optional[np.ndarray]:
    return None if t is None else t.detach().double().cpu().numpy()


def _bn_affine(bn: nn.Module, where: str) -> tuple[np.ndarray, np.ndarray]:
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"{where}: {type(bn).__name__} without running statistics (track_running_stats=False) "
                         "has no eval-mode affine form; the runtime cannot execute it")
    mean, var = _np(bn.running_mean), _np(bn.running_var)
    gamma = _np(bn.weight) if bn.weight is not None else np.ones_like(mean)
    beta = _np(bn.bias) if bn.bias is not None else np.zeros_like(mean)
    s = gamma / np.sqrt(var + bn.eps)
    return s, beta - mean * s


def _conv_padding(m: nn.Conv2d, where: str) -> list[int]:
    if m.padding_mode != "zeros":
        raise ValueError(f"{where}: Conv2d padding_mode={m.padding_mode!r} is not supported (only 'zeros')")
    if m.padding == "valid":
        return [0, 0]
    if m.padding == "same":
        out = []
        for k, d in zip(m.kernel_size, m.dilation):
            if (d * (k - 1)) % 2:
                raise ValueError(f"{where}: Conv2d padding='same' with an asymmetric pad is not supported")
            out.append(d * (k - 1) // 2)
        return out
    return _pair(m.padding)


_ACT_MODULES: dict[type, str] = {
    nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Sigmoid: "sigmoid", nn.SiLU: "silu",
    nn.Hardswish: "hardswish", nn.Hardsigmoid: "hardsigmoid",
}
_ACT_FUNCS: dict[Any, str] = {
    F.relu: "relu", torch.relu: "relu", F.relu_: "relu", torch.relu_: "relu", F.relu6: "relu6",
    torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", F.silu: "silu", F.hardswish: "hardswish",
    F.hardsigmoid: "hardsigmoid",
}
_ACT_METHODS = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "sigmoid_": "sigmoid"}
_IDENTITY_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)
_IDENTITY_FUNCS = {F.dropout, F.dropout1d, F.dropout2d, F.alpha_dropout}
_ADD = {operator.add, operator.iadd, torch.add}
_MUL = {operator.mul, operator.imul, torch.mul}
_CAT = {torch.cat, torch.concat, torch.concatenate}
_SUPPORTED = ("Conv2d, Linear, BatchNorm1d/2d, ReLU, ReLU6, Sigmoid, SiLU, Hardswish, Hardsigmoid, GELU, "
              "MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, Dropout, Identity, StochasticDepth; "
              "add, mul (tensor or scalar), sub/div by a scalar, cat on channels, flatten, view/reshape to "
              "(N, -1), mean over (H, W), adaptive_avg_pool2d")


def _is_stochastic_depth_fn(f: Any) -> bool:
    return getattr(f, "__name__", "") == "stochastic_depth" and str(getattr(f, "__module__", "")).startswith("torchvision")


class _Converter:
    def __init__(self, gm: fx.GraphModule, values: dict[str, Any], what: str, prefix: str, w: Weights,
                 wrapped: bool) -> None:
        self.gm, self.values, self.what, self.prefix, self.w = gm, values, what, prefix, w
        self.wrapped = wrapped  # gm traces nn.Sequential(module): scope "0.x" is the module's "x"
        self.alias: dict[str, str] = {}      # fx node name -> emitted node name ("input" for the input)
        self.nodes: list[dict] = []
        self.emitted: dict[str, dict] = {}   # emitted name -> node dict
        self.refs: dict[str, str] = {}       # emitted name -> fx node whose value it equals
        # emitted name -> weights written once the live nodes are known ({"weight", "bias"} or {"scale", "shift"})
        self.pending: dict[str, dict[str, Optional[np.ndarray]]] = {}
        self.macs: dict[str, int] = {}  # emitted name -> MACs per sample (conv2d, linear)

    # -- helpers -----------------------------------------------------------------------------
    def scope(self, n: fx.Node) -> str:
        """The module path of node n: the model's (attach_exits) or ``stages.k.x`` (a plain stage)."""
        s = scope_of(n)
        if self.wrapped and s:
            return self.prefix + s[1:]
        return s

    def where(self, n: fx.Node) -> str:
        s = self.scope(n)
        return f"{self.what}: node {n.name!r}" + (f" (module {s!r})" if s else "")

    def shape(self, n: Any) -> tuple[int, ...]:
        return tuple(self.values[n.name].shape[1:])

    def is_tensor(self, a: Any) -> bool:
        return isinstance(a, fx.Node) and isinstance(self.values.get(a.name), torch.Tensor)

    def src(self, n: fx.Node, a: Any) -> str:
        if not self.is_tensor(a):
            raise ValueError(f"{self.where(n)}: expected a tensor operand, got {a!r}")
        if a.name not in self.alias:
            raise ValueError(f"{self.where(n)}: operand {a.name!r} ({a.op} {a.target}) is a constant tensor "
                             "(a parameter or buffer used in forward), which the runtime does not support")
        return self.alias[a.name]

    def emit(self, n: fx.Node, op: str, inputs: list[str], **attrs: Any) -> dict:
        d = {"name": n.name, "op": op, "inputs": inputs, **attrs}
        if self.scope(n):
            d["module"] = self.scope(n)  # for the runtime's messages
        self.nodes.append(d)
        self.emitted[n.name] = d
        self.alias[n.name] = n.name
        self.refs[n.name] = n.name
        return d

    def same(self, n: fx.Node, a: fx.Node) -> None:
        """n's value equals operand a's (eval identity)."""
        self.alias[n.name] = self.src(n, a)

    def unsupported(self, n: fx.Node, what: str) -> ValueError:
        return ValueError(f"{self.where(n)}: {what} is not supported by the exitnet runtime (supported: {_SUPPORTED})")

    # -- ops ---------------------------------------------------------------------------------
    def conv(self, n: fx.Node, m: nn.Conv2d) -> None:
        where = self.where(n)
        if len(self.shape(n.args[0])) != 3:
            raise ValueError(f"{where}: Conv2d on input of shape {self.shape(n.args[0])} (need (C, H, W))")
        d = self.emit(n, "conv2d", [self.src(n, n.args[0])], stride=_pair(m.stride), padding=_conv_padding(m, where),
                      dilation=_pair(m.dilation), groups=int(m.groups), in_channels=int(m.in_channels),
                      out_channels=int(m.out_channels), kernel=_pair(m.kernel_size))
        self.pending[d["name"]] = {"weight": _np(m.weight), "bias": _np(m.bias)}
        cout, ho, wo = self.shape(n)
        self.macs[d["name"]] = cout * ho * wo * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(self, n: fx.Node, m: nn.Linear) -> None:
        if len(self.shape(n.args[0])) != 1:
            raise ValueError(f"{self.where(n)}: Linear on input of shape {self.shape(n.args[0])} (the runtime "
                             "applies Linear to flat (F,) features only; flatten first)")
        d = self.emit(n, "linear", [self.src(n, n.args[0])], in_features=int(m.in_features),
                      out_features=int(m.out_features))
        self.pending[d["name"]] = {"weight": _np(m.weight), "bias": _np(m.bias)}
        self.macs[d["name"]] = m.in_features * m.out_features

    def batchnorm(self, n: fx.Node, m: nn.Module) -> None:
        s, t = _bn_affine(m, self.where(n))
        a = n.args[0]
        prev = self.emitted.get(self.alias.get(a.name, ""))
        # fold when the BN reads a conv/linear's own output and nothing else reads it
        if (prev is not None and prev["op"] in ("conv2d", "linear") and self.alias[a.name] == a.name
                and len(a.users) == 1 and prev["name"] in self.pending):
            p = self.pending[prev["name"]]
            wt = p["weight"]
            if wt.shape[0] != s.shape[0]:
                raise ValueError(f"{self.where(n)}: {type(m).__name__}({s.shape[0]}) after a layer with {wt.shape[0]} outputs")
            p["weight"] = wt * s.reshape((-1,) + (1,) * (wt.ndim - 1))
            p["bias"] = (p["bias"] if p["bias"] is not None else 0.0) * s + t
            self.alias[n.name] = prev["name"]
            self.refs[prev["name"]] = n.name
            return
        d = self.emit(n, "scale_shift", [self.src(n, a)])
        self.pending[d["name"]] = {"scale": s, "shift": t}

    def flatten(self, n: fx.Node, a: fx.Node, start: int, end: int) -> None:
        if start != 1 or end != -1:
            raise self.unsupported(n, f"flatten(start_dim={start}, end_dim={end}) (only 1, -1)")
        if len(self.shape(a)) == 1:
            self.same(n, a)
        else:
            self.emit(n, "flatten", [self.src(n, a)])

    def reshape(self, n: fx.Node, a: fx.Node) -> None:
        si, so = self.shape(a), self.shape(n)
        if si == so:
            self.same(n, a)
        elif len(so) == 1 and so[0] == int(np.prod(si)):
            self.emit(n, "flatten", [self.src(n, a)])
        else:
            raise self.unsupported(n, f"{n.target} from {si} to {so} (only to (N, -1))")

    def binary(self, n: fx.Node, kind: str, x: Any, y: Any) -> None:
        if self.is_tensor(x) and self.is_tensor(y):
            a, b = self.shape(x), self.shape(y)
            ok = a == b or (len(a) == 3 and len(b) == 3 and a[0] == b[0] and (a[1:] == (1, 1) or b[1:] == (1, 1)))
            if not ok or self.shape(n) != max(a, b, key=lambda s: int(np.prod(s))):
                raise self.unsupported(n, f"{kind} of shapes {a} and {b} (same shape, or (C,1,1) with (C,H,W))")
            self.emit(n, kind, [self.src(n, x), self.src(n, y)])
            return
        t, v = (x, y) if self.is_tensor(x) else (y, x)
        if not self.is_tensor(t) or isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.unsupported(n, f"{kind} of {x!r} and {y!r}")
        self.emit(n, f"{kind}_scalar", [self.src(n, t)], value=float(v))

    def mean(self, n: fx.Node, a: fx.Node, dims: Any, keepdim: bool) -> None:
        nd = len(self.shape(a)) + 1
        if dims is None:
            raise self.unsupported(n, "mean over all dims (only (2, 3) of (N, C, H, W))")
        d = sorted(int(v) % nd for v in (dims if isinstance(dims, (tuple, list)) else [dims]))
        if nd != 4 or d != [2, 3]:
            raise self.unsupported(n, f"mean over dims {dims} of a {nd}-d tensor (only (2, 3) of (N, C, H, W))")
        self.emit(n, "mean", [self.src(n, a)], dims=[2, 3], keepdim=bool(keepdim))

    def adaptive(self, n: fx.Node, a: fx.Node) -> None:
        if len(self.shape(a)) != 3:
            raise self.unsupported(n, f"adaptive_avg_pool2d of shape {self.shape(a)}")
        self.emit(n, "adaptive_avgpool2d", [self.src(n, a)], output_size=list(self.shape(n)[1:]))

    def module(self, n: fx.Node) -> None:
        m = self.gm.get_submodule(str(n.target))
        t = type(m)
        x = n.args[0] if n.args else None
        if len(n.args) != 1 or n.kwargs:
            raise self.unsupported(n, f"calling a {t.__name__} with {len(n.args)} arguments")
        if t is nn.Conv2d:
            self.conv(n, m)
        elif t is nn.Linear:
            self.linear(n, m)
        elif t in (nn.BatchNorm2d, nn.BatchNorm1d):
            self.batchnorm(n, m)
        elif t in _ACT_MODULES:
            self.emit(n, _ACT_MODULES[t], [self.src(n, x)])
        elif t is nn.GELU:
            self.emit(n, "gelu", [self.src(n, x)], approximate=str(m.approximate))
        elif t is nn.MaxPool2d:
            if _pair(m.dilation) != [1, 1] or m.return_indices:
                raise self.unsupported(n, "MaxPool2d with dilation != 1 or return_indices")
            self.emit(n, "maxpool2d", [self.src(n, x)], kernel=_pair(m.kernel_size),
                      stride=_pair(m.stride if m.stride is not None else m.kernel_size),
                      padding=_pair(m.padding), dilation=[1, 1], ceil_mode=bool(m.ceil_mode))
        elif t is nn.AvgPool2d:
            if m.divisor_override is not None:
                raise self.unsupported(n, "AvgPool2d with divisor_override")
            self.emit(n, "avgpool2d", [self.src(n, x)], kernel=_pair(m.kernel_size),
                      stride=_pair(m.stride if m.stride is not None else m.kernel_size),
                      padding=_pair(m.padding), ceil_mode=bool(m.ceil_mode),
                      count_include_pad=bool(m.count_include_pad))
        elif t is nn.AdaptiveAvgPool2d:
            self.adaptive(n, x)
        elif t is nn.Flatten:
            self.flatten(n, x, m.start_dim, m.end_dim)
        elif t in _IDENTITY_MODULES or (t.__name__ == "StochasticDepth" and t.__module__.startswith("torchvision")):
            self.same(n, x)
        else:
            raise self.unsupported(n, f"module type {t.__module__}.{t.__name__}")

    def function(self, n: fx.Node) -> None:
        f, a, kw = n.target, n.args, n.kwargs
        name = getattr(f, "__name__", str(f))
        if f in _ACT_FUNCS:
            self.emit(n, _ACT_FUNCS[f], [self.src(n, a[0])])
        elif f is F.gelu:
            self.emit(n, "gelu", [self.src(n, a[0])], approximate=str(kw.get("approximate", "none")))
        elif f in _ADD:
            if kw.get("alpha", 1) != 1:
                raise self.unsupported(n, "torch.add with alpha != 1")
            self.binary(n, "add", a[0], a[1] if len(a) > 1 else kw.get("other"))
        elif f in _MUL:
            self.binary(n, "mul", a[0], a[1] if len(a) > 1 else kw.get("other"))
        elif f in (operator.sub, operator.isub) and self.is_tensor(a[0]) and isinstance(a[1], (int, float)):
            self.emit(n, "add_scalar", [self.src(n, a[0])], value=-float(a[1]))
        elif f in (operator.truediv, operator.itruediv) and self.is_tensor(a[0]) and isinstance(a[1], (int, float)) and a[1] != 0:
            self.emit(n, "mul_scalar", [self.src(n, a[0])], value=1.0 / float(a[1]))
        elif f in _CAT:
            ts = a[0] if a else kw.get("tensors")
            dim = a[1] if len(a) > 1 else kw.get("dim", 0)
            nd = len(self.shape(ts[0])) + 1
            if nd != 4 or int(dim) % 4 != 1:
                raise self.unsupported(n, f"{name} on dim {dim} of {nd}-d tensors (only channels of (N, C, H, W))")
            self.emit(n, "cat", [self.src(n, t) for t in ts], axis=1)
        elif f is torch.flatten:
            self.flatten(n, a[0], a[1] if len(a) > 1 else kw.get("start_dim", 0), a[2] if len(a) > 2 else kw.get("end_dim", -1))
        elif f is torch.reshape:
            self.reshape(n, a[0])
        elif f is F.adaptive_avg_pool2d:
            self.adaptive(n, a[0])
        elif f is torch.mean:
            self.mean(n, a[0], a[1] if len(a) > 1 else kw.get("dim"), a[2] if len(a) > 2 else kw.get("keepdim", False))
        elif f in _IDENTITY_FUNCS or _is_stochastic_depth_fn(f):
            self.same(n, a[0])
        elif f in (getattr, operator.getitem) and not self.is_tensor(n):
            pass  # shape arithmetic (x.shape[0]); only view/reshape may consume it
        else:
            raise self.unsupported(n, f"function {getattr(f, '__module__', '')}.{name}")

    def method(self, n: fx.Node) -> None:
        m, a, kw = str(n.target), n.args, n.kwargs
        if m in _ACT_METHODS:
            self.emit(n, _ACT_METHODS[m], [self.src(n, a[0])])
        elif m in ("add", "add_"):
            self.binary(n, "add", a[0], a[1] if len(a) > 1 else kw.get("other"))
        elif m in ("mul", "mul_"):
            self.binary(n, "mul", a[0], a[1] if len(a) > 1 else kw.get("other"))
        elif m == "flatten":
            self.flatten(n, a[0], a[1] if len(a) > 1 else kw.get("start_dim", 0), a[2] if len(a) > 2 else kw.get("end_dim", -1))
        elif m in ("view", "reshape"):
            self.reshape(n, a[0])
        elif m == "mean":
            self.mean(n, a[0], a[1] if len(a) > 1 else kw.get("dim"), a[2] if len(a) > 2 else kw.get("keepdim", False))
        elif m in ("contiguous", "clone", "detach"):
            self.same(n, a[0])
        elif m in ("size", "dim") and not self.is_tensor(n):
            pass
        else:
            raise self.unsupported(n, f"method Tensor.{m}")

    def run(self) -> Part:
        out = None
        for n in self.gm.graph.nodes:
            if n.op == "placeholder":
                self.alias[n.name] = "input"
            elif n.op == "get_attr":
                pass  # a constant; src() refuses it as an operand
            elif n.op == "call_module":
                self.module(n)
            elif n.op == "call_function":
                self.function(n)
            elif n.op == "call_method":
                self.method(n)
            elif n.op == "output":
                out = n.args[0]
        if not self.is_tensor(out):
            raise ValueError(f"{self.what}: must return one tensor")
        name = self.src(out, out)
        if name == "input":  # an empty stage/head: still one node, so `output` names a node
            self.nodes.append({"name": "identity", "op": "identity", "inputs": ["input"]})
            self.refs["identity"], name = out.name, "identity"
        # keep only nodes the output depends on (the runtime refuses unused nodes)
        live, by_name = {name}, {d["name"]: d for d in self.nodes}
        for d in reversed(self.nodes):
            if d["name"] in live:
                live.update(i for i in d["inputs"] if i in by_name)
        self.nodes[:] = [d for d in self.nodes if d["name"] in live]
        for nm, p in self.pending.items():
            if nm not in live:
                continue
            for key, a in p.items():
                if a is not None:
                    self.emitted[nm][key] = self.w.add(f"{self.prefix}.{nm}.{key}", np.asarray(a))
        part = Part(nodes=self.nodes, output=name)
        part.refs = dict(self.refs)  # type: ignore[attr-defined]
        part.macs = int(sum(c for nm, c in self.macs.items() if nm in live))  # type: ignore[attr-defined]
        return part


def convert(gm: fx.GraphModule, values: dict[str, Any], what: str, prefix: str, w: Weights,
            wrapped: bool = False) -> Part:
    """The v2 graph of one traced stage/head, given the values of its nodes on the example input.
    ``wrapped``: gm traces ``nn.Sequential(module)`` (module paths are reported without the "0")."""
    return _Converter(gm, values, what, prefix, w, wrapped).run()

