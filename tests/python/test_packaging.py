"""`pip wheel .` compiles the Go library into a py3-none-<platform> wheel whose
package loads its own bundled libexitnet.so (not the source tree's) and carries the
header, exitnet.pc and LICENSE; a build without a recent enough Go fails first,
naming the version. (`make test-wheel` installs the repaired manylinux wheel in a
fresh environment without Go.)"""

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
    assert "exitnet/include/exitnet.h" in names and "exitnet/pkgconfig/exitnet.pc" in names
    (lic,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert b"Apache License" in zipfile.ZipFile(whl).read(lic)
    meta = zipfile.ZipFile(whl).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in meta
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


def _fake_go(tmp_path: Path, version: str | None) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    if version is not None:
        go = bin_dir / "go"
        go.write_text(f"#!/bin/sh\necho go{version}\n")
        go.chmod(0o755)
    path = [str(bin_dir)] + [d for d in os.environ["PATH"].split(":") if d and not os.path.exists(os.path.join(d, "go"))]
    return dict(os.environ, PATH=":".join(path))


def test_build_without_go_names_the_version_needed(tmp_path: Path) -> None:
    need = next(line.split()[1] for line in (ROOT / "go.mod").read_text().splitlines() if line.startswith("go "))
    for version, says in [(None, "no 'go' on PATH"), ("1.20.3", "is Go 1.20.3")]:
        r = subprocess.run(["sh", str(ROOT / "scripts" / "build-lib.sh"), str(tmp_path / "out")],
                           env=_fake_go(tmp_path / str(version), version), capture_output=True, text=True, timeout=60)
        assert r.returncode == 1
        first = r.stderr.splitlines()[0]
        assert f"needs Go >= {need}" in first and says in first, r.stderr
        assert "https://go.dev/dl/" in r.stderr
        assert not (tmp_path / "out" / "libexitnet.so").exists()
