"""The Fisher runner: plans on the first batch (which path each parameter takes), then accumulates
batch after batch (see :mod:`exitnet.torch._fisher` for the method)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor, nn

from . import _fisher_layers as _layers
from ._fisher_layers import (
    LABEL_MODES,
    ForwardFn,
    ParamsArg,
    _close,
    _default_forward,
    _FwdWrapper,
    _np32,
    _to_acc,
    _Site,
    _site_kind,
    _uses_batch_stats,
    factor_sums,
    feed_factors,
)
from ._fisher_result import FisherResult, _go


class _FisherRunner:
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

    # -- planning ------------------------------------------------------------------------------

    def plan(self, batch: Any) -> None:
        """First batch: decide the path of every parameter and build the Go accumulator."""
        x, y = self._prepare(batch)
        N = int(x.shape[0])
        if self.label_mode == "batched":
            logits = self._forward(x)
            labels = next(self._label_passes(logits, y))[0]
            grads = torch.autograd.grad(
                logits, list(self.cand.values()), self._grad_logits(logits, labels), allow_unused=True
            )
            for (n, p), g in zip(self.cand.items(), grads):
                if g is None and not self.explicit:
                    continue
                self.methods[n] = "batched" if g is not None else "unreached"
                self.layout[n] = tuple(p.shape)
            self._make_acc()
            return
        self._install()
        logits = self._forward(x)
        moved = [
            s for s in self.sites
            if s.calls == 1 and s.out is not None
            and (s.inp._version != s.vin or s.out._version != s.vout)
        ]
        if moved:
            # Their input or output is modified in place later in the forward (an inplace ReLU,
            # say): keep a copy of the input and hand the rest of the forward a clone of the
            # output, so the captured factors are the values the layer saw and produced.
            for s in moved:
                s.clone = True
            del logits
            logits = self._forward(x)
        labels = next(self._label_passes(logits, y))[0]
        gl = self._grad_logits(logits, labels)
        fired = [s for s in self.sites if s.calls == 1 and s.out is not None]
        plist = list(self.cand.values())
        grads = torch.autograd.grad(
            logits, [s.out for s in fired] + plist, gl, allow_unused=True
        )
        gouts = dict(zip(map(id, fired), grads[: len(fired)]))
        batched = {n: g for n, g in zip(self.cand, grads[len(fired) :])}
        for n, g in batched.items():
            if g is not None:
                self._check_finite(n, g)
        method: dict[str, str] = {}
        for s in self.sites:
            G = gouts.get(id(s))
            # The layer's leading dimension must be the batch: a layer that sees (N·T, d) rows
            # (a reshape folding time into the batch) or (T, N, d) cannot be split per sample
            # from its factors, although their sum still matches; such layers use rows.
            ok = (s.calls == 1 and s.out is not None and G is not None
                  and s.inp.ndim >= 2 and s.inp.shape[0] == N and s.out.shape[0] == N)
            sums = factor_sums(s, s.inp, G) if ok else {}
            if ok and self.backend_arg == "auto" and self.device.type == "cpu" and self.accumulator == "go":
                s.backend = self._faster_backend(s, s.inp, G)
            for role, n in s.names.items():
                b = batched[n]
                if b is None:
                    method[n] = "unreached"
                elif ok and _close(sums[role], b):
                    method[n] = s.kind if not (s.kind == "linear" and s.inp.ndim > 2) else "linear_seq"
                else:
                    method[n] = "rows"  # called twice, used outside its module, or shared
        sited = {n for s in self.sites for n in s.names.values()}
        for n in self.cand:
            if n not in sited:
                method[n] = "rows" if batched[n] is not None else "unreached"
        for n, p in self.cand.items():
            if method[n] == "unreached" and not self.explicit:
                continue
            self.methods[n] = method[n]
            self.layout[n] = tuple(p.shape)
        if not self.layout:
            raise ValueError("params: no parameter receives gradient from forward's logits")
        # Keep only the sites (and roles) whose parameters take the factor path.
        keep = []
        for s in self.sites:
            s.names = {r: n for r, n in s.names.items() if self.methods.get(n) in ("linear", "linear_seq", "conv2d", "norm")}
            s.clear()
            if s.names:
                keep.append(s)
        self.remove()
        self.sites = keep
        for s in self.sites:
            self.handles.append(s.module.register_forward_hook(self._make_hook(s)))
        for path, m in self.model.named_modules():
            if _uses_batch_stats(m):
                self.handles.append(m.register_forward_hook(self._make_bn_guard(path)))
        self.rows = [n for n, m in self.methods.items() if m == "rows"]
        if self.rows:
            path: dict[int, str] = {}
            for mp, p in self.model.named_parameters(remove_duplicate=False):
                path.setdefault(id(p), "model." + mp)
            self.row_paths = {n: path[id(self.cand[n])] for n in self.rows}
        self._make_acc()

    def _faster_backend(self, s: _Site, A: Tensor, G: Tensor) -> Optional[str]:
        """backend="auto" on the CPU: form this layer's factor products with Go and with torch on
        the first batch (into a scratch accumulator, five interleaved rounds, best wall time of
        each) and keep the faster. Only Linear (2-D input) and Conv2d have both paths."""
        if not (s.kind == "conv2d" or (s.kind == "linear" and A.ndim == 2)):
            return None
        params = dict(s.module.named_parameters(recurse=False))
        layout = {n: tuple(params[r].shape) for r, n in s.names.items()}
        scratch = _go().FisherAccumulator(layout, label_mode="empirical")
        best = {"go": float("inf"), "torch": float("inf")}
        try:
            # five rounds: the minimum of three still picked the slower path for two of the small
            # CNN's convs on a machine at load 25 (each round can be preempted)
            for _ in range(5):
                for b in best:
                    t0 = time.perf_counter()
                    feed_factors(scratch, b, s, A, G, None, None)
                    best[b] = min(best[b], time.perf_counter() - t0)
        finally:
            scratch.close()
        return min(best, key=best.__getitem__)

    def _make_acc(self) -> None:
        if self.accumulator == "torch":
            from ._fisher_accumulator import TorchFisherAccumulator

            self.acc = TorchFisherAccumulator(self.layout, self.label_mode, device=self.device)
        else:
            self.acc = _go().FisherAccumulator(self.layout, label_mode=self.label_mode)
        self._planned = True

    # -- accumulation --------------------------------------------------------------------------

    def step(self, batch: Any) -> int:
        """Accumulate one batch; returns its number of samples."""
        if not self._planned:
            raise RuntimeError("internal: step before plan")
        x, y = self._prepare(batch)
        N = int(x.shape[0])
        if self.label_mode == "batched":
            self._step_batched(x, y)
        else:
            self._step_per_sample(x, y)
        self.acc.add_samples(N)
        self.n_seen += N
        return N

    def _step_batched(self, x: Tensor, y: Tensor) -> None:
        logits = self._forward(x)
        labels = next(self._label_passes(logits, y))[0]
        names = [n for n in self.layout if self.methods[n] == "batched"]
        if not names:
            return
        B = x.shape[0]
        gl = self._grad_logits(logits, labels) / B  # mean-reduced loss
        grads = torch.autograd.grad(logits, [self.cand[n] for n in names], gl, allow_unused=True)
        for n, g in zip(names, grads):
            if g is not None:
                self._check_finite(n, g)
                self.acc.update_squared(n, _to_acc(self.acc, g.double() * g.double()), B)

    def _step_per_sample(self, x: Tensor, y: Optional[Tensor]) -> None:
        logits = self._forward(x)
        fired = []
        for s in self.sites:
            if s.calls > 1:
                raise RuntimeError(
                    f"model: module {s.path!r} ran {s.calls} times in this forward but once in the "
                    "first batch (data-dependent control flow); its per-sample factors are ambiguous"
                )
            if s.calls == 1 and s.out is not None:
                if s.inp.shape[0] != x.shape[0] or s.out.shape[0] != x.shape[0]:
                    raise RuntimeError(
                        f"model: {s.path!r} saw a leading dimension of {s.inp.shape[0]} for a batch "
                        f"of {x.shape[0]} samples, unlike in the first batch"
                    )
                if not s.clone and (s.inp._version != s.vin or s.out._version != s.vout):
                    raise RuntimeError(
                        f"model: the input or output of {s.path!r} was modified in place in this "
                        "forward but not in the first batch"
                    )
                fired.append(s)
        passes = list(self._label_passes(logits, y))
        # With several weighted label passes (exact mode), a Linear layer's per-sample gradient
        # g_nc a_nᵀ is rank one and a_n does not depend on the class, so
        #     Σ_c p_nc (g_nc a_nᵀ)² = (Σ_c p_nc g_nc²) (a_n²)ᵀ = H_n (a_n²)ᵀ:
        # H is summed over the passes in torch and Go runs one GEMM per layer instead of C.
        fold = {id(s): None for s in fired if s.kind == "linear" and s.inp.ndim == 2} if len(passes) > 1 else {}
        H: dict[int, Tensor] = {}
        for i, (labels, w_t, w_np) in enumerate(passes):
            last = i == len(passes) - 1
            gl = self._grad_logits(logits, labels)
            if fired:
                grads = torch.autograd.grad(
                    logits, [s.out for s in fired], gl, retain_graph=not last, allow_unused=True
                )
                for s, G in zip(fired, grads):
                    if G is None:
                        continue
                    if id(s) in fold:
                        h = G * G
                        if w_t is not None:
                            h = h * w_t.to(h.dtype).unsqueeze(1)
                        H[id(s)] = h if id(s) not in H else H[id(s)].add_(h)
                    else:
                        feed_factors(self.acc, s.backend or self.backend, s, s.inp, G, w_t, w_np)
            if self.rows:
                self._feed_rows(x, labels, w_np)
        for s in fired:
            h = H.get(id(s))
            if h is not None:
                # update_linear squares its G: hand it √H (exact up to one rounding).
                feed_factors(self.acc, s.backend or self.backend, s, s.inp, h.sqrt_(), None, None)
        for s in self.sites:
            s.clear()

    def _check_finite(self, name: str, t: Tensor) -> None:
        if not torch.isfinite(t).all():
            raise ValueError(f"gradients: NaN or Inf in the gradient of {name!r}")

    def _feed_rows(self, x: Tensor, labels: Tensor, w_np: Optional[np.ndarray]) -> None:
        from torch.func import functional_call, grad, vmap

        wrapper = _FwdWrapper(self.model, self.forward)
        path = self.row_paths
        primal = {path[n]: self.cand[n].detach() for n in self.rows}

        def loss(pr: dict[str, Tensor], xn: Tensor, yn: Tensor) -> Tensor:
            z = functional_call(wrapper, pr, (xn.unsqueeze(0),))
            return -torch.log_softmax(z, dim=-1)[0].gather(0, yn.reshape(1)).sum()

        # Chunk the samples so that at most ~_layers._ROWS_BUDGET gradient values exist at once.
        P = sum(self.cand[n].numel() for n in self.rows)
        step = max(1, min(x.shape[0], _layers._ROWS_BUDGET // max(P, 1)))
        for a in range(0, x.shape[0], step):
            b = min(a + step, x.shape[0])
            try:
                g = vmap(grad(loss), in_dims=(None, 0, 0))(primal, x[a:b], labels[a:b])
            except Exception as e:  # torch.func cannot trace some models
                raise RuntimeError(
                    f"parameters {self.rows} need per-sample gradient rows from torch.func.vmap, "
                    f"which failed on this model: {e}"
                ) from e
            w = None if w_np is None else np.ascontiguousarray(w_np[a:b])
            for n in self.rows:
                r = g[path[n]].reshape(b - a, -1)
                self._check_finite(n, r)
                self.acc.update_rows(_to_acc(self.acc, r), param=n, weights=w)
            del g

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
