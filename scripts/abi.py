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

Python pointer convention (one rule, no per-function choices): a pointer to a number
(float*, int64_t*, ...) is ctypes.c_void_p, which accepts a numpy address
(x.ctypes.data), ctypes.byref(...), a ctypes array or None at C speed; strings are
c_char_p; struct pointers are POINTER(Struct); opaque handles are c_void_p. Inside
structs, number pointers keep their type (POINTER(c_float)).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = ROOT / "include" / "exitnet.h"
DEBUG_HEADER = ROOT / "tests" / "c" / "exitnet_debug.h"
OUT_PY = ROOT / "python" / "exitnet" / "_abi.py"
OUT_H = ROOT / "capi" / "exitnet_types.h"
OUT_GO = ROOT / "capi" / "abi_gen.go"
OUT_C = ROOT / "tests" / "c" / "test_abi.c"

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

# C enum -> (Go expression converting an int to the golib mirror, whether its String() is
# lower case). A C enum without an entry here fails `check`: add its Go mirror.
GO_ENUMS = {
    "exitnet_status": ("xerr.Status", False),
    "exitnet_policy_measure": ("policy.Measure", True),
    "exitnet_policy_method": ("policy.Method", True),
}
GO_IMPORTS = {
    "xerr": "github.com/exitnet/exitnet/golib/xerr",
    "policy": "github.com/exitnet/exitnet/golib/policy",
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


# ---------------------------------------------------------------------------- Python


def _py_struct_field(t: CType, structs: dict[str, Struct]) -> str:
    if t.base == "funcptr":
        s = "_c.c_void_p"
    elif t.base == "void":
        s = "_c.c_void_p"
        for _ in range(t.ptr - 1):
            s = f"_c.POINTER({s})"
    elif t.base == "char" and t.ptr >= 1:
        s = "_c.c_char_p"
        for _ in range(t.ptr - 1):
            s = f"_c.POINTER({s})"
    else:
        s = _py_base(t.base, structs)
        for _ in range(t.ptr):
            s = f"_c.POINTER({s})"
    return s + "".join(f" * {d}" for d in t.dims)


def _py_base(base: str, structs: dict[str, Struct]) -> str:
    if base in SCALARS:
        return "_c." + SCALARS[base][0]
    if base in structs:
        return structs[base].pyname
    raise ValueError(f"no Python mapping for C type {base!r}")


def _py_arg(t: CType, structs: dict[str, Struct], opaque: set[str]) -> str:
    if t.ptr == 0:
        if t.base == "void":
            return "None"
        return _py_base(t.base, structs)
    if t.base == "char":
        s = "_c.c_char_p"
        for _ in range(t.ptr - 1):
            s = f"_c.POINTER({s})"
        return s
    if t.base == "void" or t.base in opaque or t.base in SCALARS:
        # numbers, untyped memory and handles: an address (see the module doc)
        s = "_c.c_void_p"
        for _ in range(t.ptr - 1):
            s = f"_c.POINTER({s})"
        return s
    s = _py_base(t.base, structs)
    for _ in range(t.ptr):
        s = f"_c.POINTER({s})"
    return s


def gen_python(abi: ABI) -> str:
    by = {}
    for s in abi.structs:
        by[s.cname] = s
        if s.cname.startswith("struct "):
            by[s.cname] = s
    for s in abi.structs:  # 'struct exitnet_x' also names a typedef'd struct
        by.setdefault("struct " + s.pyname, s)
    opaque = set(abi.opaque)
    out = [
        '"""The C ABI of libexitnet as ctypes declarations.',
        "",
        "GENERATED by scripts/abi.py from include/exitnet.h: do not edit; change the header",
        "and run `make abi`. tests/python/test_abi.py fails when this file is stale.",
        '"""',
        "",
        "# fmt: off",
        "import ctypes as _c",
        "",
        f"VERSION = {_macro_str(abi, 'EXITNET_VERSION_STRING')!r}",
        f"ABI_VERSION = {int(abi.macros['EXITNET_ABI_VERSION'])}",
        "",
    ]
    for e in abi.enums:
        out.append(f"# enum {e.name}")
        for n, v in e.values:
            out.append(f"{n} = {v}")
        key = e.name.removeprefix("exitnet_").upper()
        out.append(f"{key} = {{" + ", ".join(f"{e.short(n)!r}: {v}" for n, v in e.values) + "}")
        out.append("")
    for s in abi.structs:
        out += ["", f"class {s.pyname}(_c.Structure):", f'    """{s.cname}"""', ""]
    out.append("")
    for s in abi.structs:
        out.append(f"{s.pyname}._fields_ = [")
        for n, t, _ in s.fields:
            out.append(f"    ({n!r}, {_py_struct_field(t, by)}),")
        out.append("]")
    out += ["", "#: sizeof and {field: offsetof} of every struct as gcc laid out include/exitnet.h",
            "LAYOUTS = {"]
    for name, (size, offs) in abi.layouts.items():
        out.append(f"    {name!r}: ({size}, {offs!r}),")
    out += ["}", "", "#: name -> (restype, argtypes) of every function of include/exitnet.h", "FUNCTIONS = {"]
    for f in abi.funcs:
        ret = _py_arg(f.ret, by, opaque)
        args = ", ".join(_py_arg(t, by, opaque) for _, t in f.params)
        out.append(f"    {f.name!r}: ({ret}, [{args}]),")
    out += ["}", ""]
    return "\n".join(out)


def _macro_str(abi: ABI, name: str) -> str:
    v = abi.macros[name]
    m = re.fullmatch(r'"(.*)"', v)
    if not m:
        raise ValueError(f"{name} is not a string literal: {v}")
    return m.group(1)


# ---------------------------------------------------------------------------- C (cgo)


def gen_types_header(abi: ABI) -> str:
    out = [
        "/* GENERATED by scripts/abi.py from include/exitnet.h: do not edit; run `make abi`.",
        " *",
        " * The public header's types, enums and version macros without its prototypes, for",
        " * the cgo preamble: cgo declares every //export function itself (without const), and",
        " * those declarations would clash with the header's prototypes. A file that includes",
        " * include/exitnet.h first gets the definitions from there (same guard). */",
        "#ifndef EXITNET_TYPES_H",
        "#define EXITNET_TYPES_H",
        "",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "",
        "#ifndef EXITNET_H",
    ]
    for k, v in abi.macros.items():
        if k != "EXITNET_H":
            out.append(f"#define {k} {v}")
    arrow = [s for s in abi.structs if s.pyname in ("ArrowSchema", "ArrowArray")]
    if arrow:
        out += ["", "#ifndef ARROW_C_DATA_INTERFACE", "#  define ARROW_C_DATA_INTERFACE",
                "#  define ARROW_FLAG_DICTIONARY_ORDERED 1", "#  define ARROW_FLAG_NULLABLE 2",
                "#  define ARROW_FLAG_MAP_KEYS_SORTED 4"]
        for s in arrow:
            out += _c_struct(s)
        out.append("#endif")
    for e in abi.enums:
        out += ["", f"enum {e.name} {{"]
        out += [f"  {n} = {v}," for n, v in e.values]
        out.append("};")
    out.append("")
    for o in abi.opaque:
        out.append(f"typedef struct {o} {o};")
    for s in abi.structs:
        if s in arrow:
            continue
        out.append("")
        out += _c_struct(s)
    out += ["#endif  /* EXITNET_H */", ""]
    for e in abi.enums:
        out += [f"/* The name of a value of enum {e.name} without its prefix; NULL if unknown. */",
                f"static inline const char* xnet_{e.name}_name(int v) {{", "  switch (v) {"]
        out += [f'    case {n}: return "{e.short(n)}";' for n, _ in e.values]
        out += ["    default: return NULL;", "  }", "}", ""]
    out += ["#endif  /* EXITNET_TYPES_H */", ""]
    return "\n".join(out)


def _c_struct(s: Struct) -> list[str]:
    if s.cname.startswith("struct "):
        head, tail = f"{s.cname} {{", "};"
    else:
        head, tail = f"typedef struct {s.cname} {{", f"}} {s.cname};"
    return [head] + [f"  {text};" for _, _, text in s.fields] + [tail]


# ---------------------------------------------------------------------------- Go


GO_KEYWORDS = {"type", "func", "var", "range", "map", "chan", "go", "select", "default", "package"}


def _go_struct(s: Struct) -> str:
    return "C.struct_" + s.pyname if s.cname.startswith("struct ") else "C." + s.cname


def gen_go(abi: ABI) -> str:
    out = [
        "// Code generated by scripts/abi.py from include/exitnet.h; DO NOT EDIT.",
        "",
        "package main",
        "",
        "/*",
        '#include "shim.h"',
        "*/",
        'import "C"',
        "",
        "import (",
        '\t"fmt"',
        '\t"strings"',
        '\t"unsafe"',
        "",
    ]
    used = sorted({GO_ENUMS[e.name][0].split(".")[0] for e in abi.enums if e.name in GO_ENUMS})
    out += [f'\t"{GO_IMPORTS[p]}"' for p in used]
    out += [")", ""]
    out += [
        "// abiMismatches compares cgo's view of every struct of the public header (sizes and",
        "// field offsets) and golib's mirrors of its enums (values and names) with what",
        "// scripts/abi.py measured and parsed. Empty when they agree; abi_test.go calls it.",
        "func abiMismatches() []string {",
        "\tvar bad []string",
        "\tlayout := func(what string, got, want uintptr) {",
        "\t\tif got != want {",
        '\t\t\tbad = append(bad, fmt.Sprintf("%s: Go sees %d, the header %d", what, got, want))',
        "\t\t}",
        "\t}",
    ]
    for s in abi.structs:
        size, offs = abi.layouts[s.pyname]
        v = "v" + s.pyname
        out.append(f"\tvar {v} {_go_struct(s)}")
        out.append(f'\tlayout("sizeof({s.cname})", unsafe.Sizeof({v}), {size})')
        for f, _, _ in s.fields:
            gf = "_" + f if f in GO_KEYWORDS else f
            out.append(f'\tlayout("offsetof({s.cname}, {f})", unsafe.Offsetof({v}.{gf}), {offs[f]})')
    out += [
        "\tname := func(what, got, want string) {",
        "\t\tif got != want {",
        '\t\t\tbad = append(bad, fmt.Sprintf("%s: Go says %q, the header %q", what, got, want))',
        "\t\t}",
        "\t}",
    ]
    for e in abi.enums:
        if e.name not in GO_ENUMS:
            continue
        conv, lower = GO_ENUMS[e.name]
        for n, v in e.values:
            want = f'"{e.short(n).lower() if lower else e.short(n)}"'
            out.append(f'\tname("{conv}({n})", {conv}(C.{n}).String(), {want})')
        last = max(v for _, v in e.values) + 1
        out.append(f'\tif s := {conv}({last}).String(); !strings.Contains(s, "(") {{')
        out.append(f'\t\tbad = append(bad, fmt.Sprintf("{conv}({last}) is %q: golib has a value enum {e.name} lacks", s))')
        out.append("\t}")
    out += ["\treturn bad", "}", ""]
    return "\n".join(out)


def _go_type(t: CType, structs: dict[str, Struct], opaque: set[str]) -> str:
    if t.base == "void":
        if t.ptr == 0:
            return ""
        return "*" * (t.ptr - 1) + "unsafe.Pointer"
    if t.base in SCALARS:
        b = SCALARS[t.base][1]
    elif t.base in structs:
        b = _go_struct(structs[t.base])
    elif t.base in opaque:
        b = "C." + t.base
    else:
        raise ValueError(f"no Go mapping for {t.base}")
    return "*" * t.ptr + b


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


# ---------------------------------------------------------------------------- C test


def gen_c_test(abi: ABI) -> str:
    out = [
        "/* GENERATED by scripts/abi.py from include/exitnet.h: do not edit; run `make abi`.",
        " *",
        " * The C compiler's layout of every struct of the installed header and every enum",
        " * value against what scripts/abi.py measured (the values ctypes and cgo are checked",
        " * against too), and the version and status names the library reports. */",
        "#include <stddef.h>",
        "#include <stdio.h>",
        "#include <string.h>",
        "",
        "#include <exitnet.h>",
        "",
        "static int failures = 0;",
        "",
        "static void expect(const char* what, long long got, long long want) {",
        "  if (got != want) {",
        '    fprintf(stderr, "FAIL %s: %lld, expected %lld\\n", what, got, want);',
        "    failures++;",
        "  }",
        "}",
        "",
        "static void expect_str(const char* what, const char* got, const char* want) {",
        "  if (got == NULL || strcmp(got, want) != 0) {",
        '    fprintf(stderr, "FAIL %s: \\"%s\\", expected \\"%s\\"\\n", what, got ? got : "(null)", want);',
        "    failures++;",
        "  }",
        "}",
        "",
        "int main(void) {",
    ]
    for s in abi.structs:
        size, offs = abi.layouts[s.pyname]
        out.append(f'  expect("sizeof({s.cname})", (long long)sizeof({s.cname}), {size});')
        for f, _, _ in s.fields:
            out.append(f'  expect("offsetof({s.cname}, {f})", (long long)offsetof({s.cname}, {f}), {offs[f]});')
    for e in abi.enums:
        for n, v in e.values:
            out.append(f'  expect("{n}", {n}, {v});')
    status = next((e for e in abi.enums if e.name == "exitnet_status"), None)
    if status:
        for n, _ in status.values:
            out.append(f'  expect_str("exitnet_status_name({n})", exitnet_status_name({n}), "{status.short(n)}");')
    out += [
        '  expect("exitnet_abi_version()", exitnet_abi_version(), EXITNET_ABI_VERSION);',
        '  expect_str("exitnet_version()", exitnet_version(), EXITNET_VERSION_STRING);',
        '  if (failures == 0) printf("test_abi: %d checks passed\\n", ' + str(_count_c_checks(abi)) + ");",
        "  return failures != 0;",
        "}",
        "",
    ]
    return "\n".join(out)


def _count_c_checks(abi: ABI) -> int:
    n = sum(1 + len(s.fields) for s in abi.structs) + sum(len(e.values) for e in abi.enums)
    n += sum(len(e.values) for e in abi.enums if e.name == "exitnet_status")
    return n + 2


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
            bad.append(f"enum {e.name}: no Go mirror named in scripts/abi.py GO_ENUMS")
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
