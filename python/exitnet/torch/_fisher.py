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
from collections.abc import Iterable
from typing import Any, Literal, Optional

import numpy as np
from torch import Tensor, nn

from ._fisher_layers import LABEL_MODES, ForwardFn, LabelMode, ParamsArg
from ._fisher_result import FisherResult
from ._fisher_runner import _FisherRunner, _ModeGuard, _truncate

__all__ = ["FisherResult", "fisher_diagonal", "fisher_for_exit", "LABEL_MODES"]


# ----------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------


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
    accumulator: Literal["auto", "go", "torch"] = "auto",
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
        Where the Linear and Conv2d factor products are formed (all are exact; where the float64
        sums live is ``accumulator``'s choice). ``"go"``: activations and output gradients
        go to Go (``update_linear``: one GEMM (G∘G)ᵀ(A∘A); ``update_conv2d``: im2col + GEMM per
        sample, memory of one sample's gradient per thread); on a GPU they are copied to the CPU
        first. ``"torch"``: the same products on the parameters' device (Linear: one matmul;
        Conv2d: the per-sample weight gradients of a chunk of samples from one grouped
        ``convolution_backward``, squared and summed, at most ``_CONV_BUDGET`` values at once),
        then ``update_squared``. ``"auto"`` (default): on the CPU, per layer the faster of the two,
        measured on the first batch (each Linear and Conv2d layer's products are formed both ways
        three times into a scratch accumulator; the best wall times decide); ``"torch"`` when the
        parameters are on a GPU. Measured speeds: ``bench/bench_fisher_torch.py``.
    accumulator : {"auto", "go", "torch"}
        Where the float64 sums live: Go's accumulator (host memory), or
        :class:`~exitnet.torch._fisher_accumulator.TorchFisherAccumulator` on the parameters'
        device (products formed by torch; nothing P-sized crosses to the host per batch).
        ``"auto"`` (default): Go for CPU parameters, torch otherwise.

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
    runner = _FisherRunner(model, forward, params, label_mode, seed, backend, accumulator)
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
    accumulator: Literal["auto", "go", "torch"] = "auto",
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
        accumulator=accumulator,
    )
