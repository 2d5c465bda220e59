"""Per-call overhead of the C ABI from Python (ctypes), side by side:

- a bare ctypes call of a C-only function (the floor of any binding),
- the cheapest call into Go through exitnet's checked wrapper,
- a call that exports one numpy matrix as Arrow (zero-copy) and imports it in Go.

and where the time of a numpy input goes (process CPU time, best of 5): the dtype/contiguity
check, pyarrow's array construction (as_matrix), its C Data export, and the rest (the Go side's
Arrow import and release, the call, the status check). Then the same Fisher rows update
(FisherAccumulator.update_rows) with a numpy input through the raw-pointer default path and
through the Arrow path it replaced (the input wrapped as pyarrow in the timed call, as the old
default did), 1×100 (almost no work: the difference is the per-input cost) and 256×100.

Run: .venv/bin/python bench/bench_overhead.py
"""

from __future__ import annotations

import ctypes
import os
import time
import timeit

import numpy as np

import exitnet
from exitnet import _core, _lib


def per_call(fn, n: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e9


def main() -> None:
    lib = _lib.lib()
    raw = lib.exitnet_abi_version
    out = ctypes.c_int()
    getter = _lib.fn("exitnet_get_num_threads")
    x = np.zeros((256, 100), dtype=np.float32)
    c_only = per_call(raw, 200_000)
    go_raw = per_call(lambda: getter(ctypes.byref(out)), 200_000)
    go_checked = per_call(exitnet.get_num_threads, 100_000)
    arrow = per_call(lambda: _core.data_address(x), 20_000)
    print("Python → C ABI per-call overhead (ns/call)")
    print(f"  {'ctypes, C-only function (floor)':46s} {c_only:9.0f}")
    print(f"  {'ctypes, enters Go (no status check)':46s} {go_raw:9.0f}  ({go_raw / c_only:.1f}x floor)")
    print(f"  {'exitnet.get_num_threads() (checked wrapper)':46s} {go_checked:9.0f}  ({go_checked / c_only:.1f}x floor)")
    print(f"  {'numpy 256x100 → Arrow → Go import':46s} {arrow:9.0f}  ({arrow / go_checked:.1f}x a checked call)")

    from exitnet import _arrow

    m = _arrow.as_matrix(x, "x")
    env = {"x": x, "m": m, "_arrow": _arrow, "_core": _core, "exitnet": exitnet}

    def cpu_ns(stmt: str, n: int = 5000) -> float:
        return min(timeit.repeat(stmt, globals=env, number=n, repeat=5, timer=time.process_time)) / n * 1e9

    total = cpu_ns("_core.data_address(x)")
    parts = [
        ("dtype/contiguity check", cpu_ns("_arrow.float32_numpy(x, 'x')")),
        ("pyarrow arrays (as_matrix, incl. the check)", cpu_ns("_arrow.as_matrix(x, 'x')")),
        ("pyarrow C Data export + release (ArrowIn)", cpu_ns("_arrow.ArrowIn(m).release()")),
        ("checked call into Go, no input", cpu_ns("exitnet.get_num_threads()")),
    ]
    print(f"\nwhere one numpy input's time goes (process CPU ns, load average {os.getloadavg()[0]:.1f})")
    print(f"  {'whole call (data_address)':46s} {total:9.0f}")
    for name, t in parts:
        print(f"  {name:46s} {t:9.0f}")
    rest = total - parts[1][1] - parts[2][1] - parts[3][1]
    print(f"  {'rest: Go-side Arrow import and release':46s} {rest:9.0f}")

    from exitnet import fisher

    acc = fisher.FisherAccumulator({"w": (100,)}, label_mode="empirical")
    env.update(acc=acc, x1=np.ones((1, 100), np.float32), x256=np.ones((256, 100), np.float32))
    print(f"\nFisher rows update from numpy, raw pointers (default) vs Arrow (process CPU ns, "
          f"load average {os.getloadavg()[0]:.1f})")
    for rows in ("x1", "x256"):
        raw_ns = cpu_ns(f"acc.update_rows({rows})")
        arrow_ns = cpu_ns(f"acc.update_rows(_arrow.as_matrix({rows}, 'rows'))")
        shape = "x".join(map(str, env[rows].shape))
        print(f"  update_rows {shape:8s} raw {raw_ns:8.0f}   Arrow {arrow_ns:8.0f}   "
              f"Arrow - raw {arrow_ns - raw_ns:8.0f}   ({arrow_ns / raw_ns:.1f}x)")
    acc.close()


if __name__ == "__main__":
    main()
