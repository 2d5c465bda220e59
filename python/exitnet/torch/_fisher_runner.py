"""The Fisher runner: plans on the first batch (which path each parameter takes), then accumulates
batch after batch (see :mod:`exitnet.torch._fisher` for the method)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor, nn

from ._fisher_layers import (
    LABEL_MODES,
    ForwardFn,
    ParamsArg,
    _default_forward,
    _np32,
    _Site,
    _site_kind,
    _uses_batch_stats,
)
from ._fisher_result import FisherResult, _go
# Planning (first batch) and accumulation (every batch) are mixins in their own modules.
from ._fisher_runner_plan import _RunnerPlan
from ._fisher_runner_step import _RunnerStep


class _FisherRunner(_RunnerPlan, _RunnerStep):
    """Plans on the first batch, then accumulates batch after batch into a Go accumulator.

    Internal; use :func:`fisher_diagonal`. Exposed to the benchmarks as ``plan``/``step``.
    """

    def __init__(
        self,
        model: nn.Module,
        forward: Optional[ForwardFn],
        params: ParamsArg,
        label_mode: str,
        seed: int,
        backend: str = "auto",
        accumulator: str = "auto",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
        if forward is not None and not callable(forward):
            raise TypeError(f"forward: expected a callable (model, x) -> logits, got {forward!r}")
        if label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode: {label_mode!r} is not one of {', '.join(LABEL_MODES)}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
        self.model = model
        self.forward = forward or _default_forward
        self.label_mode = label_mode
        self.seed = int(seed)
        if backend not in ("auto", "go", "torch"):
            raise ValueError(f"backend: {backend!r} is not one of auto, go, torch")
        self.backend_arg = backend
        self.explicit = params is not None
        self.cand = self._candidates(params)  # Fisher name -> Parameter
        if not self.cand:
            raise ValueError("params: no parameters to compute a Fisher for")
        self.device = next(iter(self.cand.values())).device
        self.backend = backend if backend != "auto" else ("go" if self.device.type == "cpu" else "torch")
        if accumulator not in ("auto", "go", "torch"):
            raise ValueError(f"accumulator: {accumulator!r} is not one of auto, go, torch")
        self.accumulator = accumulator if accumulator != "auto" else (
            "go" if self.device.type == "cpu" else "torch")
        if self.accumulator == "torch":
            if backend == "go":
                raise ValueError("backend: 'go' forms the products in Go's accumulator; with "
                                 "accumulator='torch' use backend='torch' or 'auto'")
            self.backend = "torch"
        self.active = False
        self.handles: list[Any] = []
        self.sites: list[_Site] = []
        self.rows: list[str] = []  # names accumulated through torch.func rows
        self.row_paths: dict[str, str] = {}
        self.methods: dict[str, str] = {}
        self.layout: dict[str, tuple[int, ...]] = {}
        self.acc = None
        self.n_seen = 0
        self._planned = False

    # -- parameters --------------------------------------------------------------------------

    def _candidates(self, params: ParamsArg) -> dict[str, nn.Parameter]:
        named = dict(self.model.named_parameters())
        by_id = {id(p): p for p in named.values()}
        if params is None:
            return {n: p for n, p in named.items() if p.requires_grad}
        if isinstance(params, (str, bytes)):
            raise TypeError("params: expected a mapping or an iterable of names, got a string")
        items: list[tuple[str, Any]]
        if isinstance(params, Mapping):
            items = list(params.items())
        else:
            items = []
            for it in params:
                if isinstance(it, str):
                    if it not in named:
                        raise ValueError(f"params: {it!r} is not a parameter name of model")
                    items.append((it, named[it]))
                elif isinstance(it, tuple) and len(it) == 2 and isinstance(it[0], str):
                    items.append(it)
                else:
                    raise TypeError(
                        "params: expected a mapping name -> Parameter, names, or (name, Parameter) "
                        f"pairs; got an item of type {type(it).__name__}"
                    )
        out: dict[str, nn.Parameter] = {}
        for n, p in items:
            if not isinstance(p, Tensor):
                raise TypeError(f"params: {n!r} is not a tensor ({type(p).__name__})")
            if id(p) not in by_id:
                raise ValueError(f"params: {n!r} is not a parameter of model")
            if n in out:
                raise ValueError(f"params: duplicate name {n!r}")
            if any(q is p for q in out.values()):
                raise ValueError(f"params: {n!r} is the same parameter as another entry")
            out[n] = p
        return out

    # -- hooks -------------------------------------------------------------------------------

    def _install(self) -> None:
        # Where is each candidate registered, and is it registered in more than one module?
        owners: dict[int, list[tuple[str, nn.Module, str]]] = {}
        seen_mods: set[int] = set()
        for path, m in self.model.named_modules(remove_duplicate=False):
            first = id(m) not in seen_mods
            seen_mods.add(id(m))
            if not first:
                continue
            for attr, p in m._parameters.items():
                if p is not None:
                    owners.setdefault(id(p), []).append((path, m, attr))
        name_of = {id(p): n for n, p in self.cand.items()}
        sites: dict[int, _Site] = {}
        for n, p in self.cand.items():
            own = owners.get(id(p), [])
            kind = _site_kind(own[0][1]) if len(own) == 1 else None
            if kind is None or own[0][2] not in ("weight", "bias"):
                continue
            path, m, attr = own[0]
            if _uses_batch_stats(m):
                continue  # refused at forward time (see _bn_guard)
            s = sites.get(id(m))
            if s is None:
                s = sites[id(m)] = _Site(path, m, kind, {})
            s.names[attr] = name_of[id(p)]
        self.sites = list(sites.values())
        for s in self.sites:
            self.handles.append(s.module.register_forward_hook(self._make_hook(s)))
        for path, m in self.model.named_modules():
            if _uses_batch_stats(m):
                self.handles.append(m.register_forward_hook(self._make_bn_guard(path)))

    def _make_hook(self, site: _Site):
        def hook(module: nn.Module, args: tuple, output: Any):
            if not self.active:
                return None
            site.calls += 1
            if site.calls > 1 or not args or not isinstance(args[0], Tensor):
                return None
            if not isinstance(output, Tensor) or not output.requires_grad:
                return None
            x = args[0].detach()
            if site.clone:
                site.inp = x.clone()
            else:
                site.inp = x
                site.vin = x._version
                site.vout = output._version
            site.out = output
            return output.clone() if site.clone else None

        return hook

    def _make_bn_guard(self, path: str):
        def guard(module: nn.Module, args: tuple, output: Any):
            if self.active:
                raise ValueError(
                    f"model: {path!r} ({type(module).__name__}) normalises with batch statistics "
                    "even in eval mode (track_running_stats=False), so the samples of a batch are "
                    "not independent and per-sample gradients are undefined"
                )

        return guard

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    # -- per batch -----------------------------------------------------------------------------

    def _forward(self, x: Tensor) -> Tensor:
        for s in self.sites:
            s.clear()
        self.active = True
        try:
            with torch.enable_grad():
                logits = self.forward(self.model, x)
        finally:
            self.active = False
        if not isinstance(logits, Tensor):
            raise TypeError(
                f"forward: must return a logits tensor, got {type(logits).__name__} "
                "(pass forward=lambda m, x: m(x)[k] to pick an exit)"
            )
        if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
            raise ValueError(
                f"forward: logits must have shape (N, C) = ({x.shape[0]}, C), got {tuple(logits.shape)}"
            )
        if not torch.isfinite(logits).all():
            raise ValueError("forward: logits contain NaN or Inf")
        return logits

    def _prepare(self, batch: Any) -> tuple[Tensor, Optional[Tensor]]:
        if isinstance(batch, Tensor):
            x, y = batch, None
        elif isinstance(batch, (tuple, list)) and len(batch) >= 1:
            x = batch[0]
            y = batch[1] if len(batch) >= 2 else None
        else:
            raise TypeError(
                f"batches: each item must be an (x, y) pair or a tensor x, got {type(batch).__name__}"
            )
        if not isinstance(x, Tensor):
            raise TypeError(f"batches: x must be a tensor, got {type(x).__name__}")
        if x.ndim < 1 or x.shape[0] == 0:
            raise ValueError(f"batches: x must have a non-empty batch dimension, got {tuple(x.shape)}")
        x = x.to(self.device)
        if y is not None:
            y = torch.as_tensor(y).to(self.device)
            if y.shape != (x.shape[0],):
                raise ValueError(f"batches: y must have shape ({x.shape[0]},), got {tuple(y.shape)}")
            if y.dtype.is_floating_point or y.dtype == torch.bool:
                raise TypeError(f"batches: y must hold integer class labels, got {y.dtype}")
        if self.label_mode in ("empirical", "batched") and y is None:
            raise ValueError(f"batches: label_mode {self.label_mode!r} needs labels y")
        return x, y

    def _label_passes(
        self, logits: Tensor, y: Optional[Tensor]
    ) -> Iterator[tuple[Tensor, Optional[Tensor], Optional[np.ndarray]]]:
        """Yields (labels, weights tensor, weights numpy) for each backward pass of this batch."""
        N, C = logits.shape
        mode = self.label_mode
        if mode in ("empirical", "batched"):
            assert y is not None
            if int(y.min()) < 0 or int(y.max()) >= C:
                raise ValueError(f"batches: labels must be in [0, {C}), got [{int(y.min())}, {int(y.max())}]")
            yield y.long(), None, None
        elif mode == "argmax":
            yield logits.detach().argmax(1), None, None
        elif mode == "sampled":
            # Row r of the whole stream uses (seed, r): independent of how it is batched.
            lab = _go().sample_labels(_np32(logits), seed=self.seed, row_offset=self.n_seen)
            yield torch.from_numpy(np.array(lab, dtype=np.int64)).long().to(self.device), None, None
        else:  # exact
            probs = np.array(_go().class_probs(_np32(logits)), dtype=np.float32, order="C", copy=True)
            pt = torch.from_numpy(probs).to(self.device)
            for c in range(C):
                lab = torch.full((N,), c, dtype=torch.long, device=self.device)
                yield lab, pt[:, c], probs[:, c].copy()

    @staticmethod
    def _grad_logits(logits: Tensor, labels: Tensor) -> Tensor:
        """∂/∂z of Σ_n −log softmax(z_n)[y_n] (sum-reduced cross-entropy): p − onehot(y)."""
        p = torch.softmax(logits.detach().double(), dim=1)
        p[torch.arange(p.shape[0], device=p.device), labels] -= 1.0
        return p.to(logits.dtype)

    def result(self) -> FisherResult:
        if self.n_seen == 0:
            raise ValueError("batches: no samples (the iterable was empty)")
        f = self.acc.compute()
        sums, count = self.acc.state()
        out = {}
        for n in self.layout:
            p = self.cand[n]
            v = f[n] if isinstance(f[n], Tensor) else torch.from_numpy(np.array(f[n], copy=True))
            out[n] = v.reshape(p.shape).to(p.device, p.dtype)
        return FisherResult(
            out, n_samples=count, label_mode=self.label_mode, sums=sums, methods=self.methods
        )

    def close(self) -> None:
        self.remove()
        if self.acc is not None:
            close = getattr(self.acc, "close", None)
            if close is not None:
                close()
            self.acc = None




class _ModeGuard:
    """eval() on every submodule and requires_grad on the chosen parameters; restores both."""

    def __init__(self, model: nn.Module, params: Iterable[Tensor]) -> None:
        self.model = model
        self.params = list(params)

    def __enter__(self) -> "_ModeGuard":
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.rg = [(p, p.requires_grad) for p in self.params]
        self.model.eval()
        for p in self.params:
            p.requires_grad_(True)
        return self

    def __exit__(self, *exc: Any) -> None:
        for m, t in self.modes:
            m.training = t
        for p, r in self.rg:
            p.requires_grad_(r)


def _truncate(batch: Any, k: int) -> Any:
    if isinstance(batch, Tensor):
        return batch[:k]
    if isinstance(batch, (tuple, list)):
        return type(batch)(b[:k] if isinstance(b, Tensor) else b for b in batch)
    return batch
