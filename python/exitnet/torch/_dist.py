"""Data-parallel helpers over ``torch.distributed`` (any backend; tested with gloo).

Training with W ranks: every rank sees the same shuffled order, takes its strided share of each
global minibatch, and scales its loss by (local rows / global rows); summing the gradients over ranks
(:func:`sum_gradients`) then gives exactly the single-process gradient of the global minibatch. The
diagonal Fisher is a mean over samples, so partial Fishers merge exactly from (sum, count) pairs:
:func:`all_reduce_fisher` all-reduces ``F_r · n_r`` and ``n_r`` and divides.

Nothing here runs when ``torch.distributed`` is not initialised (or the world has one rank).
"""

from __future__ import annotations

from typing import Iterable, Mapping, MutableMapping

import torch
import torch.distributed as dist

__all__ = [
    "is_distributed",
    "rank_and_world",
    "sum_gradients",
    "broadcast_state",
    "all_reduce_fisher",
    "all_reduce_sums",
]


def is_distributed() -> bool:
    """True when torch.distributed is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when not distributed."""
    if not is_distributed():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def sum_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """All-reduce (sum) the ``.grad`` of every parameter that requires gradients.

    Parameters without a gradient on this rank get a zero gradient first, so every rank joins
    the same collectives in the same order.
    """
    if not is_distributed():
        return
    ps = [p for p in params if p.requires_grad]
    for p in ps:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if not ps:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in ps])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    off = 0
    for p in ps:
        n = p.numel()
        p.grad.copy_(flat[off : off + n].view_as(p.grad))
        off += n


def broadcast_state(module: torch.nn.Module, src: int = 0) -> None:
    """Broadcast every parameter and buffer (BatchNorm running statistics) from rank ``src``."""
    if not is_distributed():
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=src)


def all_reduce_sums(
    sums: MutableMapping[str, torch.Tensor], count: float
) -> tuple[MutableMapping[str, torch.Tensor], float]:
    """All-reduce (sum) a mapping of accumulator sums and its sample count, in sorted-name order.

    This is the merge of :class:`exitnet.fisher.FisherAccumulator` partial states
    (``state()`` → all-reduce → ``load_state(sums, count)``).
    """
    if not is_distributed():
        return sums, count
    names = sorted(sums)
    out = {}
    for n in names:
        t = sums[n].detach().clone().to(torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        out[n] = t.to(sums[n].dtype)
    c = torch.tensor([float(count)], dtype=torch.float64)
    dist.all_reduce(c, op=dist.ReduceOp.SUM)
    return out, float(c.item())


def all_reduce_fisher(fisher: Mapping[str, torch.Tensor], n_samples: int) -> tuple[dict, int]:
    """Merge per-rank mean Fishers into the Fisher of all ranks' samples.

    F = Σ_r n_r F_r / Σ_r n_r, computed in float64. Returns ``(fisher dict, total samples)``; the
    identity when not distributed.
    """
    if not is_distributed():
        return dict(fisher), int(n_samples)
    sums = {k: v.detach().to(torch.float64) * float(n_samples) for k, v in fisher.items()}
    merged, total = all_reduce_sums(sums, float(n_samples))
    if total <= 0:
        raise ValueError("fisher: no samples on any rank")
    return (
        {k: (merged[k] / total).to(fisher[k].dtype) for k in fisher},
        int(round(total)),
    )
