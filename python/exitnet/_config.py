"""Where the C side of an installed exitnet lives, for C users of the pip install.

A wheel carries ``exitnet/libexitnet.so``, ``exitnet/include/exitnet.h`` and
``exitnet/pkgconfig/exitnet.pc``; nothing here loads the library. Build a C program
against it with::

    gcc app.c $(python -m exitnet config --cflags --libs)
    # or: PKG_CONFIG_PATH=$(python -m exitnet config --pkgconfigdir) pkg-config --cflags --libs exitnet
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["get_include", "get_library_dir", "get_pkgconfig_dir", "cflags", "libs"]

_PKG = Path(__file__).resolve().parent


def _installed(rel: str) -> Path:
    p = _PKG / rel
    if not p.exists():
        raise FileNotFoundError(
            f"{p} does not exist: this exitnet is not an installed wheel (a source checkout or an "
            "editable install). In a checkout use include/exitnet.h, or `make install PREFIX=...` and "
            "pkg-config."
        )
    return p


def get_include() -> str:
    """Directory holding ``exitnet.h`` (pass it to the C compiler with ``-I``)."""
    return str(_installed("include/exitnet.h").parent)


def get_library_dir() -> str:
    """Directory holding ``libexitnet.so``."""
    return str(_installed("libexitnet.so").parent)


def get_pkgconfig_dir() -> str:
    """Directory holding ``exitnet.pc`` (for ``PKG_CONFIG_PATH``)."""
    return str(_installed("pkgconfig/exitnet.pc").parent)


def cflags() -> str:
    """Compiler flags: ``-I<include dir>``."""
    return f"-I{get_include()}"


def libs() -> str:
    """Linker flags: the library directory, an rpath to it, and ``-lexitnet``."""
    d = get_library_dir()
    return f"-L{d} -Wl,-rpath,{d} -lexitnet"
