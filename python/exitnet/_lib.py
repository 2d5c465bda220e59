"""Finds, loads and declares libexitnet.so (ctypes).

The library is loaded lazily, on the first call that needs it, not at import:
importing exitnet in a process that later forks (PyTorch DataLoader workers,
multiprocessing with ``fork``) is safe. Once loaded, the Go runtime cannot run
in a forked child (it hangs at its first garbage collection, golang/go#15538),
so a call from such a child raises :class:`ForkedProcessError` instead.

Search order: ``$EXITNET_LIBRARY`` (a path), the package directory (wheels and
editable installs), then ``build/`` of a source checkout.

Every prototype comes from :mod:`exitnet._abi`, generated from include/exitnet.h
by scripts/abi.py (no module declares argtypes by hand); they are applied when the
library loads. :func:`fn` returns the ctypes function, loading the library on first
use; :func:`call` also turns a failing status into the mapped exception.
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path
from typing import Any, Callable

from . import _abi
from ._errors import AbiMismatchError, ForkedProcessError, LibraryNotFoundError, error_for

#: ABI version this package speaks (EXITNET_ABI_VERSION in include/exitnet.h).
ABI_VERSION = _abi.ABI_VERSION

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_path: str | None = None
_forked_after_load = False
_fns: dict[str, Callable[..., Any]] = {}


def _after_fork_in_child() -> None:
    global _forked_after_load
    if _lib is not None:
        _forked_after_load = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def _declare(lib: ctypes.CDLL) -> dict[str, Callable[..., Any]]:
    fns = {}
    for name, (restype, argtypes) in _abi.FUNCTIONS.items():
        f = getattr(lib, name)
        f.restype = restype
        f.argtypes = argtypes
        fns[name] = f
    return fns


def _candidates() -> list[Path]:
    out: list[Path] = []
    env = os.environ.get("EXITNET_LIBRARY")
    if env:
        out.append(Path(env))
    here = Path(__file__).resolve().parent
    out.append(here / "libexitnet.so")
    out.append(here.parent.parent / "build" / "libexitnet.so")
    return out


def _load() -> ctypes.CDLL:
    global _lib, _path
    tried = []
    for p in _candidates():
        tried.append(str(p))
        if p.is_file():
            lib = ctypes.CDLL(str(p))
            break
    else:
        raise LibraryNotFoundError(
            "libexitnet.so not found (looked in: " + ", ".join(tried) + "). "
            "Install the package with `pip install .`, run `make lib` in a source "
            "checkout, or set EXITNET_LIBRARY to the library's path."
        )
    for name in ("exitnet_abi_version", "exitnet_version"):
        getattr(lib, name).restype, getattr(lib, name).argtypes = _abi.FUNCTIONS[name]
    got = lib.exitnet_abi_version()
    if got != ABI_VERSION:
        raise AbiMismatchError(
            f"{p} speaks exitnet ABI version {got} (library {lib.exitnet_version().decode()}), "
            f"but this Python package expects ABI version {ABI_VERSION}: rebuild the library "
            "(`make lib`) or reinstall the package so both come from the same source."
        )
    _fns.update(_declare(lib))
    _lib = lib
    _path = str(p)
    _prefer_wheel_openblas(lib)
    return lib


def _prefer_wheel_openblas(lib: ctypes.CDLL) -> None:
    """Route GEMM through OpenBLAS from the scipy-openblas32 wheel when the library
    found no system OpenBLAS (pure-Go GEMM is about 10x slower)."""
    buf = ctypes.create_string_buffer(512)
    lib.exitnet_blas_backend(buf, len(buf))
    if buf.value.startswith(b"openblas"):
        return
    try:
        import scipy_openblas32  # type: ignore[import-not-found]
    except ImportError:
        return
    path = os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas.so")
    if os.path.isfile(path):
        lib.exitnet_blas_load(path.encode())


def lib() -> ctypes.CDLL:
    """The loaded library (loading it on first use)."""
    if _forked_after_load:
        raise ForkedProcessError(
            "exitnet's native library was loaded in the parent process before this "
            "process was forked, and the Go runtime inside it hangs in a forked child. "
            "Use the 'spawn' start method (multiprocessing.set_start_method('spawn'), or "
            "DataLoader(..., multiprocessing_context='spawn')), or keep calls into exitnet "
            "in the parent. The pure-Python readers (exitnet.distill.TargetFile) work in "
            "forked workers."
        )
    if _lib is None:
        with _lock:
            if _lib is None:
                _load()
    assert _lib is not None
    return _lib


def fn(name: str) -> Callable[..., Any]:
    """The declared ctypes function ``name`` (loads the library on first use)."""
    lib()
    try:
        return _fns[name]
    except KeyError:
        raise RuntimeError(f"exitnet: no C function {name} in include/exitnet.h") from None


def call(name: str, *args: Any) -> None:
    """Call ``name`` and raise the mapped exception if its status is not 0."""
    check(fn(name)(*args), name)


def check(status: int, name: str) -> None:
    """Raise the exception for ``status`` (no-op for 0), with the thread's C message."""
    if status == 0:
        return
    raise error_for(status, last_error() or f"{name} failed with status {status}")


def last_error() -> str:
    """The calling thread's last error message from the C library."""
    if _lib is None:
        return ""
    msg = _lib.exitnet_last_error()
    return msg.decode("utf-8", "replace") if msg else ""


def library_path() -> str:
    """Path of the loaded library (loads it)."""
    lib()
    assert _path is not None
    return _path


def is_loaded() -> bool:
    """Whether the native library has been loaded in this process."""
    return _lib is not None

