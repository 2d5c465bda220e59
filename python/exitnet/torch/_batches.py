"""Minibatches of the trainer's data: (x, y, ids) from torch Datasets, in a seeded order."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset


def as_dataset(ds: Any, name: str) -> Optional[Dataset]:
    """``ds`` checked to be a non-empty sized torch Dataset (None passes through)."""
    if ds is None:
        return None
    if not isinstance(ds, Dataset):
        raise TypeError(f"{name}: expected a torch Dataset, got {type(ds).__name__}")
    try:
        n = len(ds)
    except TypeError:
        raise TypeError(f"{name}: the dataset must have a length") from None
    if n == 0:
        raise ValueError(f"{name}: the dataset is empty")
    return ds


def iter_batches(ds: Dataset, bs: int, perm: Optional[torch.Tensor] = None):
    """Yield (x, y, ids) batches; ids = the third tensor of the dataset or the row index."""
    n = len(ds)
    order = perm if perm is not None else torch.arange(n)
    if isinstance(ds, TensorDataset):
        ts = ds.tensors
        for s in range(0, len(order), bs):
            idx = order[s : s + bs]
            ids = ts[2][idx] if len(ts) > 2 else idx
            yield ts[0][idx], ts[1][idx], ids
    else:
        # generic datasets: DataLoader in this process (num_workers=0: a forked worker must
        # never call into the Go library)
        sub = torch.utils.data.Subset(ds, order.tolist())
        pos = 0
        for batch in DataLoader(sub, batch_size=bs, shuffle=False, num_workers=0):
            x, y = batch[0], batch[1]
            ids = batch[2] if len(batch) > 2 else order[pos : pos + len(x)]
            pos += len(x)
            yield x, y, ids


def stage_generator(seed: int, stage: int, salt: int = 0) -> torch.Generator:
    """A CPU generator seeded from (seed, stage, salt): resumed runs repeat uninterrupted ones."""
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + stage * 7919 + salt * 104_729) % (2**62))
    return g


def subset_batches(sub: torch.utils.data.Subset, bs: int):
    """(x, y, ids) batches of a Subset in its index order (fast path for TensorDatasets)."""
    base = sub.dataset
    idx = torch.as_tensor(sub.indices, dtype=torch.long)
    if len(idx) == 0:
        return
    if isinstance(base, TensorDataset):
        yield from iter_batches(base, bs, idx)
    else:
        yield from iter_batches(sub, bs)
