"""Minibatches of the trainer's data: (x, y, ids) from torch Datasets in a seeded order, or from the
user's own DataLoaders (:class:`TrainData`, :class:`EvalData`).

A Dataset is batched by the trainer (seeded order, strided share per rank); its ids are the third
field of a sample or the row index. A DataLoader is iterated as it is (its sampler, augmentation
and collate are the user's); it carries ids only if its batches have a third field.
"""

from __future__ import annotations

import random
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset


def as_dataset(ds: Any, name: str) -> Optional[Dataset]:
    """``ds`` checked to be a non-empty sized torch Dataset (None passes through)."""
    if ds is None:
        return None
    if not isinstance(ds, Dataset):
        raise TypeError(f"{name}: expected a torch Dataset or DataLoader, got {type(ds).__name__}")
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


class _NoRngSideEffects:
    """Restores torch's, numpy's and Python's global RNGs: probing the data must not change what a
    seeded run draws afterwards (checkpoint resume stays bit-identical)."""

    def __enter__(self) -> None:
        self.t = torch.random.get_rng_state()
        self.n = np.random.get_state()
        self.p = random.getstate()

    def __exit__(self, *exc: Any) -> None:
        torch.random.set_rng_state(self.t)
        np.random.set_state(self.n)
        random.setstate(self.p)


def _unpack(batch: Any, name: str) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    if isinstance(batch, dict):
        raise TypeError(f"{name}: batches must be (x, y) or (x, y, ids) sequences, got a dict")
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise TypeError(f"{name}: batches must be (x, y) or (x, y, ids), got {type(batch).__name__}")
    ids = batch[2] if len(batch) > 2 else None
    return batch[0], batch[1], ids


def _randomised(ds: Dataset) -> bool:
    """True if fetching the same samples twice gives different inputs (random augmentation)."""
    if isinstance(ds, TensorDataset):
        return False
    n = min(len(ds), 2)
    with _NoRngSideEffects():
        for i in range(n):
            a, b = ds[i][0], ds[i][0]
            if not (torch.is_tensor(a) and torch.is_tensor(b)) or a.shape != b.shape or not torch.equal(a, b):
                return True
    return False


class TrainData:
    """The training split: a Dataset batched by the trainer, or the user's DataLoader.

    Attributes: ``loader`` (the DataLoader or None), ``dataset`` (the Dataset, or the loader's
    map-style dataset, or None), ``has_ids`` (samples carry ids that key recorded targets),
    ``augmented`` (the same sample gives different inputs on two fetches: random augmentation;
    ``None`` when it cannot be probed), ``n`` (samples, None if unknown).
    """

    def __init__(self, src: Any, name: str = "train") -> None:
        if isinstance(src, DataLoader):
            self.loader: Optional[DataLoader] = src
            ds = src.dataset
            self.dataset = ds if not isinstance(ds, IterableDataset) else None
            with _NoRngSideEffects():
                first = next(iter(src), None)
            if first is None:
                raise ValueError(f"{name}: the DataLoader yields no batches")
            x, _, ids = _unpack(first, name)
            self.has_ids = ids is not None
            self.example = x[:1]
            self.augmented = _randomised(self.dataset) if self.dataset is not None else None
            try:
                self.n: Optional[int] = len(self.dataset) if self.dataset is not None else None
            except TypeError:
                self.n = None
        else:
            self.loader = None
            self.dataset = as_dataset(src, name)
            self.has_ids = True  # the third field, or the row index the trainer batches by
            self.example = self.dataset[0][0].unsqueeze(0)
            self.augmented = _randomised(self.dataset)
            self.n = len(self.dataset)

    def num_batches(self, batch_size: int) -> Optional[int]:
        if self.loader is not None:
            try:
                return len(self.loader)
            except TypeError:
                return None
        return -(-self.n // batch_size)

    def epoch(self, perm: Optional[torch.Tensor], batch_size: int, rank: int, world: int) -> Iterator[tuple]:
        """One epoch of (x, y, ids or None, scale) for this rank; scale = the local share of the
        global minibatch mean (summed gradients across ranks then equal the global mean's)."""
        if self.loader is None:
            n = self.n
            for s in range(0, n, batch_size):
                gidx = perm[s : s + batch_size]
                lidx = gidx[rank::world]
                if len(lidx) == 0:
                    yield None, None, None, 0.0
                    continue
                x, y, ids = next(iter_batches(self.dataset, len(lidx), lidx))
                yield x, y, ids, len(lidx) / len(gidx)
        else:
            # The user's sampler shards across ranks (DistributedSampler); equal local batches.
            for batch in self.loader:
                x, y, ids = _unpack(batch, "train")
                yield x, y, ids, 1.0 / world

    def ordered(self, batch_size: int) -> Iterator[tuple]:
        """(x, y, ids) over the whole split once, in the trainer's fixed order (Dataset) or the
        loader's order (DataLoader): what target recording iterates."""
        if self.loader is None:
            yield from iter_batches(self.dataset, batch_size)
        else:
            for batch in self.loader:
                yield _unpack(batch, "train")

    def fisher_batches(self, indices: Optional[torch.Tensor], batch_size: int, limit: Optional[int]) -> Iterator[tuple]:
        """Batches of the Fisher pass: the seeded subset ``indices`` of the dataset (map-style),
        or the loader's first ``limit`` samples (iterable datasets)."""
        if self.dataset is not None:
            yield from subset_batches(torch.utils.data.Subset(self.dataset, indices.tolist()), batch_size)
            return
        seen = 0
        for batch in self.loader:
            x, y, ids = _unpack(batch, "train")
            if limit is not None and seen + len(x) > limit:
                x, y = x[: limit - seen], y[: limit - seen]
            seen += len(x)
            yield x, y, ids
            if limit is not None and seen >= limit:
                return


def eval_batches(src: Any, batch_size: int) -> Iterator[tuple]:
    """(x, y, ids) of an evaluation split (Dataset in order, or the user's DataLoader)."""
    if isinstance(src, DataLoader):
        for batch in src:
            yield _unpack(batch, "val")
    else:
        yield from iter_batches(src, batch_size)


def as_eval(src: Any, name: str) -> Any:
    """A validation/test split: a non-empty Dataset, a DataLoader, or None."""
    if src is None or isinstance(src, DataLoader):
        return src
    return as_dataset(src, name)
