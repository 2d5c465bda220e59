"""Hatchling build hook: compiles the Go library into the wheel.

`pip install .` runs scripts/build-lib.sh (Go >= the go.mod version and gcc; it
fails in its first lines naming them when they are missing) and puts into the
exitnet package: libexitnet.so (SONAME libexitnet.so, the only name a wheel can
ship), include/exitnet.h and pkgconfig/exitnet.pc (relocatable, ${pcfiledir}), so
a C user of the pip install needs nothing else (`python -m exitnet config
--cflags --libs`). The wheel needs no CPython ABI (ctypes): it is tagged
py3-none-<platform>; `make wheel` then repairs it to a manylinux tag with
auditwheel. Editable installs (`pip install -e .`) build the library into
python/exitnet/ in place.
"""

from __future__ import annotations

import os
import re
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class GoLibraryHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        out = root / "build" / "wheel-lib"
        env = dict(os.environ)
        if version != "editable":
            env["EXITNET_SONAME"] = "libexitnet.so"
        try:
            subprocess.run(["sh", str(root / "scripts" / "build-lib.sh"), str(out)], check=True, env=env)
        except subprocess.CalledProcessError as e:
            raise SystemExit(
                f"exitnet: building the native library failed (scripts/build-lib.sh exited with "
                f"{e.returncode}); the lines above say why."
            ) from None
        lib = out / "libexitnet.so"
        if version == "editable":
            dst = root / "python" / "exitnet" / "libexitnet.so"
            tmp = dst.with_suffix(".so.tmp")
            tmp.write_bytes(lib.read_bytes())
            os.replace(tmp, dst)
        else:
            pc = out / "exitnet.pc"
            pc.write_text(_relocatable_pc(root, self.metadata.version))
            build_data["force_include"][str(lib)] = "exitnet/libexitnet.so"
            build_data["force_include"][str(root / "include" / "exitnet.h")] = "exitnet/include/exitnet.h"
            build_data["force_include"][str(pc)] = "exitnet/pkgconfig/exitnet.pc"
        build_data["pure_python"] = False
        plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
        build_data["tag"] = f"py3-none-{plat}"


def _relocatable_pc(root: Path, version: str) -> str:
    """capi/exitnet.pc.in with the prefix the .pc file's own directory's parent
    (the installed exitnet package): include/ and libexitnet.so sit there."""
    text = (root / "capi" / "exitnet.pc.in").read_text()
    text, n = re.subn(r"(?m)^libdir=.*$", "libdir=${prefix}", text)
    if n != 1:
        raise SystemExit("exitnet: capi/exitnet.pc.in has no libdir= line")
    return text.replace("@PREFIX@", "${pcfiledir}/..").replace("@VERSION@", version)
