"""The EWC penalty as a torch expression, and an avalanche-like :class:`EWC` helper.

Convention (stated because libraries differ, and λ values only transfer when it is known)::

    penalty(θ) = λ/2 · Σ_k Σ_i F_{k,i} (θ_i − θ*_{k,i})²        (the ½ convention)
    ∂penalty/∂θ_i = λ · Σ_k F_{k,i} (θ_i − θ*_{k,i})

over K (Fisher F_k, anchor θ*_k) pairs. An implementation without the ½ (e.g. ``λ·Σ F (θ−θ*)²``)
needs half our λ for the same penalty. The Fishers are means over samples of squared per-sample
gradients (see :func:`exitnet.torch.fisher_diagonal`); a ``batched`` Fisher is about B times smaller,
so its λ is about B times larger.

The penalty is a differentiable torch scalar on the parameters' device, so it can be added to the
training loss: autograd (first order), mixed devices and GPUs work as usual. It is one autograd
Function that forms the value and the gradient in the same pass: with torch operations on the
parameters' device, or, for large float32 parameters on the CPU (≥ ``_GO_MIN_NUMEL`` values), with
the Go kernel ``exitnet.fisher.ewc_penalty`` (one fused pass, no P-sized temporaries). Second-order
autograd through the penalty (``create_graph=True``) is refused with an error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["EWC", "ewc_penalty"]

NamedParams = Union[nn.Module, Mapping[str, Tensor], Iterable[tuple[str, Tensor]]]
TensorMap = Mapping[str, Any]


def _check_lam(lam: Any) -> float:
    if isinstance(lam, bool) or not isinstance(lam, (int, float, np.integer, np.floating)):
        raise TypeError(f"lam: expected a real number, got {type(lam).__name__}")
    lam = float(lam)
    if not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam: must be finite and ≥ 0, got {lam}")
    return lam


def _named(named_params: NamedParams) -> dict[str, Tensor]:
    if isinstance(named_params, nn.Module):
        return dict(named_params.named_parameters())
    if isinstance(named_params, Mapping):
        out = dict(named_params)
    else:
        try:
            out = dict(named_params)
        except (TypeError, ValueError) as e:
            raise TypeError(
                "named_params: expected an nn.Module, a mapping name -> Tensor or (name, Tensor) pairs"
            ) from e
    for k, v in out.items():
        if not isinstance(v, Tensor):
            raise TypeError(f"named_params: {k!r} is not a tensor ({type(v).__name__})")
    return out


def _as_list(x: Any, what: str) -> list[TensorMap]:
    if isinstance(x, Mapping):
        return [x]
    if isinstance(x, Sequence) and not isinstance(x, (str, bytes)):
        for i, m in enumerate(x):
            if not isinstance(m, Mapping):
                raise TypeError(f"{what}[{i}]: expected a mapping name -> tensor, got {type(m).__name__}")
        return list(x)
    raise TypeError(f"{what}: expected a mapping name -> tensor or a list of them, got {type(x).__name__}")


def _to(t: Any, like: Tensor) -> Tensor:
    t = torch.as_tensor(np.asarray(t)) if not isinstance(t, Tensor) else t
    return t.detach().to(device=like.device, dtype=like.dtype)


def ewc_penalty(
    named_params: NamedParams,
    fishers: Union[TensorMap, Sequence[TensorMap]],
    anchors: Union[TensorMap, Sequence[TensorMap]],
    lam: float,
) -> Tensor:
    r"""EWC penalty ``λ/2 · Σ_k Σ_i F_{k,i} (θ_i − θ*_{k,i})²`` as a differentiable torch scalar.

    Parameters
    ----------
    named_params : nn.Module, mapping name -> Tensor, or iterable of (name, Tensor)
        The current parameters θ (``model.named_parameters()`` works).
    fishers : mapping name -> tensor, or a list of them
        Diagonal Fishers F_k (a :class:`FisherResult`, a dict of tensors or numpy arrays). Only the
        parameters named in F_k are penalised by pair k.
    anchors : mapping name -> tensor, or a list of them (same length as ``fishers``)
        Anchors θ*_k; must hold every name of F_k with the same shape.
    lam : float
        λ ≥ 0. Note the ½: the gradient is ``λ · Σ_k F_k (θ − θ*_k)``.

    Returns
    -------
    Tensor
        A 0-dim tensor on the (first) parameter's device and in its dtype, differentiable w.r.t. θ
        (first order). Fishers and anchors are constants (detached), moved to θ's device/dtype.

    Examples
    --------
    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    >>> ewc_penalty({"w": w}, {"w": torch.tensor([1.0, 4.0])}, {"w": torch.zeros(2)}, lam=2.0)
    tensor(17., grad_fn=<_PenaltyFnBackward>)
    """
    lam = _check_lam(lam)
    params = _named(named_params)
    fl = _as_list(fishers, "fishers")
    al = _as_list(anchors, "anchors")
    if len(fl) != len(al):
        raise ValueError(f"anchors: {len(al)} anchor sets for {len(fl)} Fishers; need one per Fisher")
    terms: dict[str, list[tuple[Tensor, Tensor]]] = {}
    for k, (F, A) in enumerate(zip(fl, al)):
        for name, f in F.items():
            if name not in params:
                raise ValueError(f"fishers[{k}]: {name!r} is not among named_params")
            if name not in A:
                raise ValueError(f"anchors[{k}]: missing {name!r} (present in fishers[{k}])")
            th = params[name]
            f = _to(f, th)
            a = _to(A[name], th)
            if f.shape != th.shape:
                raise ValueError(
                    f"fishers[{k}]: {name!r} has shape {tuple(f.shape)}, parameter has {tuple(th.shape)}"
                )
            if a.shape != th.shape:
                raise ValueError(
                    f"anchors[{k}]: {name!r} has shape {tuple(a.shape)}, parameter has {tuple(th.shape)}"
                )
            terms.setdefault(name, []).append((f, a))
    if not terms:
        p0 = next(iter(params.values()), None)
        return torch.zeros((), device=p0.device if p0 is not None else None,
                           dtype=p0.dtype if p0 is not None else None)
    names = list(terms)
    return _PenaltyFn.apply(lam, [terms[n] for n in names], *[params[n] for n in names])


# Parameters with at least this many float32 values on the CPU use the Go kernel (one fused pass
# writing value and gradient; torch's elementwise ops allocate several P-sized temporaries, and
# at P = 11M their page faults cost 10-25x the kernel, see bench/bench_fisher_torch.py).
_GO_MIN_NUMEL = 1 << 17


def _use_go(th: Tensor) -> bool:
    return th.device.type == "cpu" and th.dtype == torch.float32 and th.numel() >= _GO_MIN_NUMEL


def _value_and_grad(th: Tensor, pairs: list[tuple[Tensor, Tensor]], lam: float) -> tuple[Tensor, Tensor]:
    """(λ/2 Σ_k F_k·(θ−θ*_k)² as a float64 0-dim tensor, λ Σ_k F_k (θ−θ*_k)) for one parameter."""
    th = th.detach()
    if _use_go(th):
        from .. import fisher as gofisher

        g = torch.empty(th.shape, dtype=th.dtype)
        key = "p"
        v, _ = gofisher.ewc_penalty(
            {key: th.contiguous().numpy()},
            [{key: f.contiguous().numpy()} for f, _ in pairs],
            [{key: a.contiguous().numpy()} for _, a in pairs],
            lam, out={key: g.numpy()},
        )
        return torch.tensor(float(v), dtype=torch.float64), g
    g: Optional[Tensor] = None
    v: Optional[Tensor] = None
    for f, a in pairs:
        d = th - a
        q = f * d
        dv = torch.dot(q.reshape(-1), d.reshape(-1)).double()
        v = dv if v is None else v + dv
        g = q if g is None else g.add_(q)
        del d
    assert g is not None and v is not None
    return v * (lam / 2), g.mul_(lam)


class _PenaltyFn(torch.autograd.Function):
    """Value λ/2 Σ F(θ−θ*)² with the gradient λ Σ F(θ−θ*) formed in the same pass (first-order
    autograd only: ``create_graph=True`` through the penalty is refused)."""

    @staticmethod
    def forward(ctx: Any, lam: float, terms: list, *thetas: Tensor) -> Tensor:  # type: ignore[override]
        out_dev = thetas[0].device
        total = torch.zeros((), dtype=torch.float64, device=out_dev)
        grads = []
        for th, pairs in zip(thetas, terms):
            v, g = _value_and_grad(th, pairs, lam)
            total = total + v.to(out_dev)
            grads.append(g)
        ctx.save_for_backward(*thetas)  # refuses a backward after θ was modified in place
        ctx.lam, ctx.terms, ctx.grads = lam, terms, grads
        return total.to(thetas[0].dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, gout: Tensor) -> tuple:  # type: ignore[override]
        thetas = ctx.saved_tensors
        grads = ctx.grads
        ctx.grads = None
        if grads is None:  # a second backward (retain_graph=True): recompute
            grads = [_value_and_grad(th, pairs, ctx.lam)[1] for th, pairs in zip(thetas, ctx.terms)]
        # The gradient buffers are ours alone (fresh in forward, released above): scale in place.
        one = gout.device.type == "cpu" and float(gout) == 1.0  # the usual loss = task + penalty
        out = [(g if one else g.mul_(gout.to(g.device, g.dtype))) if ctx.needs_input_grad[2 + i] else None
               for i, g in enumerate(grads)]
        return (None, None, *out)


def _consolidate_torch(fs: list[dict[str, Tensor]], mode: str, gamma: float) -> dict[str, Tensor]:
    """Go's ``consolidate`` in torch on the tensors' device: ``sum`` = Σ_k F_k; ``online``:
    F ← F_0, then F ← γ·F + F_k (accumulated in float64, returned in F's dtype)."""
    out = {}
    for n in fs[-1]:
        acc = fs[0][n].double()
        for f in fs[1:]:
            acc = acc + f[n].double() if mode == "sum" else gamma * acc + f[n].double()
        out[n] = acc.to(fs[-1][n].dtype)
    return out


class EWC:
    r"""Elastic weight consolidation across the stages of sequential training.

    ``EWC(lam, mode, gamma)`` keeps the Fishers and anchors of the stages consolidated so far and
    returns the penalty to add to the loss of the current stage::

        loss = task_loss + ewc.penalty(model)          # λ/2 · Σ F (θ − θ*)², the ½ convention

    Modes (``mode``):

    ``separate``  keep every (F_k, θ*_k) pair: penalty = λ/2 Σ_k Σ_i F_{k,i}(θ_i − θ*_{k,i})².
    ``sum``       one Fisher Σ_k F_k anchored at the latest θ* (memory of one pair).
    ``online``    F ← γ·F + F_new anchored at the latest θ* (online EWC, γ ∈ (0, 1]).

    ``sum`` and ``online`` consolidate through the Go library (``exitnet.fisher.consolidate``). A
    parameter absent from one Fisher counts as zero there (exit k depends on more parameters than
    exit j < k).

    Parameters
    ----------
    lam : float
        λ ≥ 0.
    mode : {"separate", "sum", "online"}
    gamma : float
        Decay of ``online`` mode, in (0, 1].

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(3, 2)
    >>> ewc = EWC(lam=10.0, mode="online", gamma=0.9)
    >>> F = {n: torch.ones_like(p) for n, p in net.named_parameters()}
    >>> ewc.consolidate(F, net)          # doctest: +SKIP  (after stage 1)
    >>> float(ewc.penalty(net))          # doctest: +SKIP  (θ == θ*: no penalty yet)
    0.0
    """

    MODES = ("separate", "sum", "online")

    def __init__(
        self, lam: float, mode: Literal["separate", "sum", "online"] = "separate", gamma: float = 1.0
    ) -> None:
        self.lam = _check_lam(lam)
        if mode not in self.MODES:
            raise ValueError(f"mode: {mode!r} is not one of {', '.join(self.MODES)}")
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.integer, np.floating)):
            raise TypeError(f"gamma: expected a real number, got {type(gamma).__name__}")
        gamma = float(gamma)
        if not (0.0 < gamma <= 1.0):
            raise ValueError(f"gamma: must be in (0, 1], got {gamma}")
        if mode != "online" and gamma != 1.0:
            raise ValueError(f"gamma: only used by mode='online' (got gamma={gamma} with mode={mode!r})")
        self.mode = mode
        self.gamma = gamma
        self.fishers: list[dict[str, Tensor]] = []
        self.anchors: list[dict[str, Tensor]] = []
        self.n_consolidations = 0
        # Provenance of every consolidated Fisher, oldest first (n_samples, label_mode,
        # granularity, normalisation when the Fisher is a FisherResult).
        self.history: list[dict[str, Any]] = []

    def consolidate(self, fisher: TensorMap, anchors: Union[nn.Module, TensorMap]) -> None:
        """Add the Fisher of a finished stage (or exit) and the parameters to anchor to.

        Parameters
        ----------
        fisher : mapping name -> tensor
            E.g. the :class:`FisherResult` of :func:`fisher_for_exit`.
        anchors : nn.Module or mapping name -> tensor
            θ* (a module: its current parameters are copied). Must hold every name of ``fisher``
            (and, in ``sum``/``online`` modes, every name consolidated so far).
        """
        if not isinstance(fisher, Mapping):
            raise TypeError(f"fisher: expected a mapping name -> tensor, got {type(fisher).__name__}")
        if isinstance(anchors, nn.Module):
            src = dict(anchors.named_parameters())
        elif isinstance(anchors, Mapping):
            src = dict(anchors)
        else:
            raise TypeError(f"anchors: expected an nn.Module or a mapping, got {type(anchors).__name__}")
        names = list(fisher.keys())
        if self.mode != "separate" and self.fishers:
            names += [n for n in self.fishers[0] if n not in fisher]
        anc: dict[str, Tensor] = {}
        for n in names:
            if n not in src:
                raise ValueError(f"anchors: missing {n!r}")
            a = src[n]
            a = a.detach().clone() if isinstance(a, Tensor) else torch.as_tensor(np.array(a))
            anc[n] = a
        F: dict[str, Tensor] = {}
        for n, f in fisher.items():
            t = _to(f, anc[n]).clone()
            if t.shape != anc[n].shape:
                raise ValueError(f"fisher: {n!r} has shape {tuple(t.shape)}, anchor has {tuple(anc[n].shape)}")
            if not torch.isfinite(t).all():
                raise ValueError(f"fisher: {n!r} contains NaN or Inf")
            if (t < 0).any():
                raise ValueError(f"fisher: {n!r} has negative entries")
            F[n] = t
        if self.mode == "separate" or not self.fishers:
            if self.mode != "separate":
                # Every stage's F enters through Go's consolidate, even the first (online: F_1).
                F = self._go_consolidate([F])
            self.fishers.append(F)
            self.anchors.append(anc)
        else:
            old = self.fishers[0]
            keys = list(dict.fromkeys(list(old) + list(F)))
            zeros = lambda n, like: torch.zeros_like(like)  # noqa: E731
            a = {n: old[n] if n in old else zeros(n, F[n]) for n in keys}
            b = {n: F[n] if n in F else zeros(n, old[n]) for n in keys}
            self.fishers[0] = self._go_consolidate([a, b])
            self.anchors[0] = anc
        self.n_consolidations += 1
        self.history.append({
            k: getattr(fisher, k) for k in ("n_samples", "label_mode", "granularity", "normalisation")
            if isinstance(getattr(fisher, k, None), (int, str))
        })

    def _go_consolidate(self, fs: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        if any(t.device.type != "cpu" for f in fs for t in f.values()):
            return _consolidate_torch(fs, self.mode, self.gamma)  # stays on the device
        from .. import fisher as gofisher

        arrs = [{n: t.detach().to("cpu", torch.float32).contiguous().numpy() for n, t in f.items()} for f in fs]
        if self.mode == "sum":
            out = gofisher.consolidate(arrs, mode="sum")
        else:
            out = gofisher.consolidate(arrs, mode="online", gamma=self.gamma)
        like = fs[-1]
        return {n: torch.from_numpy(np.array(out[n], copy=True)).to(like[n].device, like[n].dtype) for n in like}

    def penalty(self, named_params: NamedParams) -> Tensor:
        """λ/2 · Σ_k Σ_i F_{k,i} (θ_i − θ*_{k,i})² for the current parameters (0 before the first
        :meth:`consolidate`)."""
        params = _named(named_params)
        if not self.fishers:
            p0 = next(iter(params.values()), None)
            return torch.zeros((), device=p0.device if p0 is not None else None,
                               dtype=p0.dtype if p0 is not None else None)
        return ewc_penalty(params, self.fishers, self.anchors, self.lam)

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and numbers (``torch.save`` friendly)."""
        return {
            "lam": self.lam, "mode": self.mode, "gamma": self.gamma,
            "n_consolidations": self.n_consolidations, "history": [dict(h) for h in self.history],
            "fishers": [dict(f) for f in self.fishers], "anchors": [dict(a) for a in self.anchors],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for k in ("lam", "mode", "gamma", "fishers", "anchors"):
            if k not in state:
                raise ValueError(f"state: missing {k!r}")
        other = EWC(state["lam"], state["mode"], state["gamma"])
        if len(state["fishers"]) != len(state["anchors"]):
            raise ValueError("state: fishers and anchors differ in length")
        self.lam, self.mode, self.gamma = other.lam, other.mode, other.gamma
        self.fishers = [dict(f) for f in state["fishers"]]
        self.anchors = [dict(a) for a in state["anchors"]]
        self.n_consolidations = int(state.get("n_consolidations", len(self.fishers)))
        self.history = [dict(h) for h in state.get("history", [])]

    def save(self, path: Any, meta: Optional[Mapping[str, Any]] = None) -> None:
        """Write the Fishers, anchors and settings to an Arrow IPC file, atomically, through
        ``exitnet.fisher.save_state`` (checksummed; readable with pyarrow; no pickle).

        The file stores one layout for all terms; a parameter absent from a term is stored as
        zeros and the term's own names are kept in the metadata (``ewc.keys``), so :meth:`load`
        restores exactly this object. ``meta``: extra JSON-serialisable metadata.
        """
        from .. import fisher as gofisher

        if not self.fishers:
            raise ValueError("save: nothing consolidated yet")
        shapes: dict[str, tuple[int, ...]] = {}
        for d in self.fishers + self.anchors:
            for n, t in d.items():
                shapes.setdefault(n, tuple(t.shape))

        def full(d: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
            return {
                n: (d[n].detach().to("cpu", torch.float32).contiguous().numpy() if n in d
                    else np.zeros(shapes[n], np.float32))
                for n in shapes
            }

        info = {
            "format": "exitnet.torch.EWC/1", "lam": self.lam, "mode": self.mode, "gamma": self.gamma,
            "n_consolidations": self.n_consolidations, "history": self.history,
            "penalty": "lam/2 * sum_k sum_i F_k,i (theta_i - anchor_k,i)^2",
            "ewc.keys": [list(f) for f in self.fishers], "ewc.anchor_keys": [list(a) for a in self.anchors],
        }
        extra = dict(meta or {})
        clash = sorted(set(extra) & set(info))
        if clash:
            raise ValueError(f"meta: keys {clash} are reserved")
        gofisher.save_state(path, [full(f) for f in self.fishers], [full(a) for a in self.anchors],
                            {**info, **extra})

    @classmethod
    def load(cls, path: Any, device: Any = None) -> "EWC":
        """Read a file written by :meth:`save` (validated by the Go reader: a truncated or
        corrupted file raises ``exitnet.ExitnetIOError``). Tensors are float32 on ``device``."""
        from .. import fisher as gofisher

        fishers, anchors, meta = gofisher.load_state(path)
        if meta.get("format") != "exitnet.torch.EWC/1":
            raise ValueError(f"path: not an exitnet.torch.EWC state (format {meta.get('format')!r})")
        keys, akeys = meta.get("ewc.keys"), meta.get("ewc.anchor_keys")
        if not (isinstance(keys, list) and isinstance(akeys, list)
                and len(keys) == len(fishers) and len(akeys) == len(anchors) == len(fishers)):
            raise ValueError("path: EWC metadata does not match the stored terms")
        e = cls(meta["lam"], meta["mode"], meta["gamma"])

        def pick(d: Mapping[str, np.ndarray], names: list) -> dict[str, Tensor]:
            missing = [n for n in names if n not in d]
            if missing:
                raise ValueError(f"path: parameters {missing} named in the metadata are not stored")
            return {n: torch.from_numpy(np.array(d[n], dtype=np.float32, copy=True)).to(device) for n in names}

        e.fishers = [pick(f, k) for f, k in zip(fishers, keys)]
        e.anchors = [pick(a, k) for a, k in zip(anchors, akeys)]
        e.n_consolidations = int(meta.get("n_consolidations", len(e.fishers)))
        e.history = [dict(h) for h in meta.get("history", [])]
        return e

    def __repr__(self) -> str:
        p = sum(t.numel() for f in self.fishers for t in f.values())
        g = f", gamma={self.gamma}" if self.mode == "online" else ""
        return (
            f"EWC(lam={self.lam}, mode={self.mode!r}{g}, consolidations={self.n_consolidations}, "
            f"stored pairs={len(self.fishers)}, Fisher values={p})"
        )
