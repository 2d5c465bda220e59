"""Smoke test of an installed wheel, run in a fresh virtual environment outside the
source tree with no Go on PATH (scripts/test-wheel.sh): policy, Fisher, runtime and
the C header/library shipped in the wheel, each against a numpy reference."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import exitnet
from exitnet import _lib, fisher, policy, runtime


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def check_install(work: Path) -> None:
    assert shutil.which("go") is None, "go is on PATH: this test must run without Go"
    here = Path(exitnet.__file__).resolve()
    assert "site-packages" in str(here) and not str(here).startswith(str(Path(__file__).resolve().parents[2])), here
    assert Path(_lib.library_path()).parent == here.parent
    assert exitnet.library_version() == exitnet.__version__
    out = subprocess.run([str(Path(sys.executable).parent / "exitnet"), "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith(f"exitnet {exitnet.__version__} "), out
    print("install:", here.parent, exitnet.__version__)


def check_policy() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 500, 7)).astype(np.float32) * 3
    tau = 0.6
    got = policy.assign(logits, tau)
    conf = softmax(logits.astype(np.float64)).max(-1)  # (K, N)
    ok = conf >= tau
    ok[-1] = True
    exits = ok.argmax(0)
    preds = logits.argmax(-1)[exits, np.arange(500)]
    np.testing.assert_array_equal(got.column("exit").to_numpy(), exits)
    np.testing.assert_array_equal(got.column("prediction").to_numpy(), preds)
    print("policy: assign matches numpy on 500 samples x 3 exits")


def check_fisher() -> None:
    rng = np.random.default_rng(1)
    g = rng.normal(size=(40, 6)).astype(np.float32)
    with fisher.FisherAccumulator({"w": (2, 3)}, label_mode="empirical") as acc:
        acc.update_rows(g)
        acc.add_samples(40)
        f = acc.compute()["w"]
    ref = (g.astype(np.float64) ** 2).mean(0).reshape(2, 3)
    np.testing.assert_allclose(f, ref, rtol=1e-5)
    print("fisher: diagonal Fisher matches numpy")


def check_runtime(work: Path) -> None:
    ref = np.load(work / "reference.npz")
    x, logits = ref["x"], ref["logits"]
    with runtime.Model(work / "model.exitnet") as m:
        out = m.predict(x, thresholds=None, return_logits=True, output="numpy")
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(out["prediction"], logits[-1].argmax(-1))
    print(f"runtime: {len(x)} samples, logits of {logits.shape[0]} exits match torch")


C_PROGRAM = r"""
#include <stdio.h>
#include <string.h>
#include <exitnet.h>
int main(int argc, char** argv) {
  exitnet_model* m = NULL;
  int k = 0;
  if (argc < 2 || strcmp(exitnet_version(), EXITNET_VERSION_STRING) != 0) return 1;
  if (exitnet_model_load(&m, argv[1]) != EXITNET_OK) { fprintf(stderr, "%s\n", exitnet_last_error()); return 1; }
  if (exitnet_model_num_exits(&k, m) != EXITNET_OK) return 1;
  printf("%s %d\n", exitnet_version(), k);
  return exitnet_model_free(&m);
}
"""


def check_c(work: Path) -> None:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        print("c: no C compiler, skipped")
        return
    src, exe = work / "prog.c", work / "prog"
    src.write_text(C_PROGRAM)
    flags = subprocess.run([sys.executable, "-m", "exitnet", "config", "--cflags", "--libs"], capture_output=True,
                           text=True, check=True).stdout.split()
    subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-o", str(exe), str(src), *flags], check=True)
    out = subprocess.run([str(exe), str(work / "model.exitnet")], capture_output=True, text=True, check=True).stdout
    assert out.split() == [exitnet.__version__, "4"], out
    pc = subprocess.run([sys.executable, "-m", "exitnet", "config", "--pkgconfigdir"], capture_output=True,
                        text=True, check=True).stdout.strip()
    if shutil.which("pkg-config"):
        env = dict(os.environ, PKG_CONFIG_PATH=pc)
        pflags = subprocess.run(["pkg-config", "--cflags", "--libs", "exitnet"], capture_output=True, text=True,
                                check=True, env=env).stdout.split()
        subprocess.run([cc, "-std=c99", "-o", str(exe), str(src), *pflags], check=True)
        subprocess.run([str(exe), str(work / "model.exitnet")], check=True, capture_output=True)
    print("c: a program built with `python -m exitnet config --cflags --libs` (and pkg-config) runs")


def main() -> None:
    work = Path(sys.argv[1])
    check_install(work)
    check_policy()
    check_fisher()
    check_runtime(work)
    check_c(work)
    print("wheel smoke test passed")


if __name__ == "__main__":
    main()
