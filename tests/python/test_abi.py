"""include/exitnet.h is the one description of the C ABI; everything else agrees with it.

scripts/abi.py parses the header (pycparser), measures its structs (gcc) and
compares: the generated ctypes declarations (python/exitnet/_abi.py), the generated
cgo types header and Go/C layout checks, every //export signature in capi/*.go, and
the version macros. Here: that check, plus what only a live process can see (the
ctypes layouts, the symbols the built library exports, the applied argtypes, the
Python names derived from the header's enums).
"""

from __future__ import annotations

import ctypes
import importlib.util
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from exitnet import _abi, _errors, _lib, policy, runtime

ROOT = Path(__file__).resolve().parents[2]


def _abi_script():
    spec = importlib.util.spec_from_file_location("abi_script", ROOT / "scripts" / "abi.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def test_header_python_go_and_generated_files_agree() -> None:
    pytest.importorskip("pycparser", reason="the dev extra installs pycparser")
    script = _abi_script()
    bad = script.check(script.parse())
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("name", sorted(_abi.LAYOUTS))
def test_ctypes_layout_matches_gcc(name: str) -> None:
    size, offsets = _abi.LAYOUTS[name]
    cls = getattr(_abi, name)
    assert ctypes.sizeof(cls) == size
    assert [f for f, _ in cls._fields_] == list(offsets)
    for field, off in offsets.items():
        assert getattr(cls, field).offset == off, field


def test_library_exports_exactly_the_header() -> None:
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) is not installed")
    out = subprocess.run([nm, "-D", "--defined-only", _lib.library_path()], capture_output=True, text=True,
                         check=True).stdout
    exported = {line.split()[-1] for line in out.splitlines() if line.split()[-1].startswith("exitnet_")}
    assert exported == set(_abi.FUNCTIONS)


def test_loaded_functions_carry_the_generated_prototypes() -> None:
    for name, (restype, argtypes) in _abi.FUNCTIONS.items():
        f = _lib.fn(name)
        assert f.restype is restype and list(f.argtypes) == argtypes, name
    with pytest.raises(RuntimeError, match="no C function exitnet_nope"):
        _lib.fn("exitnet_nope")


def test_statuses_and_names_come_from_the_header() -> None:
    assert {cls.status for cls in _errors._BY_STATUS.values()} == set(_abi.STATUS.values()) - {_abi.EXITNET_OK}
    for short, value in _abi.STATUS.items():
        assert _lib.fn("exitnet_status_name")(value).decode() == short
    assert list(policy.MEASURES) == ["max_softmax", "entropy", "margin", "patience"]
    assert list(policy.MEASURES) == list(typing.get_args(policy.Measure))
    assert list(policy.METHODS) == list(typing.get_args(policy.Method))
    assert runtime.MEASURES is policy.MEASURES


def test_version_is_the_headers() -> None:
    import exitnet

    assert exitnet.__version__ == _abi.VERSION == exitnet.library_version()


def test_every_arrow_input_is_handed_to_run() -> None:
    """The header says Arrow inputs are moved in whatever the status, poisoned library
    included. capi's run() releases them on the paths where the body never imports
    them (poisoned, panic) only if the export hands them over: every export with an
    Arrow input parameter (one not named out*) must pass its inputs to run(...).
    tests/c/debug/test_poisoned_inputs.c checks the behaviour on a few exports."""
    import re

    missing = []
    for go in sorted((ROOT / "capi").glob("*.go")):
        src = go.read_text()
        for m in re.finditer(r"^func (exitnet_\w+)\((.*?)\) C\.int \{\n(.*?)^\}", src, re.S | re.M):
            name, params, body = m.groups()
            inputs = [p for p in re.findall(r"(\w+) \*C\.struct_ArrowArray", params) if not p.startswith("out")]
            if inputs and not re.search(r"\n\t\}, [^\n]+(\n\t\t[^\n]+)*\)\s*$", body):
                missing.append(f"{go.name}: {name} ({', '.join(inputs)})")
    assert not missing, "exports whose Arrow inputs run() cannot release when poisoned: " + "; ".join(missing)
