"""Arrow in and out of the C ABI, without copies.

Inputs: numpy arrays, torch CPU tensors, pyarrow arrays (and anything with
``__arrow_c_array__``) become pyarrow arrays over the *same* memory, then are
exported into Arrow C Data structs that the C side moves in (after the call the
structs are released; if a call never happens, :class:`ArrowIn` releases them
itself, so nothing leaks on Python-side errors).

Outputs: caller-allocated structs that the C side fills; :meth:`ArrowOut.to_array`
and :meth:`ArrowOut.to_batch` hand their ownership to pyarrow.

Matrices are ``fixed_size_list<float32>[C]`` (N rows of C values) or the
canonical ``arrow.fixed_shape_tensor`` extension. Only float32 is accepted for
float data: a silent float64→float32 conversion would be a hidden copy, so a
wrong dtype is an error that says how to convert.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from . import _abi
from ._errors import InvalidArgumentError

__all__ = [
    "ArrowArray",
    "ArrowSchema",
    "ArrowIn",
    "ArrowInMany",
    "ArrowOut",
    "as_matrix",
    "as_tensor",
    "as_ints",
    "as_floats",
    "int_numpy",
    "is_arrow",
    "matrix_numpy",
    "float32_numpy",
    "matrix_to_numpy",
    "to_numpy",
]


# struct ArrowSchema / struct ArrowArray, generated from include/exitnet.h.
ArrowSchema = _abi.ArrowSchema
ArrowArray = _abi.ArrowArray
ArrowArrayP = ctypes.POINTER(ArrowArray)
ArrowSchemaP = ctypes.POINTER(ArrowSchema)

_ARRAY_RELEASE = ctypes.CFUNCTYPE(None, ArrowArrayP)
_SCHEMA_RELEASE = ctypes.CFUNCTYPE(None, ArrowSchemaP)


class ArrowIn:
    """An exported input: pass ``.array`` and ``.schema`` (pointers) to a C call that
    moves them in. If the call never happens, the structs are released on garbage
    collection or :meth:`release`."""

    __slots__ = ("_a", "_s", "_keep")

    def __init__(self, arr: pa.Array) -> None:
        self._a = ArrowArray()
        self._s = ArrowSchema()
        self._keep = arr
        arr._export_to_c(ctypes.addressof(self._a), ctypes.addressof(self._s))

    @property
    def array(self) -> Any:
        return ctypes.byref(self._a)

    @property
    def schema(self) -> Any:
        return ctypes.byref(self._s)

    def release(self) -> None:
        if self._a.release:
            _ARRAY_RELEASE(self._a.release)(ctypes.byref(self._a))
        if self._s.release:
            _SCHEMA_RELEASE(self._s.release)(ctypes.byref(self._s))

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:
            pass


class ArrowInMany:
    """K exported inputs in two contiguous C arrays of structs, for calls that take
    ``struct ArrowArray*`` / ``struct ArrowSchema*`` pointing at K structs each (moved
    in by the call). Pointers are NULL when K is 0. Structs the call never moved are
    released by :meth:`release` or on garbage collection."""

    __slots__ = ("n", "_a", "_s", "_keep")

    def __init__(self, arrs: Sequence[pa.Array]) -> None:
        self.n = len(arrs)
        k = max(self.n, 1)
        self._a = (ArrowArray * k)()
        self._s = (ArrowSchema * k)()
        self._keep = list(arrs)
        for i, arr in enumerate(arrs):
            arr._export_to_c(ctypes.addressof(self._a[i]), ctypes.addressof(self._s[i]))

    @property
    def array(self) -> Any:
        return ctypes.cast(self._a, ArrowArrayP) if self.n else None

    @property
    def schema(self) -> Any:
        return ctypes.cast(self._s, ArrowSchemaP) if self.n else None

    def release(self) -> None:
        for i in range(self.n):
            if self._a[i].release:
                _ARRAY_RELEASE(self._a[i].release)(ctypes.byref(self._a[i]))
            if self._s[i].release:
                _SCHEMA_RELEASE(self._s[i].release)(ctypes.byref(self._s[i]))

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:
            pass


class ArrowOut:
    """Caller-allocated output structs for a C call to fill."""

    __slots__ = ("_a", "_s")

    def __init__(self) -> None:
        self._a = ArrowArray()
        self._s = ArrowSchema()

    @property
    def array(self) -> Any:
        return ctypes.byref(self._a)

    @property
    def schema(self) -> Any:
        return ctypes.byref(self._s)

    def to_array(self) -> pa.Array:
        """Hand ownership to pyarrow and return the array."""
        return pa.Array._import_from_c(ctypes.addressof(self._a), ctypes.addressof(self._s))

    def to_batch(self) -> pa.RecordBatch:
        """Hand ownership to pyarrow and return the record batch."""
        return pa.RecordBatch._import_from_c(ctypes.addressof(self._a), ctypes.addressof(self._s))

    def __del__(self) -> None:
        # Only reached with live structs if the caller never imported them.
        try:
            if self._a.release:
                _ARRAY_RELEASE(self._a.release)(ctypes.byref(self._a))
            if self._s.release:
                _SCHEMA_RELEASE(self._s.release)(ctypes.byref(self._s))
        except Exception:
            pass


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def to_numpy(x: Any, name: str) -> np.ndarray:
    """numpy view of a numpy array or torch CPU tensor (no copy)."""
    if _is_torch(x):
        if x.device.type != "cpu":
            raise InvalidArgumentError(
                f"{name}: a tensor on {x.device}; move it to the CPU first (x.cpu())"
            )
        return x.detach().numpy()
    return np.asarray(x)


def float32_numpy(x: Any, name: str) -> np.ndarray:
    """C-contiguous float32 numpy view of a numpy array or torch CPU tensor.

    A wrong dtype is an error that says how to convert (exitnet never converts
    silently: that would be a hidden copy); a strided view is packed (documented copy).
    """
    return _float32_numpy(to_numpy(x, name), name)


def _float32_numpy(x: np.ndarray, name: str) -> np.ndarray:
    if x.dtype != np.float32:
        raise InvalidArgumentError(
            f"{name}: expected float32 data, got {x.dtype}; convert with "
            "x.astype(np.float32) or tensor.float() (exitnet never converts silently)"
        )
    if not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)  # a strided view must be packed: documented copy
    return x


def _single_chunk(x: Any, name: str) -> Any:
    if isinstance(x, pa.ChunkedArray):
        if x.num_chunks == 1:
            return x.chunk(0)
        return x.combine_chunks()
    return x


def is_arrow(x: Any) -> bool:
    """Whether x is Arrow data (pyarrow, or another producer of ``__arrow_c_array__``),
    which crosses the ABI as Arrow C Data; numpy arrays and torch tensors do not."""
    if isinstance(x, (pa.Array, pa.ChunkedArray)):
        return True
    return hasattr(x, "__arrow_c_array__") and not isinstance(x, np.ndarray) and not _is_torch(x)


def matrix_numpy(x: Any, name: str, *, cols: int | None = None) -> np.ndarray:
    """The C-contiguous float32 (N, C) numpy view of a numpy array or torch CPU tensor:
    what a raw-pointer call takes. A 2-D array, or any ndim ≥ 2 flattened per row; a
    non-contiguous one is packed first; 1-D input with ``cols`` given is (N, cols)."""
    a = _float32_numpy(to_numpy(x, name), name)
    if a.ndim == 1 and cols is not None:
        if cols <= 0 or a.size % cols:
            raise InvalidArgumentError(f"{name}: {a.size} values do not make rows of {cols}")
        a = a.reshape(-1, cols)
    if a.ndim < 2:
        raise InvalidArgumentError(f"{name}: expected a 2-D (rows, columns) array, got shape {a.shape}")
    c = math.prod(a.shape[1:])
    if c == 0:
        raise InvalidArgumentError(f"{name}: rows must have at least one value, got shape {a.shape}")
    return a.reshape(a.shape[0], c)


def as_matrix(x: Any, name: str, *, cols: int | None = None) -> pa.Array:
    """A pyarrow ``fixed_size_list<float32>`` (or fixed_shape_tensor) array over x.

    numpy / torch: :func:`matrix_numpy`, wrapped without a copy. pyarrow: passed
    through (validation happens in the library).
    """
    x = _single_chunk(x, name)
    if isinstance(x, pa.Array):
        return x
    if is_arrow(x):
        return pa.array(x)
    a = matrix_numpy(x, name, cols=cols)
    flat = pa.array(a.reshape(-1), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, a.shape[1])


def as_tensor(x: Any, name: str) -> pa.Array:
    """A pyarrow ``arrow.fixed_shape_tensor`` array over x of shape (N, *shape)."""
    x = _single_chunk(x, name)
    if isinstance(x, pa.Array):
        return x
    a = _float32_numpy(to_numpy(x, name), name)
    if a.ndim < 2:
        raise InvalidArgumentError(f"{name}: expected (N, ...) with at least 2 dimensions, got {a.shape}")
    shape = list(a.shape[1:])
    storage = pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1), type=pa.float32()), math.prod(shape))
    typ = pa.fixed_shape_tensor(pa.float32(), shape)
    return pa.ExtensionArray.from_storage(typ, storage)


def as_ints(x: Any, name: str, *, dtype: Any = None) -> pa.Array:
    """A pyarrow int32/int64 array over x (numpy / torch / pyarrow / sequences)."""
    x = _single_chunk(x, name)
    if isinstance(x, pa.Array):
        return x
    return pa.array(int_numpy(x, name, dtype=dtype))


def int_numpy(x: Any, name: str, *, dtype: Any = None) -> np.ndarray:
    """A C-contiguous 1-D int32/int64 numpy array of x (numpy / torch / sequences):
    other integer types become ``dtype`` (int64 by default); non-integers are refused,
    and a value that does not fit the target type is an error naming its index
    (never a silent wrap-around)."""
    a = to_numpy(x, name) if (_is_torch(x) or isinstance(x, np.ndarray)) else np.asarray(x)
    if a.ndim != 1:
        raise InvalidArgumentError(f"{name}: expected a 1-D integer array, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise InvalidArgumentError(f"{name}: expected int32 or int64, got {a.dtype}")
    target = np.dtype(dtype) if dtype is not None else (
        a.dtype if a.dtype in (np.int32, np.int64) else np.dtype(np.int64))
    if a.dtype != target:
        if a.size and np.issubdtype(a.dtype, np.integer):
            info = np.iinfo(target)
            bad = np.flatnonzero((a < info.min) | (a > info.max))
            if bad.size:
                i = int(bad[0])
                raise InvalidArgumentError(f"{name}: value {a[i]} at index {i} does not fit in {target.name}")
        a = a.astype(target)
    return np.ascontiguousarray(a)


def as_floats(x: Any, name: str) -> pa.Array:
    """A pyarrow float32 array over a 1-D (or flattened) float32 buffer, no copy."""
    x = _single_chunk(x, name)
    if isinstance(x, pa.Array):
        return x
    a = _float32_numpy(to_numpy(x, name), name)
    return pa.array(a.reshape(-1), type=pa.float32())


def matrix_to_numpy(arr: pa.Array) -> np.ndarray:
    """(N, C) numpy view of a fixed_size_list<float32> array (zero-copy)."""
    if isinstance(arr, pa.ExtensionArray):
        arr = arr.storage
    c = arr.type.list_size
    values = arr.flatten()
    return values.to_numpy(zero_copy_only=True).reshape(-1, c)

