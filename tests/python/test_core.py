"""The spine from Python: lazy loading, ABI check, fork guard, status → exception
mapping, zero-copy inputs (the library sees the caller's address), sliced arrays,
and panic recovery (in a subprocess: it poisons the library)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import exitnet
from exitnet import _core, _lib
from exitnet._errors import (
    ExitnetError,
    InternalError,
    InvalidArgumentError,
    error_for,
)

PYTHON_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "python")


def run_py(code: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(PYTHON_DIR), **env_extra)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_import_does_not_load_the_library() -> None:
    r = run_py(
        """
        import exitnet, exitnet.torch, exitnet._core
        from exitnet import _lib
        print(_lib.is_loaded())
        exitnet.get_num_threads()
        print(_lib.is_loaded())
        """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "True"]


def test_versions_agree() -> None:
    assert exitnet.library_version() == exitnet.__version__
    assert _lib.lib().exitnet_abi_version() == _lib.ABI_VERSION


def test_abi_mismatch_is_refused_with_both_versions() -> None:
    r = run_py(
        """
        from exitnet import _lib
        _lib.ABI_VERSION = 999
        try:
            _lib.lib()
        except ImportError as e:
            print(type(e).__name__, e)
        """
    )
    assert r.returncode == 0, r.stderr
    assert "AbiMismatchError" in r.stdout
    assert f"ABI version {_lib.ABI_VERSION}" in r.stdout and "ABI version 999" in r.stdout


def test_missing_library_message(tmp_path) -> None:
    r = run_py(
        f"""
        import os
        from exitnet import _lib
        _lib._candidates = lambda: [__import__('pathlib').Path({str(tmp_path)!r}) / 'libexitnet.so']
        try:
            _lib.lib()
        except ImportError as e:
            print(type(e).__name__, e)
        """
    )
    assert "LibraryNotFoundError" in r.stdout and "EXITNET_LIBRARY" in r.stdout, r.stdout + r.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_call_in_forked_child_raises_instead_of_hanging() -> None:
    r = run_py(
        """
        import os, exitnet
        exitnet.get_num_threads()          # loads the Go runtime in the parent
        pid = os.fork()
        if pid == 0:
            try:
                exitnet.get_num_threads()
                os._exit(3)
            except exitnet.ForkedProcessError as e:
                os._exit(0 if "spawn" in str(e) else 4)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0"


def test_fork_before_loading_is_fine() -> None:
    r = run_py(
        """
        import os, exitnet
        pid = os.fork()
        if pid == 0:
            os._exit(0 if exitnet.get_num_threads() >= 1 else 5)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0"


def test_status_mapping() -> None:
    assert isinstance(error_for(1, "m"), ValueError)
    assert isinstance(error_for(3, "m"), OSError)
    assert isinstance(error_for(4, "m"), MemoryError)
    assert isinstance(error_for(8, "m"), LookupError)
    assert isinstance(error_for(7, "m"), RuntimeError)
    assert type(error_for(42, "m")) is ExitnetError
    with pytest.raises(InvalidArgumentError, match=r"exitnet_set_num_threads: n: must be in"):
        exitnet.set_num_threads(0)


def test_threads_and_memory_limit() -> None:
    before = exitnet.get_num_threads()
    try:
        exitnet.set_num_threads(3)
        assert exitnet.get_num_threads() == 3
    finally:
        exitnet.set_num_threads(before)
    exitnet.set_memory_limit(8 << 30)
    exitnet.set_memory_limit(None)


def test_blas_backend_is_openblas() -> None:
    # The package depends on scipy-openblas32, so GEMM never falls back to pure Go.
    assert exitnet.blas_backend().startswith("openblas"), exitnet.blas_backend()
    with pytest.raises(exitnet.ExitnetIOError, match="cannot load OpenBLAS"):
        exitnet.load_blas("/nonexistent/libopenblas.so")


def test_numpy_torch_pyarrow_cross_without_copy() -> None:
    x = np.random.default_rng(0).standard_normal((64, 10)).astype(np.float32)
    assert _core.data_address(x) == x.ctypes.data
    torch = pytest.importorskip("torch")
    t = torch.randn(32, 7)
    assert _core.data_address(t) == t.data_ptr()
    a = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 10)
    assert _core.data_address(a) == a.values.buffers()[1].address
    # fixed_shape_tensor extension arrays too
    ext = pa.ExtensionArray.from_storage(pa.fixed_shape_tensor(pa.float32(), [2, 5]), a)
    assert _core.data_address(ext) == a.values.buffers()[1].address


def test_sliced_arrays_are_honoured() -> None:
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    a = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 4)
    base = a.values.buffers()[1].address
    assert _core.data_address(a.slice(3, 2)) == base + 3 * 4 * 4
    # a sliced child array under the list
    child = pa.array(np.arange(44, dtype=np.float32)).slice(4)
    b = pa.FixedSizeListArray.from_arrays(child, 4)
    assert _core.data_address(b) == child.buffers()[1].address + 4 * 4


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(InvalidArgumentError, match="float32"):
        _core.data_address(np.zeros((2, 2)))
    with pytest.raises(InvalidArgumentError, match="matrix: expected fixed_size_list"):
        _core.data_address(pa.array([1.0, 2.0], type=pa.float32()))
    nulls = pa.FixedSizeListArray.from_arrays(pa.array([1.0, None, 3.0, 4.0], type=pa.float32()), 2)
    with pytest.raises(InvalidArgumentError, match="null"):
        _core.data_address(nulls)
    with pytest.raises(InvalidArgumentError, match="float32 values"):
        _core.data_address(pa.FixedSizeListArray.from_arrays(pa.array([1.0, 2.0]), 2))


DEBUG_LIB = Path(__file__).resolve().parents[2] / "build" / "debug" / "libexitnet.so"


def test_panic_is_recovered_and_poisons_the_library() -> None:
    # exitnet_debug_panic exists only in the test-only library (`make build/debug/libexitnet.so`,
    # built by `make test-py`): the library users get cannot poison itself.
    assert DEBUG_LIB.is_file(), f"{DEBUG_LIB} is missing: run `make build/debug/libexitnet.so`"
    r = run_py(
        """
        import ctypes
        import exitnet
        from exitnet import _lib
        panic = _lib.lib().exitnet_debug_panic
        panic.restype, panic.argtypes = ctypes.c_int, []
        try:
            _lib.check(panic(), "exitnet_debug_panic")
        except exitnet.InternalError as e:
            print("first:", "unknown state" in str(e))
        try:
            exitnet.get_num_threads()
        except exitnet.InternalError as e:
            print("after:", "earlier internal error" in str(e))
        """,
        EXITNET_LIBRARY=str(DEBUG_LIB),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["first:", "True", "after:", "True"]


def test_no_leaks_after_errors() -> None:
    import ctypes

    for _ in range(50):
        with pytest.raises(InvalidArgumentError):
            _core.data_address(pa.array([1.0], type=pa.float32()))
    out = ctypes.c_int64()
    _lib.call("exitnet_allocated_bytes", ctypes.byref(out))
    assert out.value == 0


def test_every_public_name_resolves() -> None:
    pytest.importorskip("torch")
    import exitnet.torch as et

    missing = [n for n in et.__all__ if not hasattr(et, n)]
    assert missing == []
    for mod in ("distill", "fisher", "policy", "runtime", "data"):
        m = getattr(exitnet, mod)
        assert [n for n in getattr(m, "__all__", []) if not hasattr(m, n)] == [], mod
