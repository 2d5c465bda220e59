"""File readers of :mod:`exitnet.data`: IDX files (gzip-compressed or not) and the
CIFAR "python version" batches, read with a restricted unpickler."""

from __future__ import annotations

import gzip
import io
import os
import pickle
from typing import Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]


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
