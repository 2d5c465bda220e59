"""Recording and native reading of LwF target files for :mod:`exitnet.distill`:
:class:`TargetWriter` (record exits' logits by sample id, save one Arrow IPC file)
and :class:`TargetStore` (the file opened by the native library)."""

from __future__ import annotations

import ctypes
import os
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from . import _lib
from ._arrow import ArrowIn, ArrowOut, as_ints, as_matrix, to_numpy
from ._errors import InvalidArgumentError, InvalidStateError


TARGETS_KIND = "lwf_targets"
TARGETS_FORMAT_VERSION = 1

_fp = ctypes.POINTER(ctypes.c_float)
_i64p = ctypes.POINTER(ctypes.c_int64)


# ---------------------------------------------------------------------- writer


class TargetWriter:
    """Records exits' raw logits keyed by int64 sample ids and saves an Arrow IPC file.

    Parameters
    ----------
    path : str or os.PathLike, optional
        Where :meth:`save` writes by default; a ``with`` block that ends without an
        exception saves there.
    num_exits : int
        E, the number of exits recorded (exit indices 0..E−1).
    num_classes : int, optional
        C; inferred from the first chunk when omitted.

    Chunks arrive in any order (:meth:`add` one exit, :meth:`write` all exits of a
    batch). An id recorded twice for one exit is an error; at save, every exit must
    cover the same ids. Saving is atomic (temporary file + fsync + rename).

    Example
    -------
    >>> import numpy as np, tempfile, os
    >>> from exitnet.distill import TargetWriter, read_targets
    >>> path = os.path.join(tempfile.mkdtemp(), "targets.arrow")
    >>> with TargetWriter(path, num_exits=2, num_classes=3) as w:
    ...     w.write([10, 11], [np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)])
    >>> read_targets(path).gather([11], exit=0)
    array([[1., 1., 1.]], dtype=float32)
    """

    def __init__(self, path: str | os.PathLike | None = None, num_exits: int = 1, num_classes: int | None = None) -> None:
        self.path = None if path is None else os.fspath(path)
        self.num_exits = int(num_exits)
        self.num_classes = None if num_classes is None else int(num_classes)
        self._h = ctypes.c_void_p()
        if self.num_classes is not None:
            self._create()

    def _create(self) -> None:
        _lib.call("exitnet_targets_writer_new", ctypes.byref(self._h), self.num_exits, self.num_classes)

    def _handle(self) -> ctypes.c_void_p:
        if not self._h:
            if self.num_classes is None and not getattr(self, "_closed", False):
                raise InvalidStateError("TargetWriter: nothing recorded yet (num_classes unknown)")
            raise InvalidStateError("TargetWriter: closed")
        return self._h

    def add(self, exit: int, ids: Any, logits: Any) -> None:
        """Record ``logits`` (n, C) of exit ``exit`` for sample ``ids`` (n integers)."""
        if getattr(self, "_closed", False):
            raise InvalidStateError("TargetWriter: closed")
        lg = as_matrix(logits, "logits")
        if not self._h and self.num_classes is None:
            self.num_classes = int(lg.type.list_size) if pa.types.is_fixed_size_list(lg.type) else int(lg.type.storage_type.list_size)
            self._create()
        i = ArrowIn(as_ints(ids, "ids", dtype=np.int64))
        x = ArrowIn(lg)
        _lib.call("exitnet_targets_writer_add", self._handle(), int(exit), i.array, i.schema, x.array, x.schema)

    def write(self, ids: Any, logits_per_exit: Sequence[Any]) -> None:
        """Record one batch for every exit: ``logits_per_exit[j]`` is exit j's (n, C) logits."""
        if len(logits_per_exit) != self.num_exits:
            raise InvalidArgumentError(
                f"logits_per_exit: {len(logits_per_exit)} arrays, the writer has {self.num_exits} exits")
        ids = np.ascontiguousarray(to_numpy(ids, "ids")).astype(np.int64, copy=False)
        for j, z in enumerate(logits_per_exit):
            self.add(j, ids, z)

    def num_rows(self, exit: int = 0) -> int:
        """Samples recorded so far for ``exit``."""
        if not self._h:
            return 0
        out = ctypes.c_int64()
        _lib.call("exitnet_targets_writer_num_rows", ctypes.byref(out), self._handle(), int(exit))
        return out.value

    def save(self, path: str | os.PathLike | None = None) -> str:
        """Write the file (atomically) to ``path`` (default: the constructor's) and return the path."""
        p = self.path if path is None else os.fspath(path)
        if p is None:
            raise InvalidArgumentError("path: no path given (pass one here or to the constructor)")
        if not self._h and self.num_classes is None and not getattr(self, "_closed", False):
            raise InvalidStateError("TargetWriter: nothing recorded yet (num_classes unknown)")
        _lib.call("exitnet_targets_writer_save", self._handle(), os.fsencode(p))
        return p

    def close(self) -> None:
        """Free the native writer (unsaved data is dropped). Idempotent."""
        self._closed = True
        if self._h:
            _lib.call("exitnet_targets_writer_free", ctypes.byref(self._h))

    def __enter__(self) -> "TargetWriter":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        try:
            if exc_type is None and self.path is not None:
                self.save()
        finally:
            self.close()

    def __del__(self) -> None:
        try:
            if self._h and _lib.is_loaded():
                _lib.fn("exitnet_targets_writer_free")(ctypes.byref(self._h))
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if getattr(self, "_closed", False) else f"{self.num_rows(0) if self._h else 0} rows"
        return f"TargetWriter(path={self.path!r}, num_exits={self.num_exits}, num_classes={self.num_classes}, {state})"


# ---------------------------------------------------------------------- native reader


class TargetStore:
    """A recorded target file opened by the native library (memory-mapped, validated).

    Thread-safe: :meth:`gather` may run from several threads at once. For forked
    DataLoader workers use :class:`TargetFile` instead (pure Python).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._h = ctypes.c_void_p()
        _lib.call("exitnet_targets_open", ctypes.byref(self._h), os.fsencode(self.path))
        rows, exits, classes = ctypes.c_int64(), ctypes.c_int(), ctypes.c_int()
        _lib.call("exitnet_targets_shape", ctypes.byref(rows), ctypes.byref(exits), ctypes.byref(classes), self._h)
        self.num_rows, self.num_exits, self.num_classes = rows.value, exits.value, classes.value

    def _handle(self) -> ctypes.c_void_p:
        if not self._h:
            raise InvalidStateError("TargetStore: closed")
        return self._h

    def gather(self, ids: Any, exit: int = 0, *, out: np.ndarray | None = None) -> np.ndarray:
        """Recorded logits (n, C) float32 of ``exit`` for sample ``ids``.

        ``out`` (optional) is a C-contiguous (n, C) float32 array written in place.
        An unknown id raises :class:`~exitnet.NotFoundError` naming it.
        """
        h = self._handle()
        idv = np.ascontiguousarray(to_numpy(ids, "ids"))
        if idv.ndim != 1:
            raise InvalidArgumentError(f"ids: expected a 1-D integer array, got shape {idv.shape}")
        if idv.dtype != np.int64:
            if idv.size and not np.issubdtype(idv.dtype, np.integer):
                raise InvalidArgumentError(f"ids: expected integers, got {idv.dtype}")
            idv = idv.astype(np.int64)
        n, C = idv.shape[0], self.num_classes
        if out is None:
            out = np.empty((n, C), dtype=np.float32)
        elif out.dtype != np.float32 or out.shape != (n, C) or not out.flags.c_contiguous or not out.flags.writeable:
            raise InvalidArgumentError(f"out: need a writable C-contiguous float32 array of shape {(n, C)}")
        _lib.call("exitnet_targets_gather_raw", out.ctypes.data_as(_fp), out.size, h,
                  idv.ctypes.data_as(_i64p), n, int(exit))
        return out

    def gather_arrow(self, ids: Any, exit: int = 0) -> pa.Array:
        """Like :meth:`gather`, through the Arrow ABI: a ``fixed_size_list<float32>[C]`` array."""
        h = self._handle()
        i = ArrowIn(as_ints(ids, "ids", dtype=np.int64))
        out = ArrowOut()
        _lib.call("exitnet_targets_gather", out.array, out.schema, h, i.array, i.schema, int(exit))
        return out.to_array()

    def lookup(self, ids: Any) -> list[np.ndarray]:
        """Every exit's recorded logits for ``ids``: a list of E arrays (n, C)."""
        return [self.gather(ids, j) for j in range(self.num_exits)]

    def close(self) -> None:
        """Unmap the file. Idempotent."""
        if self._h:
            _lib.call("exitnet_targets_free", ctypes.byref(self._h))

    def __enter__(self) -> "TargetStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._h and _lib.is_loaded():
                _lib.fn("exitnet_targets_free")(ctypes.byref(self._h))
        except Exception:
            pass

    def __len__(self) -> int:
        return self.num_rows

    def __repr__(self) -> str:
        state = "" if self._h else ", closed"
        return (f"TargetStore({self.path!r}, rows={self.num_rows}, exits={self.num_exits}, "
                f"classes={self.num_classes}{state})")
