"""The one place that turns an exitnet status code into a Python exception.

Every exception carries the C library's message (which names the function and
the argument) and the numeric ``status`` (values from include/exitnet.h through
the generated :mod:`exitnet._abi`; this module imports nothing else of exitnet). Bad arguments are ``ValueError``
subclasses, so ordinary ``except ValueError`` code keeps working.
"""

from __future__ import annotations

from . import _abi

__all__ = [
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
    "error_for",
]


class ExitnetError(Exception):
    """Base class of every error raised by exitnet's native library."""

    status: int = -1

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class InvalidArgumentError(ExitnetError, ValueError):
    """EXITNET_ERR_INVALID_ARGUMENT: wrong dtype, shape, value, NULL, released struct."""

    status = _abi.EXITNET_ERR_INVALID_ARGUMENT


class InvalidStateError(ExitnetError, RuntimeError):
    """EXITNET_ERR_INVALID_STATE: closed, freed or foreign handle; wrong call order."""

    status = _abi.EXITNET_ERR_INVALID_STATE


class ExitnetIOError(ExitnetError, OSError):
    """EXITNET_ERR_IO: missing, unreadable, truncated or corrupted file; failed write."""

    status = _abi.EXITNET_ERR_IO


class ExitnetMemoryError(ExitnetError, MemoryError):
    """EXITNET_ERR_OUT_OF_MEMORY: allocation refused or over a declared bound."""

    status = _abi.EXITNET_ERR_OUT_OF_MEMORY


class NotSupportedError(ExitnetError, NotImplementedError):
    """EXITNET_ERR_NOT_SUPPORTED: a valid request this build cannot serve."""

    status = _abi.EXITNET_ERR_NOT_SUPPORTED


class CancelledError(ExitnetError):
    """EXITNET_ERR_CANCELLED: the operation was cancelled."""

    status = _abi.EXITNET_ERR_CANCELLED


class InternalError(ExitnetError, RuntimeError):
    """EXITNET_ERR_INTERNAL: a recovered Go panic. The library refuses further calls."""

    status = _abi.EXITNET_ERR_INTERNAL


class NotFoundError(ExitnetError, LookupError):
    """EXITNET_ERR_NOT_FOUND: a key (sample id, parameter name) is absent."""

    status = _abi.EXITNET_ERR_NOT_FOUND


class ForkedProcessError(ExitnetError, RuntimeError):
    """The library was loaded before this process was forked; Go cannot run here."""


class AbiMismatchError(ExitnetError, ImportError):
    """The shared library's ABI version differs from the one this package expects."""


class LibraryNotFoundError(ExitnetError, ImportError):
    """libexitnet.so could not be found."""


_BY_STATUS: dict[int, type[ExitnetError]] = {
    cls.status: cls
    for cls in (
        InvalidArgumentError,
        InvalidStateError,
        ExitnetIOError,
        ExitnetMemoryError,
        NotSupportedError,
        CancelledError,
        InternalError,
        NotFoundError,
    )
}


def error_for(status: int, message: str) -> ExitnetError:
    """Return the exception instance for a non-zero status and its message."""
    cls = _BY_STATUS.get(status, ExitnetError)
    return cls(message or f"exitnet status {status}", status)

