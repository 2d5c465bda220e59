"""The :class:`Splits` of :mod:`exitnet.data` and how they are carved: seeded
validation split and subsets, standardisation, torch TensorDatasets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

# torch is an optional extra: imported where a split is built, not when this module loads
if TYPE_CHECKING:  # pragma: no cover
    from torch.utils.data import TensorDataset


@dataclass
class Splits:
    """Train / validation / test splits of one data set.

    Attributes
    ----------
    train, val, test : TensorDataset
        ``(x, y, ids)`` tensors; ``val`` may be empty when ``val_fraction=0``.
    num_classes : int
    input_shape : tuple
        (C, H, W) of one sample.
    class_names : tuple of str
    mean, std : float
        Standardisation applied to every split (computed on ``train``).
    name : str
    """

    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    num_classes: int
    input_shape: tuple[int, ...]
    class_names: tuple[str, ...] = ()
    mean: float = 0.0
    std: float = 1.0
    name: str = ""
    extra: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"Splits({self.name!r}, train={len(self.train)}, val={len(self.val)}, "
            f"test={len(self.test)}, num_classes={self.num_classes}, input_shape={self.input_shape})"
        )


# --------------------------------------------------------------------------------------------
# splitting and tensors


def _check_fraction(name: str, v: float) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a number in [0, 1), got {v!r}") from None
    if not 0.0 <= f < 1.0:
        raise ValueError(f"{name}: must be in [0, 1), got {v!r}")
    return f


def _check_subset(name: str, v: Optional[int]) -> Optional[int]:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name}: expected a positive int or None, got {v!r}")
    return int(v)


def _subset(rng: np.random.Generator, n: int, k: Optional[int]) -> np.ndarray:
    if k is None or k >= n:
        return np.arange(n)
    return np.sort(rng.permutation(n)[:k])


def _to_ds(x: np.ndarray, y: np.ndarray, ids: np.ndarray, mean: float, std: float) -> TensorDataset:
    import torch
    from torch.utils.data import TensorDataset

    xt = torch.from_numpy(((x.astype(np.float32) - mean) / std).astype(np.float32))
    return TensorDataset(
        xt.contiguous(), torch.from_numpy(y.astype(np.int64)), torch.from_numpy(ids.astype(np.int64))
    )


def _make_splits(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    num_classes: int,
    class_names: Sequence[str],
    *,
    val_fraction: float,
    seed: int,
    train_subset: Optional[int],
    test_subset: Optional[int],
    scale: float,
) -> Splits:
    val_fraction = _check_fraction("val_fraction", val_fraction)
    train_subset = _check_subset("train_subset", train_subset)
    test_subset = _check_subset("test_subset", test_subset)
    if len(x_train) == 0:
        raise ValueError(f"{name}: the training data is empty")
    if len(x_test) == 0:
        raise ValueError(f"{name}: the test data is empty")
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(
            f"{name}: images and labels differ in length "
            f"(train {len(x_train)} vs {len(y_train)}, test {len(x_test)} vs {len(y_test)})"
        )
    for split, y in (("train", y_train), ("test", y_test)):
        if y.min() < 0 or y.max() >= num_classes:
            raise ValueError(f"{name}: {split} labels outside [0, {num_classes})")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(x_train))
    n_val = int(round(val_fraction * len(x_train)))
    val_idx = np.sort(perm[:n_val])
    tr_idx = np.sort(perm[n_val:])
    if train_subset is not None and train_subset < len(tr_idx):
        tr_idx = np.sort(rng.permutation(tr_idx)[:train_subset])
        if n_val:
            k = max(1, int(round(train_subset * val_fraction / (1.0 - val_fraction))))
            val_idx = np.sort(rng.permutation(val_idx)[: min(k, len(val_idx))])
    te_idx = _subset(rng, len(x_test), test_subset)
    if len(tr_idx) == 0:
        raise ValueError(f"{name}: val_fraction={val_fraction} leaves no training samples")
    xt = x_train[tr_idx].astype(np.float32) / scale
    mean = float(xt.mean())
    std = float(xt.std()) or 1.0

    def shape4(x: np.ndarray) -> np.ndarray:
        return x[:, None] if x.ndim == 3 else x

    train = _to_ds(shape4(x_train[tr_idx] / scale), y_train[tr_idx], tr_idx, mean, std)
    val = _to_ds(shape4(x_train[val_idx] / scale), y_train[val_idx], val_idx, mean, std)
    test = _to_ds(shape4(x_test[te_idx] / scale), y_test[te_idx], te_idx, mean, std)
    return Splits(
        train=train,
        val=val,
        test=test,
        num_classes=num_classes,
        input_shape=tuple(train.tensors[0].shape[1:]),
        class_names=tuple(class_names),
        mean=mean,
        std=std,
        name=name,
    )
