"""Library-wide settings: version, threads, memory limit, BLAS backend."""

from __future__ import annotations

import ctypes

from . import _lib
from ._arrow import ArrowIn, as_matrix

__all__ = [
    "library_version",
    "set_num_threads",
    "get_num_threads",
    "set_memory_limit",
    "blas_backend",
    "load_blas",
]


def library_version() -> str:
    """Version string of the loaded native library (e.g. ``"0.1.0"``)."""
    return _lib.lib().exitnet_version().decode()


def set_num_threads(n: int) -> None:
    """Set the worker threads of every parallel kernel (and of OpenBLAS).

    Go reads ``GOMAXPROCS`` only at process start, so setting ``os.environ`` in a
    notebook does nothing: call this instead.
    """
    _lib.call("exitnet_set_num_threads", int(n))


def get_num_threads() -> int:
    """Current worker thread count."""
    out = ctypes.c_int()
    _lib.call("exitnet_get_num_threads", ctypes.byref(out))
    return out.value


def set_memory_limit(nbytes: int | None) -> None:
    """Set the Go runtime's soft memory limit (``GOMEMLIMIT``); ``None`` removes it."""
    _lib.call("exitnet_set_memory_limit", int(nbytes or 0))


def blas_backend() -> str:
    """Which GEMM backend is in use: ``"openblas <path>"`` or ``"gonum (pure Go)"``."""
    buf = ctypes.create_string_buffer(1024)
    _lib.call("exitnet_blas_backend", buf, len(buf))
    return buf.value.decode()


def load_blas(path: str) -> None:
    """Route GEMM through the OpenBLAS shared library at ``path``."""
    _lib.call("exitnet_blas_load", str(path).encode())


def data_address(x: object, name: str = "x") -> int:
    """Address of the first value of matrix ``x`` as the native library sees it.

    A test hook that proves inputs cross the ABI without a copy: compare with
    ``x.ctypes.data`` (numpy) or ``x.data_ptr()`` (torch).
    """
    arr = ArrowIn(as_matrix(x, name))
    out = ctypes.c_size_t()
    _lib.call("exitnet_debug_data_address", ctypes.byref(out), arr.array, arr.schema)
    return out.value
