"""Data sets available offline, as seeded train / validation / test splits of torch TensorDatasets.

Every split is a :class:`torch.utils.data.TensorDataset` of ``(x, y, ids)``: ``x`` float32 images
(N, C, H, W) standardised with the training split's mean and standard deviation, ``y`` int64 labels,
``ids`` int64 sample ids unique within the split (the row index in the source file; used to key
recorded LwF targets).

Sources (nothing is downloaded):

- :func:`digits`: scikit-learn's bundled 8×8 digits (1,797 images), the embedded default.
- :func:`fashion_mnist` and :func:`mnist`: IDX files, gzip-compressed or not. Debian's
  ``dataset-fashion-mnist`` installs Fashion-MNIST under ``/usr/share/datasets/fashion-mnist``; any
  directory holding ``train-images-idx3-ubyte[.gz]`` etc. works.
- :func:`cifar10` / :func:`cifar100`: a local copy of the "python version" batches
  (``cifar-10-batches-py/data_batch_1`` ...). That format is a Python pickle; it is read with a
  restricted unpickler that only builds plain dicts, lists, strings, bytes, numbers and numpy arrays
  and refuses any other global, so a crafted file cannot run code.

The validation split is carved out of the training data with a seeded permutation; the test split is
the source's own test set (digits: a seeded hold-out).
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

# The file readers and the splitting live in their own modules; re-exported here,
# where they have always been imported from.
from . import _reexport
from ._data_files import (  # noqa: F401
    _IDX_DTYPES,
    PathLike,
    _cifar_arrays,
    _find,
    _load_batch,
    _names,
    _read_bytes,
    _RestrictedUnpickler,
    load_idx,
)
from ._data_splits import Splits, _check_fraction, _check_subset, _make_splits, _subset, _to_ds  # noqa: F401

__all__ = [
    "Splits",
    "load_idx",
    "digits",
    "fashion_mnist",
    "mnist",
    "cifar10",
    "cifar100",
    "load",
    "FASHION_MNIST_DIR",
    "DATA_ENV",
    "data_root",
    "fashion_mnist_available",
    "FASHION_MNIST_CLASSES",
]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
DATA_ENV = "EXITNET_DATA"


def data_root(name: str = "fashion-mnist", root: Optional[PathLike] = None) -> str:
    """Where data set ``name`` is looked for: ``root`` if given, else ``$EXITNET_DATA/<name>``
    when the ``EXITNET_DATA`` environment variable is set (and only there), else the
    system location (Fashion-MNIST: Debian's ``/usr/share/datasets/fashion-mnist``)."""
    if root is not None:
        return os.fspath(root)
    env = os.environ.get(DATA_ENV)
    if env:
        return os.path.join(env, name)
    return FASHION_MNIST_DIR if name == "fashion-mnist" else os.path.join("/usr/share/datasets", name)


def fashion_mnist_available(root: Optional[PathLike] = None) -> bool:
    """Whether Fashion-MNIST's four IDX files are found at :func:`data_root`."""
    r = data_root("fashion-mnist", root)
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return all(os.path.exists(os.path.join(r, s)) or os.path.exists(os.path.join(r, s + ".gz")) for s in stems)
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


# --------------------------------------------------------------------------------------------
# public loaders


def _idx_dataset(
    name: str,
    root: PathLike,
    class_names: Sequence[str],
    *,
    val_fraction: float,
    seed: int,
    train_subset: Optional[int],
    test_subset: Optional[int],
) -> Splits:
    _check_fraction("val_fraction", val_fraction)
    _check_subset("train_subset", train_subset)
    _check_subset("test_subset", test_subset)
    r = os.fspath(root)
    if not os.path.isdir(r):
        raise FileNotFoundError(f"root: {r} does not exist or is not a directory")
    files = {
        k: _find(r, stem)
        for k, stem in (
            ("xtr", "train-images-idx3-ubyte"),
            ("ytr", "train-labels-idx1-ubyte"),
            ("xte", "t10k-images-idx3-ubyte"),
            ("yte", "t10k-labels-idx1-ubyte"),
        )
    }
    arr = {k: load_idx(v) for k, v in files.items()}
    for k in ("xtr", "xte"):
        if arr[k].ndim != 3:
            raise ValueError(f"root: {files[k]} should hold (N, H, W) images, has shape {arr[k].shape}")
    for k in ("ytr", "yte"):
        if arr[k].ndim != 1:
            raise ValueError(f"root: {files[k]} should hold (N,) labels, has shape {arr[k].shape}")
    return _make_splits(
        name,
        arr["xtr"],
        arr["ytr"].astype(np.int64),
        arr["xte"],
        arr["yte"].astype(np.int64),
        10,
        class_names,
        val_fraction=val_fraction,
        seed=seed,
        train_subset=train_subset,
        test_subset=test_subset,
        scale=255.0,
    )


def fashion_mnist(
    root: Optional[PathLike] = None,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    train_subset: Optional[int] = None,
    test_subset: Optional[int] = None,
) -> Splits:
    """Fashion-MNIST (60,000 train / 10,000 test, 28×28 grey, 10 classes) from IDX files.

    Parameters
    ----------
    root : path
        Directory with ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
        ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``. Default:
        :func:`data_root` (``$EXITNET_DATA/fashion-mnist`` if ``EXITNET_DATA`` is set, else
        where Debian's ``dataset-fashion-mnist`` package puts them).
    val_fraction : float
        Fraction of the training file held out for validation (seeded). Default 0.1.
    seed : int
        Seed of the split and of the subsets.
    train_subset, test_subset : int, optional
        Use a seeded random subset of that many training (validation shrinks in proportion) /
        test samples.
    """
    return _idx_dataset(
        "fashion-mnist", data_root("fashion-mnist", root), FASHION_MNIST_CLASSES, val_fraction=val_fraction, seed=seed,
        train_subset=train_subset, test_subset=test_subset,
    )


def mnist(
    root: PathLike,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    train_subset: Optional[int] = None,
    test_subset: Optional[int] = None,
) -> Splits:
    """MNIST from IDX files in ``root`` (same file names and options as :func:`fashion_mnist`)."""
    return _idx_dataset(
        "mnist", root, tuple(str(i) for i in range(10)), val_fraction=val_fraction, seed=seed,
        train_subset=train_subset, test_subset=test_subset,
    )


def digits(*, val_fraction: float = 0.15, test_fraction: float = 0.25, seed: int = 0) -> Splits:
    """scikit-learn's bundled 8×8 digits (1,797 images, 10 classes): the embedded default.

    The test split is a seeded hold-out of ``test_fraction`` of the images; validation is
    ``val_fraction`` of the rest. Pixel values 0..16 are scaled to [0, 1] then standardised.
    """
    from sklearn.datasets import load_digits

    test_fraction = _check_fraction("test_fraction", test_fraction)
    d = load_digits()
    x = d.images.astype(np.float32)
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    te = np.sort(perm[:n_test])
    tr = np.sort(perm[n_test:])
    s = _make_splits(
        "digits", x[tr], y[tr], x[te], y[te], 10, tuple(str(i) for i in range(10)),
        val_fraction=val_fraction, seed=seed, train_subset=None, test_subset=None, scale=16.0,
    )
    # ids refer to rows of sklearn's array
    import torch

    for ds, src in ((s.train, tr), (s.val, tr), (s.test, te)):
        ds.tensors = (ds.tensors[0], ds.tensors[1], torch.from_numpy(src[ds.tensors[2].numpy()]))
    return s


def cifar10(
    root: PathLike,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    train_subset: Optional[int] = None,
    test_subset: Optional[int] = None,
) -> Splits:
    """CIFAR-10 from a local copy of the python batches (``root`` = ``cifar-10-batches-py``).

    Reads ``data_batch_1`` .. ``data_batch_5`` (those present, at least one) and ``test_batch`` with
    a restricted unpickler (plain dicts, lists, bytes and numpy arrays only). Images are (3, 32, 32).
    """
    r = os.fspath(root)
    if not os.path.isdir(r):
        raise FileNotFoundError(f"root: {r} does not exist or is not a directory")
    batches = [os.path.join(r, f"data_batch_{i}") for i in range(1, 6)]
    batches = [b for b in batches if os.path.exists(b)]
    if not batches:
        raise FileNotFoundError(f"root: {r} holds no data_batch_1..5")
    test = os.path.join(r, "test_batch")
    if not os.path.exists(test):
        raise FileNotFoundError(f"root: {r} holds no test_batch")
    parts = [_cifar_arrays(b, "labels") for b in batches]
    xtr = np.concatenate([p[0] for p in parts])
    ytr = np.concatenate([p[1] for p in parts])
    xte, yte = _cifar_arrays(test, "labels")
    names = _names(os.path.join(r, "batches.meta"), "label_names", 10)
    return _make_splits(
        "cifar10", xtr, ytr, xte, yte, 10, names, val_fraction=val_fraction, seed=seed,
        train_subset=train_subset, test_subset=test_subset, scale=255.0,
    )


def cifar100(
    root: PathLike,
    *,
    coarse: bool = False,
    val_fraction: float = 0.1,
    seed: int = 0,
    train_subset: Optional[int] = None,
    test_subset: Optional[int] = None,
) -> Splits:
    """CIFAR-100 from a local copy of the python files (``root`` = ``cifar-100-python`` with
    ``train``, ``test`` and optionally ``meta``). ``coarse=True`` uses the 20 super-classes."""
    r = os.fspath(root)
    if not os.path.isdir(r):
        raise FileNotFoundError(f"root: {r} does not exist or is not a directory")
    key = "coarse_labels" if coarse else "fine_labels"
    n = 20 if coarse else 100
    for f in ("train", "test"):
        if not os.path.exists(os.path.join(r, f)):
            raise FileNotFoundError(f"root: {r} holds no {f!r} file")
    xtr, ytr = _cifar_arrays(os.path.join(r, "train"), key)
    xte, yte = _cifar_arrays(os.path.join(r, "test"), key)
    names = _names(
        os.path.join(r, "meta"), "coarse_label_names" if coarse else "fine_label_names", n
    )
    return _make_splits(
        "cifar100", xtr, ytr, xte, yte, n, names, val_fraction=val_fraction, seed=seed,
        train_subset=train_subset, test_subset=test_subset, scale=255.0,
    )


_LOADERS = {
    "digits": digits,
    "fashion-mnist": fashion_mnist,
    "fashion_mnist": fashion_mnist,
    "mnist": mnist,
    "cifar10": cifar10,
    "cifar100": cifar100,
}


def load(name: str, **kwargs) -> Splits:
    """Load a data set by name: ``digits``, ``fashion-mnist``, ``mnist``, ``cifar10``, ``cifar100``."""
    if name not in _LOADERS:
        raise ValueError(f"name: unknown data set {name!r}; valid: {sorted(set(_LOADERS))}")
    return _LOADERS[name](**kwargs)

_reexport.own(globals())  # public names report this module (help, repr, pickles)
