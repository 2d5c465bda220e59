"""Per-call overhead of the C ABI from Python (ctypes), side by side:

- a bare ctypes call of a C-only function (the floor of any binding),
- the cheapest call into Go through exitnet's checked wrapper,
- a call that exports one numpy matrix as Arrow (zero-copy) and imports it in Go.

Run: .venv/bin/python bench/bench_overhead.py
"""

from __future__ import annotations

import ctypes
import time

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


if __name__ == "__main__":
    main()
