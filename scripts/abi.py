#!/usr/bin/env python3
"""One C ABI description, many views: include/exitnet.h is the source.

    python scripts/abi.py gen     # rewrite the generated files below from the header
    python scripts/abi.py check   # fail (exit 1) listing every disagreement

The header is parsed with pycparser (after `gcc -E` with stub <stddef.h>/<stdint.h>, so
no system header reaches the parser) and the struct layouts are measured by compiling
a probe with gcc. From that one description this script generates:

  python/exitnet/_abi.py     ctypes Structures, prototypes (restype, argtypes) of every
                             function, enum values, version, and the measured layouts
  capi/exitnet_types.h       the header's types, enums and version without its
                             prototypes, for the cgo preamble (cgo's declarations of
                             the //export functions clash with the const-qualified
                             prototypes), plus one name function per enum
  capi/abi_gen.go            Go's view of every struct (unsafe.Sizeof/Offsetof) and of
                             the enums mirrored in golib, compared at test time
  tests/c/test_abi.c         the same layout and enum checks, compiled as C, plus the
                             version and status names the library reports

and it checks what cannot be generated: every //export in capi/*.go against its
prototype (after the cgo type mapping), that every prototype is implemented once (Go
export or C function in capi/*.c), the version macros, and that the generated files
are up to date. tests/python/test_abi.py runs `check`; `make abi` runs `gen`.
The parser and the model are in scripts/abi_parse.py, the generators in scripts/abi_gen.py.

Python pointer convention (one rule, no per-function choices): a pointer to a number
(float*, int64_t*, ...) is ctypes.c_void_p, which accepts a numpy address
(x.ctypes.data), ctypes.byref(...), a ctypes array or None at C speed; strings are
c_char_p; struct pointers are POINTER(Struct); opaque handles are c_void_p. Inside
structs, number pointers keep their type (POINTER(c_float)).
"""

from __future__ import annotations

import argparse
import difflib
import re
import shutil
import subprocess
import sys
from pathlib import Path

# The parser and the generators are modules beside this script (its directory is on
# sys.path when run as a script, not when a test loads it by path).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from abi_gen import GO_ENUMS, _go_type, _macro_str, gen_c_test, gen_go, gen_python, gen_types_header  # noqa: E402
from abi_parse import ABI, ROOT, parse  # noqa: E402

DEBUG_HEADER = ROOT / "tests" / "c" / "exitnet_debug.h"
OUT_PY = ROOT / "python" / "exitnet" / "_abi.py"
OUT_H = ROOT / "capi" / "exitnet_types.h"
OUT_GO = ROOT / "capi" / "abi_gen.go"
OUT_C = ROOT / "tests" / "c" / "test_abi.c"


# ---------------------------------------------------------------------------- exports


_EXPORT = re.compile(r"^//export (\w+)\s*\nfunc (\w+)\(", re.M)


def go_exports(files: list[Path]) -> dict[str, tuple[Path, list[tuple[str, str]], str]]:
    """Every //export in the Go files: name -> (file, [(param, type)], result type)."""
    found = {}
    for path in files:
        src = path.read_text()
        for m in _EXPORT.finditer(src):
            name = m.group(1)
            i, depth = m.end(), 1
            while depth:
                depth += {"(": 1, ")": -1}.get(src[i], 0)
                i += 1
            plist = " ".join(src[m.end(): i - 1].split())
            result = re.match(r"\s*([^{]*?)\s*\{", src[i:]).group(1)
            params: list[tuple[str, str]] = []
            pending: list[str] = []
            for part in [p.strip() for p in plist.split(",") if p.strip()]:
                bits = part.split(None, 1)
                if len(bits) == 1:
                    pending.append(bits[0])
                    continue
                for n in pending:
                    params.append((n, bits[1]))
                pending = []
                params.append((bits[0], bits[1]))
            found[name] = (path, params, result)
    return found


def c_definitions(files: list[Path]) -> set[str]:
    names = set()
    for path in files:
        names |= set(re.findall(r"^[\w ]+?\**\s*(exitnet_\w+)\([^;{]*\)\s*\{", path.read_text(), re.M))
    return names


# ---------------------------------------------------------------------------- driver


def generated(abi: ABI) -> dict[Path, str]:
    return {
        OUT_PY: gen_python(abi),
        OUT_H: gen_types_header(abi),
        OUT_GO: _gofmt(gen_go(abi)),
        OUT_C: gen_c_test(abi),
    }


def _gofmt(src: str) -> str:
    gofmt = shutil.which("gofmt")
    if gofmt is None:
        return src
    return subprocess.run([gofmt], input=src, check=True, capture_output=True, text=True).stdout


def check(abi: ABI) -> list[str]:
    bad: list[str] = []
    for path, text in generated(abi).items():
        cur = path.read_text() if path.exists() else ""
        if cur != text:
            diff = "".join(list(difflib.unified_diff(
                cur.splitlines(True), text.splitlines(True), str(path.relative_to(ROOT)), "regenerated"))[:40])
            bad.append(f"{path.relative_to(ROOT)} is stale (run `make abi`):\n{diff}")

    m = abi.macros
    want = f"{m.get('EXITNET_VERSION_MAJOR')}.{m.get('EXITNET_VERSION_MINOR')}.{m.get('EXITNET_VERSION_PATCH')}"
    if _macro_str(abi, "EXITNET_VERSION_STRING") != want:
        bad.append(f"EXITNET_VERSION_STRING {m['EXITNET_VERSION_STRING']} != MAJOR.MINOR.PATCH {want}")
    for e in abi.enums:
        if e.name not in GO_ENUMS:
            bad.append(f"enum {e.name}: no Go mirror named in scripts/abi_gen.py GO_ENUMS")
        if sorted(v for _, v in e.values) != list(range(len(e.values))):
            bad.append(f"enum {e.name}: values must be 0..n-1 (golib's name tables index by value)")

    # every prototype implemented exactly once, and every Go export agreeing with it
    funcs = {f.name: f for f in abi.funcs}
    if DEBUG_HEADER.exists():
        for f in parse(DEBUG_HEADER, measure=False).funcs:
            funcs.setdefault(f.name, f)
    structs = {}
    for s in abi.structs:
        structs[s.cname] = s
        structs.setdefault("struct " + s.pyname, s)
    opaque = set(abi.opaque)
    exports = go_exports(sorted((ROOT / "capi").glob("*.go")))
    cdefs = c_definitions(sorted((ROOT / "capi").glob("*.c")))
    for name, f in funcs.items():
        impl = (name in exports) + (name in cdefs)
        if impl != 1:
            bad.append(f"{name}: implemented {impl} times in capi/ (a Go //export or a C function), expected once")
    for name, (path, params, result) in exports.items():
        where = f"{path.relative_to(ROOT)}: //export {name}"
        f = funcs.get(name)
        if f is None:
            bad.append(f"{where} is not declared in include/exitnet.h")
            continue
        want_ret = _go_type(f.ret, structs, opaque)
        if result != want_ret:
            bad.append(f"{where} returns {result or 'nothing'}, the header {f.ret.c()} ({want_ret})")
        if len(params) != len(f.params):
            bad.append(f"{where} has {len(params)} parameters, the header {len(f.params)}")
            continue
        for i, ((gn, gt), (cn, ct)) in enumerate(zip(params, f.params)):
            wt = _go_type(ct, structs, opaque)
            if gt != wt:
                bad.append(f"{where} parameter {i} ({gn} {gt}) does not match the header's {ct.c(cn)} (cgo: {wt})")
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cmd", choices=["gen", "check"])
    args = ap.parse_args(argv)
    abi = parse()
    if args.cmd == "gen":
        for path, text in generated(abi).items():
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
                print(f"wrote {path.relative_to(ROOT)}")
        return 0
    bad = check(abi)
    for b in bad:
        print("ABI:", b, file=sys.stderr)
    if not bad:
        print(f"ABI: {len(abi.funcs)} functions, {len(abi.structs)} structs, {len(abi.enums)} enums agree "
              "(header, Python, Go exports, generated files)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
