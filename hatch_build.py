"""Hatchling build hook: compiles the Go library into the wheel.

`pip install .` runs scripts/build-lib.sh (go build -buildmode=c-shared, version
script, SONAME) and puts libexitnet.so into the exitnet package. The wheel needs
no CPython ABI (ctypes), so it is tagged py3-none-<platform>. Editable installs
(`pip install -e .`) build the library into python/exitnet/ in place.
"""

from __future__ import annotations

import os
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
        subprocess.run(["sh", str(root / "scripts" / "build-lib.sh"), str(out)], check=True, env=env)
        lib = out / "libexitnet.so"
        if version == "editable":
            dst = root / "python" / "exitnet" / "libexitnet.so"
            tmp = dst.with_suffix(".so.tmp")
            tmp.write_bytes(lib.read_bytes())
            os.replace(tmp, dst)
        else:
            build_data["force_include"][str(lib)] = "exitnet/libexitnet.so"
        build_data["pure_python"] = False
        plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
        build_data["tag"] = f"py3-none-{plat}"
