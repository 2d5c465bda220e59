"""`pip wheel .` compiles the Go library into a py3-none-<platform> wheel whose
package loads its own bundled libexitnet.so (not the source tree's)."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_bundles_the_library_and_works(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
        check=True,
        timeout=600,
    )
    (whl,) = glob.glob(str(wheels / "exitnet-*.whl"))
    assert "py3-none-linux" in whl
    names = zipfile.ZipFile(whl).namelist()
    assert "exitnet/libexitnet.so" in names and "exitnet/py.typed" in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), whl], check=True)
    env = {k: v for k, v in os.environ.items() if k != "EXITNET_LIBRARY"}
    env["PYTHONPATH"] = str(target)
    code = (
        "import exitnet, exitnet._lib as l; "
        "print(exitnet.__file__); print(l.library_path()); print(exitnet.get_num_threads())"
    )
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    pkg, libpath, threads = r.stdout.split("\n")[:3]
    assert pkg.startswith(str(target)) and libpath.startswith(str(target)), r.stdout
    assert int(threads) >= 1
