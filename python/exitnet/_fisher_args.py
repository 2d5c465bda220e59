"""Argument checks and conversions shared by :mod:`exitnet.fisher`: layouts
(``name -> shape``) to C arrays and back, row weights, per-sample rows."""

from __future__ import annotations

import ctypes
import math
import operator
from typing import Any, Mapping, Sequence

import numpy as np

from . import _lib
from ._arrow import ArrowIn, as_floats, float32_numpy
from ._errors import ExitnetMemoryError, InvalidArgumentError


def _dim(d: Any, name: str) -> int:
    """One shape entry: an integer (4.5 or "4" is an error, never truncated)."""
    if isinstance(d, (bool, np.bool_)):
        raise InvalidArgumentError(f"layout: parameter {name!r} has a bool dimension {d!r}")
    try:
        v = operator.index(d)
    except TypeError:
        raise InvalidArgumentError(f"layout: parameter {name!r} has a non-integer dimension {d!r}") from None
    if not -(2**63) <= v < 2**63:
        raise ExitnetMemoryError(f"layout: parameter {name!r} has dimension {v}, beyond a 64-bit size")
    return v


def _layout_arrays(layout: Mapping[str, Sequence[int]]) -> tuple[Any, Any, Any, int, list]:
    names = list(layout)
    shapes = []
    for n in names:
        if not isinstance(n, str):
            raise InvalidArgumentError(f"layout: parameter names must be str, got {n!r}")
        shp = layout[n]
        if isinstance(shp, (str, bytes)) or not hasattr(shp, "__iter__"):
            shp = (shp,)
        shapes.append(tuple(_dim(d, n) for d in shp))
    enc = [n.encode() for n in names]
    c_names = (ctypes.c_char_p * max(len(enc), 1))(*enc)
    c_ndims = (ctypes.c_int64 * max(len(shapes), 1))(*[len(s) for s in shapes])
    flat = [d for s in shapes for d in s]
    c_dims = (ctypes.c_int64 * max(len(flat), 1))(*flat)
    return c_names, c_ndims, c_dims, len(names), shapes


def _layout_of(h: Any) -> dict[str, tuple[int, ...]]:
    """The layout of a native accumulator (from the library, not from a file)."""
    n = ctypes.c_int64()
    _lib.call("exitnet_fisher_num_params", ctypes.byref(n), h)
    out: dict[str, tuple[int, ...]] = {}
    need, ndim, dims = ctypes.c_size_t(), ctypes.c_int64(), (ctypes.c_int64 * 16)()
    buf = ctypes.create_string_buffer(256)
    for i in range(n.value):
        try:
            _lib.call("exitnet_fisher_param", h, i, buf, len(buf), ctypes.byref(need), ctypes.byref(ndim), dims)
        except InvalidArgumentError:
            if need.value <= len(buf):
                raise
            buf = ctypes.create_string_buffer(need.value)
            _lib.call("exitnet_fisher_param", h, i, buf, len(buf), ctypes.byref(need), ctypes.byref(ndim), dims)
        out[buf.value.decode()] = tuple(int(d) for d in dims[: ndim.value])
    return out


def _label_mode_of(h: Any) -> str:
    buf = ctypes.create_string_buffer(32)
    _lib.call("exitnet_fisher_label_mode", buf, len(buf), h)
    return buf.value.decode()


_f32 = float32_numpy


def _pair(v: Any, name: str) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    t = tuple(int(x) for x in v)
    if len(t) != 2:
        raise InvalidArgumentError(f"{name}: expected an int or a pair, got {v!r}")
    return t  # type: ignore[return-value]


def _weights_in(weights: Any) -> ArrowIn | None:
    if weights is None:
        return None
    return ArrowIn(as_floats(_f32(weights, "weights").reshape(-1), "weights"))


def _raw_weights(weights: Any, n: int) -> np.ndarray | None:
    """Row weights for a raw-pointer update: None or n contiguous float32 values (the
    C side cannot check a raw pointer's length, so the count is checked here)."""
    if weights is None:
        return None
    w = _f32(weights, "weights").reshape(-1)
    if w.size != n:
        raise InvalidArgumentError(f"weights: {w.size} values for {n} rows")
    return w


def _addr(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


def _rows_2d(rows: Any) -> np.ndarray:
    """(N, P') float32 view of per-sample rows: a 1-D array is one sample, more
    dimensions are flattened per row (explicit width: reshape(0, -1) is ambiguous)."""
    r = _f32(rows, "rows")
    if r.ndim == 1:  # one sample
        r = r.reshape(1, -1)
    p = math.prod(r.shape[1:])
    if p == 0:
        raise InvalidArgumentError(f"rows: rows must have at least one value, got shape {r.shape}")
    return r.reshape(r.shape[0], p)
