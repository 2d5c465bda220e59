"""What this machine can do, printed next to every benchmark's figures.

``machine_line()`` measures, on one thread, the read bandwidth of one core (numpy ``max`` over a
256 MB float32 array: vectorised, one load per value, memory bound) and single-precision GEMM
GFLOP/s (numpy ``float32`` 1024×1024 matmul through its OpenBLAS), and reports the load average,
so that a reader can see what fraction of the limit a figure is and how noisy the run was.
Benchmarks time with process CPU time (``time.process_time``) and interleave contenders.
"""

from __future__ import annotations

import os
import time

# One BLAS thread for numpy's sgemm figure and numpy peers (set before numpy is imported).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def _best(fn, reps: int) -> float:
    ts = []
    for _ in range(reps):
        t0 = time.process_time()
        fn()
        ts.append(time.process_time() - t0)
    return min(ts)


def read_bandwidth_gbs(mb: int = 256, reps: int = 5) -> float:
    x = np.ones(mb * (1 << 20) // 4, np.float32)
    x.max()
    return x.nbytes / _best(x.max, reps) / 1e9  # CPU time: what one core did


def sgemm_gflops(n: int = 1024, reps: int = 5) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    return 2 * n**3 / _best(lambda: a @ b, reps) / 1e9


def load_average() -> str:
    try:
        return "%.1f %.1f %.1f" % os.getloadavg()
    except OSError:
        return "n/a"


def machine_line() -> str:
    """One line: measured single-core read GB/s, sgemm GFLOP/s, load average, CPUs."""
    bw, gf = read_bandwidth_gbs(), sgemm_gflops()
    return (f"machine: one core reads {bw:.1f} GB/s, sgemm {gf:.0f} GFLOP/s (numpy/OpenBLAS, 1 thread); "
            f"load average {load_average()} on {os.cpu_count()} CPUs")


def cpu_times(fns: dict, rounds: int, skip=None) -> dict:
    """Process CPU seconds per call of each contender, interleaved round robin (load from
    other processes hits all alike). ``skip(name, round)`` may drop slow contenders' later rounds."""
    ts: dict = {c: [] for c in fns}
    for r in range(rounds):
        for c, f in fns.items():
            if skip is not None and skip(c, r):
                continue
            t0 = time.process_time()
            f()
            ts[c].append(time.process_time() - t0)
    return ts


if __name__ == "__main__":
    print(machine_line())
