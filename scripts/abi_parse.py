"""The parsed view of include/exitnet.h for scripts/abi.py: the model (types, structs,
functions, enums, macros), the parser (pycparser after `gcc -E` with stub <stddef.h> and
<stdint.h>) and the struct layouts measured by compiling a probe with gcc."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
HEADER = ROOT / "include" / "exitnet.h"


# scalar C type -> (ctypes name, cgo name)
SCALARS = {
    "int": ("c_int", "C.int"),
    "unsigned int": ("c_uint", "C.uint"),
    "int8_t": ("c_int8", "C.int8_t"),
    "uint8_t": ("c_uint8", "C.uint8_t"),
    "int32_t": ("c_int32", "C.int32_t"),
    "uint32_t": ("c_uint32", "C.uint32_t"),
    "int64_t": ("c_int64", "C.int64_t"),
    "uint64_t": ("c_uint64", "C.uint64_t"),
    "size_t": ("c_size_t", "C.size_t"),
    "uintptr_t": ("c_size_t", "C.uintptr_t"),  # same width on every Linux target
    "float": ("c_float", "C.float"),
    "double": ("c_double", "C.double"),
    "char": ("c_char", "C.char"),
}


STUB_STDDEF = "typedef unsigned long size_t;\n#define NULL ((void*)0)\n"
STUB_STDINT = "".join(
    f"typedef {c} {n};\n"
    for n, c in [
        ("int8_t", "signed char"), ("uint8_t", "unsigned char"), ("int32_t", "int"),
        ("uint32_t", "unsigned int"), ("int64_t", "long"), ("uint64_t", "unsigned long"),
        ("uintptr_t", "unsigned long"),
    ]
)


# ---------------------------------------------------------------------------- model


@dataclasses.dataclass(frozen=True)
class CType:
    """A C type with const dropped: base (scalar, 'void', 'struct X', a typedef name or
    'funcptr'), pointer depth and array dimensions (struct fields only)."""

    base: str
    ptr: int = 0
    dims: tuple[int, ...] = ()

    def c(self, name: str = "") -> str:
        if self.base == "funcptr":
            return f"void (*{name})(void*)"
        s = self.base + "*" * self.ptr
        return (s + (" " + name if name else "") + "".join(f"[{d}]" for d in self.dims)).strip()


@dataclasses.dataclass
class Struct:
    cname: str  # 'struct ArrowSchema' or the typedef name
    pyname: str
    fields: list[tuple[str, CType, str]]  # name, type, exact C text of the declaration


@dataclasses.dataclass
class Func:
    name: str
    ret: CType
    params: list[tuple[str, CType]]


@dataclasses.dataclass
class Enum:
    name: str
    values: list[tuple[str, int]]

    def short(self, c: str) -> str:
        return re.sub(r"^EXITNET_(ERR_|POLICY_)?", "", c)


@dataclasses.dataclass
class ABI:
    structs: list[Struct]
    opaque: list[str]
    enums: list[Enum]
    funcs: list[Func]
    macros: dict[str, str]
    layouts: dict[str, tuple[int, dict[str, int]]] = dataclasses.field(default_factory=dict)


def _preprocess(header: Path, tmp: Path) -> str:
    stub = tmp / "stub"
    stub.mkdir(exist_ok=True)
    (stub / "stddef.h").write_text(STUB_STDDEF)
    (stub / "stdint.h").write_text(STUB_STDINT)
    cc = os.environ.get("CC", "gcc")
    return subprocess.run(
        [cc, "-E", "-P", "-nostdinc", "-I", str(stub), "-I", str(HEADER.parent), str(header)],
        check=True, capture_output=True, text=True,
    ).stdout


def parse(header: Path = HEADER, *, measure: bool = True) -> ABI:
    try:
        from pycparser import c_ast, c_parser
    except ImportError:
        sys.exit("scripts/abi.py needs pycparser: .venv/bin/pip install pycparser")

    with tempfile.TemporaryDirectory() as t:
        text = _preprocess(header, Path(t))
    ast = c_parser.CParser().parse(text, str(header))
    structs: list[Struct] = []
    defined: dict[str, Struct] = {}
    opaque: list[str] = []
    enums: list[Enum] = []
    funcs: list[Func] = []

    def ctype(node) -> CType:
        dims: list[int] = []
        ptr = 0
        while True:
            if isinstance(node, c_ast.ArrayDecl):
                if isinstance(node.dim, c_ast.Constant):
                    dims.append(int(node.dim.value, 0))
                node = node.type
            elif isinstance(node, c_ast.PtrDecl):
                if isinstance(node.type, c_ast.FuncDecl):
                    return CType("funcptr", 0, tuple(dims))
                ptr += 1
                node = node.type
            elif isinstance(node, c_ast.TypeDecl):
                t = node.type
                if isinstance(t, c_ast.IdentifierType):
                    base = " ".join(t.names)
                elif isinstance(t, c_ast.Struct):
                    base = "struct " + t.name
                elif isinstance(t, c_ast.Enum):
                    base = "int"
                else:
                    raise ValueError(f"unsupported type node {t!r}")
                return CType(base, ptr, tuple(dims))
            else:
                raise ValueError(f"unsupported declarator {node!r}")

    def field_text(decl) -> str:
        from pycparser import c_generator

        return c_generator.CGenerator().visit(decl)

    def add_struct(s, cname: str, pyname: str) -> None:
        fields = [(d.name, ctype(d.type), field_text(d)) for d in s.decls]
        st = Struct(cname, pyname, fields)
        structs.append(st)
        defined["struct " + s.name] = st
        defined[cname] = st

    stub_types = {"size_t", "int8_t", "uint8_t", "int32_t", "uint32_t", "int64_t", "uint64_t", "uintptr_t"}
    for ext in ast.ext:
        if isinstance(ext, c_ast.Typedef):
            if ext.name in stub_types:
                continue
            t = ext.type.type if isinstance(ext.type, c_ast.TypeDecl) else None
            if isinstance(t, c_ast.Struct):
                if t.decls is not None:
                    add_struct(t, ext.name, ext.name)
                elif ("struct " + t.name) in defined:
                    raise ValueError(f"typedef of an already defined struct {t.name} is not supported")
                else:
                    opaque.append(ext.name)
                continue
            raise ValueError(f"unsupported typedef {ext.name}")
        if isinstance(ext, c_ast.Decl):
            t = ext.type
            if isinstance(t, c_ast.Struct) and t.decls is not None:
                add_struct(t, "struct " + t.name, t.name)
            elif isinstance(t, c_ast.Enum):
                vals, nxt = [], 0
                for e in t.values.enumerators:
                    v = int(e.value.value, 0) if e.value is not None else nxt
                    vals.append((e.name, v))
                    nxt = v + 1
                enums.append(Enum(t.name, vals))
            elif isinstance(t, c_ast.FuncDecl):
                params = []
                for p in (t.args.params if t.args else []):
                    if isinstance(p, c_ast.Typename):  # (void)
                        continue
                    pt = ctype(p.type)
                    if pt.dims:  # an array parameter decays to a pointer
                        pt = CType(pt.base, pt.ptr + 1)
                    params.append((p.name, pt))
                funcs.append(Func(ext.name, ctype(t.type), params))
            else:
                raise ValueError(f"unsupported declaration {ext.name}")

    macros = dict(re.findall(r"^#\s*define\s+(EXITNET_\w+)\s+(.+?)\s*$", header.read_text(), re.M))
    abi = ABI(structs, opaque, enums, funcs, macros)
    if measure:
        abi.layouts = measure_layouts(abi)
    return abi


def measure_layouts(abi: ABI) -> dict[str, tuple[int, dict[str, int]]]:
    """sizeof and offsetof of every struct, as gcc lays out the public header."""
    lines = ["#include <stddef.h>", "#include <stdio.h>", '#include "exitnet.h"', "int main(void) {"]
    for s in abi.structs:
        lines.append(f'  printf("S %s %zu\\n", sizeof({s.cname}));'.replace("%s", s.pyname, 1))
        for f, _, _ in s.fields:
            lines.append(f'  printf("F {s.pyname} {f} %zu\\n", offsetof({s.cname}, {f}));')
    lines += ["  return 0;", "}"]
    with tempfile.TemporaryDirectory() as t:
        src, exe = Path(t) / "probe.c", Path(t) / "probe"
        src.write_text("\n".join(lines) + "\n")
        cc = os.environ.get("CC", "gcc")
        subprocess.run([cc, "-std=c99", "-I", str(HEADER.parent), "-o", str(exe), str(src)], check=True)
        out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    layouts: dict[str, tuple[int, dict[str, int]]] = {}
    for line in out.splitlines():
        parts = line.split()
        if parts[0] == "S":
            layouts[parts[1]] = (int(parts[2]), {})
        else:
            layouts[parts[1]][1][parts[2]] = int(parts[3])
    return layouts
