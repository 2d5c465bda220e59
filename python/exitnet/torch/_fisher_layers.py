"""Layer factors of the per-sample Fisher (see :mod:`exitnet.torch._fisher` for the method): the
hooked sites, per-layer factor products (Linear, Conv2d, normalisation layers) and how they are fed
into an accumulator."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Callable, Literal, Optional, Union

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

LabelMode = Literal["exact", "sampled", "argmax", "empirical", "batched"]
LABEL_MODES: tuple[str, ...] = ("exact", "sampled", "argmax", "empirical", "batched")

ForwardFn = Callable[[nn.Module, Tensor], Tensor]
ParamsArg = Union[None, Mapping[str, Tensor], Iterable[str], Iterable[tuple[str, Tensor]]]


_ROWS_BUDGET = 32 * 1024 * 1024  # per-sample gradient values held at once on the rows path
_CONV_BUDGET = 16 * 1024 * 1024  # per-sample conv weight gradient values at once (torch backend)


class _Site:
    """One hooked module whose parameters are accumulated from layer factors."""

    __slots__ = ("path", "module", "kind", "names", "clone", "calls", "inp", "out", "vin", "vout", "backend")

    def __init__(self, path: str, module: nn.Module, kind: str, names: dict[str, str]) -> None:
        self.path = path
        self.module = module
        self.kind = kind  # "linear", "conv2d", "norm"
        self.names = names  # role ("weight"/"bias") -> Fisher name
        self.clone = False
        self.backend: Optional[str] = None  # "go"/"torch" chosen by backend="auto"; None: the runner's
        self.clear()

    def clear(self) -> None:
        self.calls = 0
        self.inp: Optional[Tensor] = None
        self.out: Optional[Tensor] = None
        self.vin = 0
        self.vout = 0


def _site_kind(m: nn.Module) -> Optional[str]:
    if isinstance(m, nn.Linear):
        return "linear"
    if isinstance(m, nn.Conv2d):
        return "conv2d"
    if isinstance(m, (_BatchNorm, nn.LayerNorm, nn.GroupNorm)):
        return "norm"
    return None


def _uses_batch_stats(m: nn.Module) -> bool:
    return isinstance(m, _BatchNorm) and (
        not m.track_running_stats or m.running_mean is None or m.running_var is None
    )


def _conv_geometry(m: nn.Conv2d, x: Tensor) -> tuple[Tensor, tuple, tuple, tuple, int]:
    """The input as the convolution sees it (explicitly padded when needed) and the geometry."""
    stride = tuple(int(s) for s in m.stride)
    dilation = tuple(int(d) for d in m.dilation)
    kh, kw = (int(k) for k in m.kernel_size)
    if m.padding_mode != "zeros":
        x = nn.functional.pad(x, m._reversed_padding_repeated_twice, mode=m.padding_mode)
        return x, stride, (0, 0), dilation, int(m.groups)
    pad = m.padding
    if isinstance(pad, str):
        if pad == "valid":
            return x, stride, (0, 0), dilation, int(m.groups)
        # "same" (stride 1): total padding d·(k−1), the extra one on the right/bottom like torch.
        tot = (dilation[0] * (kh - 1), dilation[1] * (kw - 1))
        lo = (tot[0] // 2, tot[1] // 2)
        hi = (tot[0] - lo[0], tot[1] - lo[1])
        if lo == hi:
            return x, stride, lo, dilation, int(m.groups)
        x = nn.functional.pad(x, [lo[1], hi[1], lo[0], hi[0]])
        return x, stride, (0, 0), dilation, int(m.groups)
    return x, stride, (int(pad[0]), int(pad[1])), dilation, int(m.groups)


def _norm_persample(m: nn.Module, x: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample γ and β gradients of a normalisation layer: Σ_positions g·x̂ and Σ_positions g."""
    if isinstance(m, _BatchNorm):
        shape = [1, x.shape[1]] + [1] * (x.ndim - 2)
        xhat = (x - m.running_mean.view(shape)) * torch.rsqrt(m.running_var.view(shape) + m.eps)
        dims = tuple(range(2, x.ndim))
    elif isinstance(m, nn.LayerNorm):
        ns = tuple(m.normalized_shape)
        xhat = nn.functional.layer_norm(x, ns, None, None, m.eps)
        dims = tuple(range(1, x.ndim - len(ns)))
    else:  # GroupNorm
        xhat = nn.functional.group_norm(x, m.num_groups, None, None, m.eps)
        dims = tuple(range(2, x.ndim))
    gx = g * xhat
    if dims:
        return gx.sum(dims), g.sum(dims)
    return gx, g


def _conv_weight_sq_torch(m: nn.Conv2d, A: Tensor, G: Tensor, w: Optional[Tensor]) -> Tensor:
    """Σ_n w_n (∇W_n)² of a Conv2d, in torch: per-sample gradients of a chunk of samples from one
    grouped convolution_backward (sample n, group γ → group n·groups + γ), squared and summed."""
    xp, stride, pad, dil, groups = _conv_geometry(m, A)
    N, cin, H, W = xp.shape
    cout = G.shape[1]
    wshape = tuple(m.weight.shape)
    per = int(np.prod(wshape))
    step = max(1, min(N, _CONV_BUDGET // max(per, 1)))
    tot = torch.zeros(wshape, dtype=torch.float64, device=G.device)
    for a in range(0, N, step):
        b = min(a + step, N)
        n = b - a
        gw = torch.nn.grad.conv2d_weight(
            xp[a:b].reshape(1, n * cin, H, W), (n * cout,) + wshape[1:],
            G[a:b].reshape(1, n * cout, *G.shape[2:]), stride, pad, dil, n * groups,
        ).reshape((n,) + wshape)
        gw.square_()
        if w is not None:
            gw.mul_(w[a:b].to(gw.dtype).reshape((n,) + (1,) * len(wshape)))
        tot += gw.sum(0).double()  # float32 sum of ≤ chunk squares, float64 across chunks
        del gw
    return tot


def _wsum_sq(t: Tensor, w: Optional[Tensor]) -> Tensor:
    """Σ_n w_n t_n² over the first dimension (float64)."""
    t = t.double()
    sq = t * t
    if w is None:
        return sq.sum(0)
    return torch.tensordot(w.double().to(t.device), sq, dims=([0], [0]))


def _np32(t: Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).contiguous().numpy()


def _to_acc(acc: Any, t: Tensor) -> Any:
    """A squared-gradient sum as the accumulator takes it: the tensor itself for an accumulator on
    the device (nothing crosses to the host), float32 numpy for Go's."""
    return t.detach() if getattr(acc, "on_device", False) else _np32(t)


class _FwdWrapper(nn.Module):
    """Lets torch.func.functional_call run a user forward callable on the model."""

    def __init__(self, model: nn.Module, forward: ForwardFn) -> None:
        super().__init__()
        self.model = model
        self._fwd = forward

    def forward(self, x: Tensor) -> Tensor:
        return self._fwd(self.model, x)


def _default_forward(model: nn.Module, x: Tensor) -> Tensor:
    return model(x)



def _close(a: Tensor, b: Tensor) -> bool:
    """Σ_n of the per-sample factor gradients vs the batched gradient, up to float rounding.

    Norm-wise: ‖a − b‖ ≤ tol·(‖a‖ + ‖b‖), tol = 1e-3 for float32/16 parameters and 1e-8 for float64.
    A parameter that also gets gradient from outside its module differs by far more, unless that
    outside contribution is below tol of the total (then its Fisher is off by about that much).
    """
    if a.shape != b.shape:
        return False
    tol = 1e-8 if b.dtype == torch.float64 else 1e-3
    a = a.detach().double()
    b = b.detach().double()
    d = float(torch.linalg.vector_norm(a - b))
    return d <= tol * (float(torch.linalg.vector_norm(a)) + float(torch.linalg.vector_norm(b))) + 1e-30



def factor_sums(s: _Site, A: Tensor, G: Tensor) -> dict[str, Tensor]:
    """Σ_n of the per-sample gradients from the factors (for the planning check), in torch."""
    m = s.module
    out: dict[str, Tensor] = {}
    if s.kind == "linear":
        A2 = A.reshape(-1, A.shape[-1])
        G2 = G.reshape(-1, G.shape[-1])
        out["weight"] = G2.t() @ A2
        out["bias"] = G2.sum(0)
    elif s.kind == "conv2d":
        xp, stride, pad, dil, groups = _conv_geometry(m, A)
        out["weight"] = torch.nn.grad.conv2d_weight(xp, m.weight.shape, G, stride, pad, dil, groups)
        out["bias"] = G.sum((0, 2, 3))
    else:
        gw, gb = _norm_persample(m, A, G)
        out["weight"] = gw.sum(0)
        out["bias"] = gb.sum(0)
    return out



def feed_factors(acc: Any, backend: str, s: _Site, A: Tensor, G: Tensor, w_t: Optional[Tensor], w_np: Optional[np.ndarray]) -> None:
    """Accumulate one hooked layer's per-sample squared gradients from its factors A (input) and
    G (output gradient), weighted by w (exact mode), with the products formed by ``backend``."""
    m = s.module
    wn, bn = s.names.get("weight"), s.names.get("bias")
    # Non-finite factors or sums are refused by the Go accumulator, naming the parameter.
    if s.kind == "linear" and A.ndim == 2 and backend == "torch":
        N = int(G.shape[0])
        G2 = G * G
        if w_t is not None:
            G2 = G2 * w_t.to(G2.dtype).unsqueeze(1)
        if wn is not None:
            acc.update_squared(wn, _to_acc(acc, G2.t() @ (A * A)), N)  # (w∘G∘G)ᵀ(A∘A)
        if bn is not None:
            acc.update_squared(bn, _to_acc(acc, G2.sum(0, dtype=torch.float64)), N)
    elif s.kind == "linear" and A.ndim == 2:
        if wn is not None:
            acc.update_linear(wn, bn, _np32(A), _np32(G), weights=w_np)
        else:
            acc.update_squared(bn, _to_acc(acc, _wsum_sq(G, w_t)), int(G.shape[0]))
    elif s.kind == "linear":
        N = A.shape[0]
        A3 = A.reshape(N, -1, A.shape[-1])
        G3 = G.reshape(N, -1, G.shape[-1])
        if wn is not None:
            # Σ_t g_t a_tᵀ per sample, in chunks so that at most ~32 MB of gradients exist.
            per = G3.shape[-1] * A3.shape[-1]
            step = max(1, int(8_000_000 // max(per, 1)))
            tot = torch.zeros(m.weight.shape, dtype=torch.float64, device=A.device)
            for a in range(0, N, step):
                gw = torch.bmm(G3[a : a + step].transpose(1, 2), A3[a : a + step])
                tot += _wsum_sq(gw, None if w_t is None else w_t[a : a + step])
            acc.update_squared(wn, _to_acc(acc, tot), N)
        if bn is not None:
            acc.update_squared(bn, _to_acc(acc, _wsum_sq(G3.sum(1), w_t)), N)
    elif s.kind == "conv2d" and backend == "torch":
        N = int(G.shape[0])
        if wn is not None:
            acc.update_squared(wn, _to_acc(acc, _conv_weight_sq_torch(m, A, G, w_t)), N)
        if bn is not None:
            acc.update_squared(bn, _to_acc(acc, _wsum_sq(G.sum((2, 3)), w_t)), N)
    elif s.kind == "conv2d":
        xp, stride, pad, dil, groups = _conv_geometry(m, A)
        if wn is not None:
            acc.update_conv2d(
                wn, bn, _np32(xp), _np32(G), stride=stride, padding=pad, dilation=dil,
                groups=groups, weights=w_np,
            )
        else:
            acc.update_squared(bn, _to_acc(acc, _wsum_sq(G.sum((2, 3)), w_t)), int(G.shape[0]))
    else:
        gw, gb = _norm_persample(m, A, G)
        if wn is not None:
            acc.update_squared(wn, _to_acc(acc, _wsum_sq(gw, w_t)), int(G.shape[0]))
        if bn is not None:
            acc.update_squared(bn, _to_acc(acc, _wsum_sq(gb, w_t)), int(G.shape[0]))

