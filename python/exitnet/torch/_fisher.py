"""Exact per-sample diagonal Fisher of a PyTorch model, accumulated by exitnet's Go kernels.

The diagonal Fisher of the parameters θ for the model's (exit's) predictive distribution is the
**mean over samples of squared per-sample gradients**::

    F_i = (1/N) Σ_n Σ_c q(c | x_n) · (∂/∂θ_i log p(c | x_n; θ))²

where the label distribution q depends on the label mode:

``exact``      q(c|x) = p(c|x): every class, weighted by the model's probability (the default; the
               expectation is computed exactly with C backward passes per batch).
``sampled``    one label per sample drawn from p(·|x) (the Monte Carlo "true" Fisher) by Go's
               ``exitnet.fisher.sample_labels(logits, seed, row_offset=r)`` with r the sample's
               position in the stream: deterministic, and independent of the batching.
``argmax``     q puts all its mass on the predicted class.
``empirical``  q puts all its mass on the true label y_n.
``batched``    not a per-sample Fisher: the square of the minibatch gradient of the **mean**-reduced
               loss with the true labels, m_b = (1/B) Σ_{n∈b} g_n, averaged over minibatches weighted
               by their size, F_batched = Σ_b B_b m_b² / Σ_b B_b. This is what Avalanche, PyCIL and
               FACIL compute; near convergence it is about F/B (B the batch size), so an EWC λ tuned
               for it is about B times too large for the per-sample Fisher. Kept only for comparison.

How the per-sample gradients are obtained, without materialising an N×P gradient matrix (the Linear
and Go conv paths never form a per-sample gradient of more than one sample per thread; the torch
conv backend and the vmap path hold bounded chunks of samples):

* ``nn.Linear`` (2-D input): the forward hook keeps the input A (N×in); the per-sample output
  gradient G (N×out) comes from one backward pass of the **sum**-reduced loss (so G carries no 1/B).
  Go accumulates S_W += (G∘G)ᵀ(A∘A) (one GEMM) and S_b += Σ_n G_n∘G_n. A Linear applied to inputs
  with extra dimensions (N, T, in) is summed over T on the torch side (Σ_t g_t a_tᵀ, squared).
* ``nn.Conv2d``: input activations and output gradients go to Go with the geometry (stride, padding,
  dilation, groups); non-zero padding modes and asymmetric ``padding="same"`` are applied to the
  input first. With ``backend="torch"`` the products are formed by torch on the parameters' device
  instead (one matmul per Linear; per-sample conv weight gradients from a grouped
  ``convolution_backward`` over a bounded chunk of samples) and only the sums go to Go.
* ``exact`` mode runs C backward passes per batch (one per class, output gradient p − e_c); for a
  Linear layer on 2-D inputs the passes are folded before the GEMM, since
  Σ_c p_c (g_c aᵀ)² = (Σ_c p_c g_c²)(a²)ᵀ, so Go runs one GEMM per layer, not C.
* BatchNorm (eval mode, running statistics), LayerNorm, GroupNorm affine parameters: the per-sample
  γ and β gradients are Σ_positions g·x̂ and Σ_positions g, squared and summed on the torch side.
* Anything else (Embedding, Conv1d, custom parameters, a module called twice in one forward, weights
  shared between modules or used outside their module): per-sample gradient rows from
  ``torch.func.vmap(torch.func.grad(...))`` of the whole forward. Shared and reused parameters are
  therefore **handled correctly** (not refused), at the cost of vmap speed; ``FisherResult.methods``
  says which path each parameter took.

Layers must see the batch as their leading dimension with samples independent of each other (eval
mode BatchNorm with running statistics is fine; BatchNorm without running statistics is refused). A
layer whose leading dimension is not N (time folded into the batch, sequence-first layouts) takes the
vmap path; one whose leading dimension happens to equal N by coincidence in the first batch cannot be
told apart, and cross-sample mixing inside a model (attention over the batch) is not detected.

The first batch is used to plan: one extra forward/backward computes the ordinary batched gradient of
every parameter, finds which parameters receive gradient, which hooked modules fired exactly once,
and checks that the per-sample gradients from the layer factors sum to the batched gradient (a
parameter that also receives gradient from outside its module fails this check and is moved to the
vmap path).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Callable, Literal, Optional, Union

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["FisherResult", "fisher_diagonal", "fisher_for_exit", "LABEL_MODES"]

LabelMode = Literal["exact", "sampled", "argmax", "empirical", "batched"]
LABEL_MODES: tuple[str, ...] = ("exact", "sampled", "argmax", "empirical", "batched")

ForwardFn = Callable[[nn.Module, Tensor], Tensor]
ParamsArg = Union[None, Mapping[str, Tensor], Iterable[str], Iterable[tuple[str, Tensor]]]


_ROWS_BUDGET = 32 * 1024 * 1024  # per-sample gradient values held at once on the rows path
_CONV_BUDGET = 16 * 1024 * 1024  # per-sample conv weight gradient values at once (torch backend)


def _go():
    """The Go-backed accumulator module (imported lazily: loading it loads the shared library)."""
    from .. import fisher

    return fisher


# ----------------------------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------------------------


class FisherResult(Mapping):
    """Diagonal Fisher per parameter: a read-only mapping ``name -> Tensor`` (parameter shape,
    parameter dtype, on the parameters' device).

    Attributes
    ----------
    n_samples : int
        Number of samples averaged over (N).
    label_mode : str
        One of ``exact``, ``sampled``, ``argmax``, ``empirical``, ``batched``.
    granularity : str
        ``"per_sample"`` (mean of squared per-sample gradients) or ``"batched"``.
    normalisation : str
        ``"mean_over_samples"``: F = S / N with S the sum of (weighted) squared gradients.
    methods : dict[str, str]
        How each parameter's per-sample gradients were obtained: ``linear``, ``linear_seq``,
        ``conv2d``, ``norm``, ``rows`` (torch.func), ``batched`` or ``unreached`` (no gradient from
        this forward: its Fisher is zero).
    sums : dict[str, numpy.ndarray]
        The accumulator's float64 sums S (so results from chunks or ranks merge exactly).
    """

    def __init__(
        self,
        fishers: Mapping[str, Tensor],
        *,
        n_samples: int,
        label_mode: str,
        sums: Mapping[str, np.ndarray],
        methods: Optional[Mapping[str, str]] = None,
    ) -> None:
        self._f = dict(fishers)
        self.n_samples = int(n_samples)
        self.label_mode = str(label_mode)
        self.granularity = "batched" if label_mode == "batched" else "per_sample"
        self.normalisation = "mean_over_samples"
        self.sums = {k: np.array(v, dtype=np.float64, copy=True) for k, v in sums.items()}
        self.methods = dict(methods or {})

    def __getitem__(self, name: str) -> Tensor:
        return self._f[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._f)

    def __len__(self) -> int:
        return len(self._f)

    def to_dict(self) -> dict[str, Tensor]:
        """A plain ``dict`` of the Fisher tensors (name -> Tensor)."""
        return dict(self._f)

    def numpy(self) -> dict[str, np.ndarray]:
        """The Fishers as float32 numpy arrays on the CPU."""
        return {k: v.detach().to("cpu", torch.float32).numpy() for k, v in self._f.items()}

    def merge(self, other: "FisherResult") -> "FisherResult":
        """Combine two results over disjoint samples exactly (sums and counts add), e.g. two halves
        of a data set or two data-parallel ranks. Both must have the same parameters, shapes and
        label mode. Returns a new result; the merge runs in the Go accumulator."""
        if not isinstance(other, FisherResult):
            raise TypeError(f"other: expected a FisherResult, got {type(other).__name__}")
        if other.label_mode != self.label_mode:
            raise ValueError(
                f"other: label mode {other.label_mode!r} differs from {self.label_mode!r}"
            )
        if list(other.keys()) != list(self.keys()):
            raise ValueError(
                f"other: parameters {sorted(other.keys())} differ from {sorted(self.keys())}"
            )
        layout = {k: tuple(v.shape) for k, v in self._f.items()}
        for k, v in other.items():
            if tuple(v.shape) != layout[k]:
                raise ValueError(f"other: {k!r} has shape {tuple(v.shape)}, expected {layout[k]}")
        go = _go()
        with go.FisherAccumulator(layout, label_mode=self.label_mode) as a, go.FisherAccumulator(
            layout, label_mode=self.label_mode
        ) as b:
            a.load_state(self.sums, self.n_samples)
            b.load_state(other.sums, other.n_samples)
            a.merge(b)
            sums, count = a.state()
            f = a.compute()
        ref = self._f
        out = {k: torch.from_numpy(np.array(f[k], copy=True)).to(ref[k].device, ref[k].dtype) for k in ref}
        methods = {k: self.methods.get(k, "") for k in ref}
        for k, m in other.methods.items():
            if methods.get(k) != m:
                methods[k] = "mixed"
        return FisherResult(
            out, n_samples=count, label_mode=self.label_mode, sums=sums, methods=methods
        )

    def summary(self) -> list[dict[str, Any]]:
        """One row per parameter: name, shape, numel, mean, max, sum of its Fisher, and method."""
        rows = []
        for n, v in self._f.items():
            d = v.detach().double()
            rows.append({
                "name": n, "shape": tuple(v.shape), "numel": int(v.numel()),
                "mean": float(d.mean()) if v.numel() else 0.0,
                "max": float(d.max()) if v.numel() else 0.0,
                "sum": float(d.sum()), "method": self.methods.get(n, ""),
            })
        return rows

    def plot(self, ax: Any = None, stat: Literal["mean", "max", "sum"] = "mean") -> Any:
        """Bar chart (log scale) of one statistic of each parameter's Fisher; returns the Axes.

        Needs matplotlib (optional dependency)."""
        if stat not in ("mean", "max", "sum"):
            raise ValueError(f"stat: {stat!r} is not one of mean, max, sum")
        import matplotlib.pyplot as plt

        rows = self.summary()
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 0.25 * len(rows) + 1.2))
        vals = [max(r[stat], 1e-30) for r in rows]
        ax.barh(range(len(rows)), vals)
        ax.set_yticks(range(len(rows)), [r["name"] for r in rows])
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel(f"{stat} of diagonal Fisher ({self.label_mode}, N={self.n_samples})")
        return ax

    def __repr__(self) -> str:
        p = sum(v.numel() for v in self._f.values())
        return (
            f"FisherResult({len(self._f)} tensors, {p} values, n_samples={self.n_samples}, "
            f"label_mode={self.label_mode!r}, granularity={self.granularity!r})"
        )


# ----------------------------------------------------------------------------------------------
# Hooked layers
# ----------------------------------------------------------------------------------------------


class _Site:
    """One hooked module whose parameters are accumulated from layer factors."""

    __slots__ = ("path", "module", "kind", "names", "clone", "calls", "inp", "out", "vin", "vout")

    def __init__(self, path: str, module: nn.Module, kind: str, names: dict[str, str]) -> None:
        self.path = path
        self.module = module
        self.kind = kind  # "linear", "conv2d", "norm"
        self.names = names  # role ("weight"/"bias") -> Fisher name
        self.clone = False
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


# ----------------------------------------------------------------------------------------------
# The runner
# ----------------------------------------------------------------------------------------------


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
        self.active = False
        self.handles: list[Any] = []
        self.sites: list[_Site] = []
        self.rows: list[str] = []  # names accumulated through torch.func rows
        self.row_paths: dict[str, str] = {}
        self.methods: dict[str, str] = {}
        self.layout: dict[str, tuple[int, ...]] = {}
        self.acc = None
        self.batch_index = 0
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
            go = _go()
            if _has_row_offset(go.sample_labels):
                # Row r of the whole stream uses (seed, r): independent of how it is batched.
                lab = go.sample_labels(_np32(logits), seed=self.seed, row_offset=self.n_seen)
            else:
                lab = go.sample_labels(_np32(logits), self.seed + self.batch_index)
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
            sums = self._factor_sums(s, s.inp, G) if ok else {}
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

    def _make_acc(self) -> None:
        self.acc = _go().FisherAccumulator(self.layout, label_mode=self.label_mode)
        self._planned = True

    def _factor_sums(self, s: _Site, A: Tensor, G: Tensor) -> dict[str, Tensor]:
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
        self.batch_index += 1
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
                self.acc.update_squared(n, _np32(g.double() * g.double()), B)

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
                        self._feed(s, s.inp, G, w_t, w_np)
            if self.rows:
                self._feed_rows(x, labels, w_np)
        for s in fired:
            h = H.get(id(s))
            if h is not None:
                # update_linear squares its G: hand it √H (exact up to one rounding).
                self._feed(s, s.inp, h.sqrt_(), None, None)
        for s in self.sites:
            s.clear()

    def _check_finite(self, name: str, t: Tensor) -> None:
        if not torch.isfinite(t).all():
            raise ValueError(f"gradients: NaN or Inf in the gradient of {name!r}")

    def _feed(self, s: _Site, A: Tensor, G: Tensor, w_t: Optional[Tensor], w_np: Optional[np.ndarray]) -> None:
        m = s.module
        wn, bn = s.names.get("weight"), s.names.get("bias")
        # Non-finite factors or sums are refused by the Go accumulator, naming the parameter.
        if s.kind == "linear" and A.ndim == 2 and self.backend == "torch":
            N = int(G.shape[0])
            G2 = G * G
            if w_t is not None:
                G2 = G2 * w_t.to(G2.dtype).unsqueeze(1)
            if wn is not None:
                self.acc.update_squared(wn, _np32(G2.t() @ (A * A)), N)  # (w∘G∘G)ᵀ(A∘A)
            if bn is not None:
                self.acc.update_squared(bn, _np32(G2.sum(0, dtype=torch.float64)), N)
        elif s.kind == "linear" and A.ndim == 2:
            if wn is not None:
                self.acc.update_linear(wn, bn, _np32(A), _np32(G), weights=w_np)
            else:
                self.acc.update_squared(bn, _np32(_wsum_sq(G, w_t)), int(G.shape[0]))
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
                self.acc.update_squared(wn, _np32(tot), N)
            if bn is not None:
                self.acc.update_squared(bn, _np32(_wsum_sq(G3.sum(1), w_t)), N)
        elif s.kind == "conv2d" and self.backend == "torch":
            N = int(G.shape[0])
            if wn is not None:
                self.acc.update_squared(wn, _np32(_conv_weight_sq_torch(m, A, G, w_t)), N)
            if bn is not None:
                self.acc.update_squared(bn, _np32(_wsum_sq(G.sum((2, 3)), w_t)), N)
        elif s.kind == "conv2d":
            xp, stride, pad, dil, groups = _conv_geometry(m, A)
            if wn is not None:
                self.acc.update_conv2d(
                    wn, bn, _np32(xp), _np32(G), stride=stride, padding=pad, dilation=dil,
                    groups=groups, weights=w_np,
                )
            else:
                self.acc.update_squared(bn, _np32(_wsum_sq(G.sum((2, 3)), w_t)), int(G.shape[0]))
        else:
            gw, gb = _norm_persample(m, A, G)
            if wn is not None:
                self.acc.update_squared(wn, _np32(_wsum_sq(gw, w_t)), int(G.shape[0]))
            if bn is not None:
                self.acc.update_squared(bn, _np32(_wsum_sq(gb, w_t)), int(G.shape[0]))

    def _feed_rows(self, x: Tensor, labels: Tensor, w_np: Optional[np.ndarray]) -> None:
        from torch.func import functional_call, grad, vmap

        wrapper = _FwdWrapper(self.model, self.forward)
        path = self.row_paths
        primal = {path[n]: self.cand[n].detach() for n in self.rows}

        def loss(pr: dict[str, Tensor], xn: Tensor, yn: Tensor) -> Tensor:
            z = functional_call(wrapper, pr, (xn.unsqueeze(0),))
            return -torch.log_softmax(z, dim=-1)[0].gather(0, yn.reshape(1)).sum()

        # Chunk the samples so that at most ~_ROWS_BUDGET gradient values exist at once.
        P = sum(self.cand[n].numel() for n in self.rows)
        step = max(1, min(x.shape[0], _ROWS_BUDGET // max(P, 1)))
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
                self.acc.update_rows(_np32(r), param=n, weights=w)
            del g

    def result(self) -> FisherResult:
        if self.n_seen == 0:
            raise ValueError("batches: no samples (the iterable was empty)")
        f = self.acc.compute()
        sums, count = self.acc.state()
        out = {}
        for n in self.layout:
            p = self.cand[n]
            out[n] = torch.from_numpy(np.array(f[n], copy=True)).reshape(p.shape).to(p.device, p.dtype)
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


def _has_row_offset(fn: Callable) -> bool:
    import inspect

    try:
        return "row_offset" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


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


# ----------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------


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


def fisher_diagonal(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    forward: Optional[ForwardFn] = None,
    params: ParamsArg = None,
    label_mode: LabelMode = "exact",
    max_samples: Optional[int] = None,
    seed: int = 0,
    progress: bool = False,
    backend: Literal["auto", "go", "torch"] = "auto",
) -> FisherResult:
    r"""Exact diagonal Fisher of ``model``'s (or one exit's) predictive distribution.

    .. math::

        F_i = \frac{1}{N} \sum_n \sum_c q(c \mid x_n)\,
              \Big(\frac{\partial}{\partial\theta_i} \log p(c \mid x_n;\theta)\Big)^2

    computed from per-sample gradients (never a squared minibatch gradient, except in the
    ``batched`` comparison mode), in ``eval()`` mode, with one forward and one backward of a
    sum-reduced loss per batch (C backwards per batch in ``exact`` mode).

    Parameters
    ----------
    model : nn.Module
        The network. Its train/eval mode (of every submodule) and the parameters' ``requires_grad``
        flags are restored afterwards; ``.grad`` fields are never touched.
    batches : iterable
        Yields ``(x, y, ...)`` tuples (a ``DataLoader``) or bare ``x`` tensors (labels are only
        needed by ``empirical`` and ``batched``). Apply no augmentation.
    forward : callable ``(model, x) -> logits``, optional
        The logits (N, C) of the exit whose Fisher is wanted. Default: ``model(x)``.
    params : mapping name -> Parameter, iterable of names, or iterable of (name, Parameter), optional
        The parameters exit j depends on; the result is keyed by these names. Default: every
        parameter with ``requires_grad`` that receives gradient from ``forward``'s logits.
        Explicitly given parameters that receive no gradient get a zero Fisher.
    label_mode : {"exact", "sampled", "argmax", "empirical", "batched"}
        See the module docstring. ``exact`` costs C backward passes per batch (C classes); with
        many classes prefer ``sampled``. ``sampled`` draws the labels of batch b (0-based) with
        ``exitnet.fisher.sample_labels(logits, seed + b)``.
    max_samples : int, optional
        Stop after this many samples (the last batch is truncated).
    seed : int
        Seed of the ``sampled`` labels.
    progress : bool
        Show a tqdm progress bar.
    backend : {"auto", "go", "torch"}
        Where the Linear and Conv2d factor products are formed (all are exact; the float64 sums
        and counts always live in the Go accumulator). ``"go"``: activations and output gradients
        go to Go (``update_linear``: one GEMM (G∘G)ᵀ(A∘A); ``update_conv2d``: im2col + GEMM per
        sample, memory of one sample's gradient per thread); on a GPU they are copied to the CPU
        first. ``"torch"``: the same products on the parameters' device (Linear: one matmul;
        Conv2d: the per-sample weight gradients of a chunk of samples from one grouped
        ``convolution_backward``, squared and summed, at most ``_CONV_BUDGET`` values at once),
        then ``update_squared``. ``"auto"`` (default): ``"go"`` when the parameters are on the
        CPU, ``"torch"`` otherwise. Measured speeds: ``bench/bench_fisher_torch.py``.

    Returns
    -------
    FisherResult
        Mapping name -> Fisher tensor, with ``n_samples``, ``label_mode``, ``granularity``,
        ``methods`` and ``sums``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> data = [(torch.randn(16, 4), torch.randint(0, 3, (16,)))]
    >>> F = fisher_diagonal(net, data, label_mode="exact")   # doctest: +SKIP
    >>> F["0.weight"].shape                                    # doctest: +SKIP
    torch.Size([8, 4])
    """
    if max_samples is not None:
        if isinstance(max_samples, bool) or not isinstance(max_samples, (int, np.integer)) or max_samples < 1:
            raise ValueError(f"max_samples: expected a positive int, got {max_samples!r}")
    if isinstance(batches, (Tensor, np.ndarray)):
        raise TypeError("batches: expected an iterable of (x, y) batches, got a single array")
    runner = _FisherRunner(model, forward, params, label_mode, seed, backend)
    it = iter(batches)
    if progress:
        try:
            from tqdm.auto import tqdm

            total = len(batches) if hasattr(batches, "__len__") else None  # type: ignore[arg-type]
            it = iter(tqdm(it, total=total, desc=f"fisher ({label_mode})", unit="batch"))
        except ImportError:  # pragma: no cover
            pass
    try:
        with _ModeGuard(model, runner.cand.values()):
            first = next(it, None)
            if first is None:
                raise ValueError("batches: no samples (the iterable was empty)")
            remaining = None if max_samples is None else int(max_samples)
            for batch in itertools.chain([first], it):
                if remaining is not None:
                    batch = _truncate(batch, remaining)
                if not runner._planned:
                    runner.plan(batch)
                n = runner.step(batch)
                if remaining is not None:
                    remaining -= n
                    if remaining <= 0:
                        break
            return runner.result()
    finally:
        runner.close()


def _truncate(batch: Any, k: int) -> Any:
    if isinstance(batch, Tensor):
        return batch[:k]
    if isinstance(batch, (tuple, list)):
        return type(batch)(b[:k] if isinstance(b, Tensor) else b for b in batch)
    return batch


def fisher_for_exit(
    net: nn.Module,
    exit_index: int,
    loader: Iterable[Any],
    *,
    params: ParamsArg = None,
    label_mode: LabelMode = "exact",
    max_samples: Optional[int] = None,
    seed: int = 0,
    progress: bool = False,
    backend: Literal["auto", "go", "torch"] = "auto",
) -> FisherResult:
    """Diagonal Fisher of exit ``exit_index`` over the parameters that exit depends on.

    Works with any network exposing either ``exit_logits(x, k)`` and ``exit_parameters(k)``, or
    exitnet's :class:`~exitnet.torch.EarlyExitNet` interface (``forward_exit(x, k)`` or
    ``forward_exits(x, upto=k)``, and ``parameters_for_exit(k)``). Otherwise call
    :func:`fisher_diagonal` with ``forward=`` and ``params=``.
    """
    if isinstance(exit_index, bool) or not isinstance(exit_index, (int, np.integer)):
        raise TypeError(f"exit_index: expected an int, got {type(exit_index).__name__}")
    k = int(exit_index)
    if hasattr(net, "exit_logits"):
        fwd: ForwardFn = lambda m, x: m.exit_logits(x, k)  # noqa: E731
    elif hasattr(net, "forward_exit"):
        fwd = lambda m, x: m.forward_exit(x, k)  # noqa: E731
    elif hasattr(net, "forward_exits"):
        fwd = lambda m, x: m.forward_exits(x, upto=k)[k]  # noqa: E731
    else:
        raise TypeError(
            "net: needs exit_logits(x, k) or forward_exit(x, k) / forward_exits(x, upto=k); "
            "use fisher_diagonal(model, batches, forward=..., params=...) instead"
        )
    if params is None:
        if hasattr(net, "exit_parameters"):
            params = dict(net.exit_parameters(k))
        elif hasattr(net, "parameters_for_exit"):
            params = dict(net.parameters_for_exit(k))
        else:
            raise TypeError("net: needs exit_parameters(k) or parameters_for_exit(k), or pass params=")
    return fisher_diagonal(
        net, loader, forward=fwd, params=params, label_mode=label_mode,
        max_samples=max_samples, seed=seed, progress=progress, backend=backend,
    )
