"""exitnet: early-exit networks trained sequentially, protected with EWC and LwF.

The numerical work runs in a Go library (``libexitnet.so``) behind a C ABI over
Apache Arrow buffers; this package is the thin, typed Python side:

- :mod:`exitnet.distill`  LwF: temperature softmax, KD loss and gradient, recorded targets
- :mod:`exitnet.fisher`   EWC: exact per-sample diagonal Fisher, consolidation, penalty
- :mod:`exitnet.policy`   exit policies, exact budget curves, calibration
- :mod:`exitnet.runtime`  the Go early-exit inference engine
- :mod:`exitnet.torch`    the PyTorch side: models, Fisher hooks, EWC/LwF losses, trainer, export
- :mod:`exitnet.data`     data sets available offline

Importing is cheap: submodules load on first attribute access, and the native
library loads on the first call that needs it (never at import, so forking
before then is safe).
"""

from __future__ import annotations

import importlib
from typing import Any

from . import _abi
from ._config import get_include, get_library_dir, get_pkgconfig_dir
from ._core import (
    blas_backend,
    get_num_threads,
    library_version,
    load_blas,
    set_memory_limit,
    set_num_threads,
)
from ._errors import (
    AbiMismatchError,
    CancelledError,
    ExitnetError,
    ExitnetIOError,
    ExitnetMemoryError,
    ForkedProcessError,
    InternalError,
    InvalidArgumentError,
    InvalidStateError,
    LibraryNotFoundError,
    NotFoundError,
    NotSupportedError,
)

__version__ = _abi.VERSION  # EXITNET_VERSION_STRING of include/exitnet.h

_SUBMODULES = {"distill", "fisher", "policy", "runtime", "torch", "data"}

__all__ = [
    "__version__",
    "get_include",
    "get_library_dir",
    "get_pkgconfig_dir",
    "library_version",
    "set_num_threads",
    "get_num_threads",
    "set_memory_limit",
    "blas_backend",
    "load_blas",
    "ExitnetError",
    "InvalidArgumentError",
    "InvalidStateError",
    "ExitnetIOError",
    "ExitnetMemoryError",
    "NotSupportedError",
    "CancelledError",
    "InternalError",
    "NotFoundError",
    "ForkedProcessError",
    "AbiMismatchError",
    "LibraryNotFoundError",
    *sorted(_SUBMODULES),
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'exitnet' has no attribute {name!r}")
