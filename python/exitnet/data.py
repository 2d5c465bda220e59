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

import gzip
import io
import os
import pickle
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Sequence, Union

import numpy as np

# torch is an optional extra: imported where a split is built, not when this module loads
if TYPE_CHECKING:  # pragma: no cover
    from torch.utils.data import TensorDataset

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

PathLike = Union[str, "os.PathLike[str]"]

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
# IDX

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: PathLike, argname: str = "path") -> bytes:
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"{argname}: {p} does not exist")
    if os.path.isdir(p):
        raise IsADirectoryError(f"{argname}: {p} is a directory, expected a file")
    with open(p, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, gzip.BadGzipFile) as e:
            raise ValueError(f"{argname}: {p} is a truncated or corrupt gzip file ({e})") from None
    return raw


def load_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not.

    Returns an array of the file's dtype and shape (uint8 images (N, H, W), uint8 labels (N,)).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Bad magic number, unknown type code, or a file shorter than its header says (truncated).
    """
    p = os.fspath(path)
    raw = _read_bytes(p)
    if len(raw) < 4:
        raise ValueError(f"path: {p} is truncated: {len(raw)} bytes, an IDX header needs at least 4")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"path: {p} is not an IDX file (magic bytes {raw[:2].hex()}, expected 0000)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"path: {p} has unknown IDX type code 0x{code:02x}")
    if ndim == 0:
        raise ValueError(f"path: {p} declares 0 dimensions")
    hdr = 4 + 4 * ndim
    if len(raw) < hdr:
        raise ValueError(
            f"path: {p} is truncated: the IDX header needs {hdr} bytes, the file has {len(raw)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dt = _IDX_DTYPES[code]
    need = int(np.prod(dims, dtype=np.int64)) * dt.itemsize
    have = len(raw) - hdr
    if have < need:
        raise ValueError(
            f"path: {p} is truncated: header {dims} needs {need} data bytes, the file has {have}"
        )
    if have > need:
        raise ValueError(f"path: {p} has {have - need} trailing bytes after the IDX data")
    arr = np.frombuffer(raw, dtype=dt, count=int(np.prod(dims)), offset=hdr).reshape(dims)
    return arr.astype(dt.newbyteorder("="), copy=True)


def _find(root: str, stem: str) -> str:
    for cand in (stem, stem + ".gz"):
        q = os.path.join(root, cand)
        if os.path.exists(q):
            return q
    # some distributions use dots instead of dashes (train-images.idx3-ubyte)
    alt = stem.replace("-idx", ".idx")
    for cand in (alt, alt + ".gz"):
        q = os.path.join(root, cand)
        if os.path.exists(q):
            return q
    raise FileNotFoundError(f"root: {root} holds no {stem} or {stem}.gz")


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


# --------------------------------------------------------------------------------------------
# CIFAR python batches


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only plain containers, strings, bytes, numbers and numpy arrays."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # noqa: D401
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"forbidden global {module}.{name}: CIFAR batches hold only dicts, lists, bytes and "
            "numpy arrays"
        )


def _load_batch(path: str) -> dict:
    raw = _read_bytes(path, "root")
    try:
        obj = _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise ValueError(f"root: {path}: {e}") from None
    except (EOFError, ValueError, TypeError, IndexError, KeyError) as e:
        raise ValueError(f"root: {path} is truncated or not a CIFAR python batch ({e})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"root: {path} does not hold a dict (got {type(obj).__name__})")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _cifar_arrays(path: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    b = _load_batch(path)
    if "data" not in b or label_key not in b:
        raise ValueError(f"root: {path} lacks the keys 'data' and {label_key!r} (has {sorted(b)})")
    data = np.asarray(b["data"])
    labels = np.asarray(b[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"root: {path}: 'data' should be uint8 (N, 3072), is {data.dtype} {data.shape}")
    if len(labels) != len(data):
        raise ValueError(f"root: {path}: {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


def _names(path: str, key: str, n: int) -> tuple[str, ...]:
    if os.path.exists(path):
        m = _load_batch(path)
        if key in m:
            return tuple(v.decode() if isinstance(v, bytes) else str(v) for v in m[key])
    return tuple(str(i) for i in range(n))


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
