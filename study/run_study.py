#!/usr/bin/env python3
"""The stability–plasticity frontier study: a resumable run list, one JSON per run.

Every run trains one early-exit network exit by exit with one strategy setting and one seed
(same seed = same initial weights and same batch order for every strategy), then writes
``<out>/runs/<name>.json`` atomically. A run whose JSON exists is skipped, so the command can be
interrupted and started again. Runs go to ``--workers`` child processes (``nice -n 15``, one torch
thread each).

Each run JSON records the command and the git commit that produced it, the load average before and
after, the stability matrix on test, the final validation and test accuracy per exit, the
wall-time split (train / Fisher / LwF target recording / evaluation) and the exact budget curve of
the global max-softmax threshold on validation and on test (accuracy and normalised cost on a fixed
threshold grid), from which ``study/analyse.py`` computes every table and plot.

Reproduce (the run list of RESULTS.md; prints the plan, skips finished runs)::

    make lib
    PYTHONPATH=python .venv/bin/python study/run_study.py --plan q1,q2,q3 --workers 2
    PYTHONPATH=python .venv/bin/python study/analyse.py

Smoke test (tiny subset, digits, seconds): ``--dataset digits --plan smoke --out /tmp/x``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from typing import Optional

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "python"))

DEFAULT_OUT = os.path.join(HERE, "results")
# global max-softmax thresholds of the budget curve: τ = 1 − 10^−x, plus "always exit 0" (τ = 0)
# and "always the last exit" (τ > 1)
TAUS = [0.0] + [round(1.0 - 10.0 ** (-x), 10) for x in np.arange(0.25, 7.01, 0.05)] + [1.01]


@dataclass(frozen=True)
class Spec:
    """One run: architecture, strategy, its hyper-parameters, seed, schedule."""

    strategy: str
    seed: int
    arch: str = "cnn28"  # cnn28: small_cnn_28(16) on 28×28; resnet32: small_resnet_32(16) on 32×32 (padded)
    ewc_lambda: float = 0.0
    lwf_alpha: float = 0.0
    lwf_temperature: float = 2.0
    epochs: int = 2  # per stage, as the pilot (full 55k training set)
    lr: float = 3e-3
    bn_mode: Optional[str] = None  # None: the trainer's default ("freeze" for EWC/LwF/frozen, else "adapt")

    @property
    def setting(self) -> str:
        """The strategy setting without the seed (one point of the frontier)."""
        s = self.strategy.replace("+", "_")
        if "ewc" in self.strategy:
            s += f"_lam{self.ewc_lambda:g}"
        if "lwf" in self.strategy:
            s += f"_a{self.lwf_alpha:g}_T{self.lwf_temperature:g}"
        if self.bn_mode is not None:
            s += f"_bn{self.bn_mode}"
        s += f"_e{self.epochs}"
        return f"{self.arch}_{s}"

    @property
    def name(self) -> str:
        return f"{self.setting}_s{self.seed}"


def ewc(lam, seed, **kw):
    return Spec("ewc", seed, ewc_lambda=lam, **kw)


def lwf(alpha, seed, T=2.0, **kw):
    return Spec("lwf", seed, lwf_alpha=alpha, lwf_temperature=T, **kw)


LAMBDAS = (0.1, 0.3, 1, 3, 10, 100)
ALPHAS = (0.1, 0.3, 1, 3)
TEMPERATURES = (1, 4)  # with T = 2 from the α sweep
BASE = ("naive", "frozen", "joint")


def _chosen(out: str) -> tuple[float, float]:
    from analyse import best_setting, load_runs  # noqa: PLC0415 (study/ is on sys.path)

    _wait_for_sweeps(out)
    runs = load_runs(out)
    lam, alpha = best_setting(runs, "ewc", "cnn28"), best_setting(runs, "lwf", "cnn28")
    if lam is None or alpha is None:
        raise SystemExit("this plan needs q1's EWC and LwF sweeps to choose λ and α on validation")
    print(f"chosen on validation (mean final validation accuracy over exits): λ = {lam:g}, α = {alpha:g}", flush=True)
    return lam, alpha


def _headline(seed: int, lam: float, alpha: float, **kw) -> list[Spec]:
    return [Spec(s, seed, **kw) for s in BASE] + [lwf(alpha, seed, **kw), ewc(lam, seed, **kw)]


def plan(name: str, out: str) -> list[Spec]:
    """The prioritised run lists, 2 epochs per stage on the full training set, cut from the end
    when time runs out (a run costs 4-8 minutes of one core here, 3-4x the issue's estimate).

    q1: seed 0: the ends (naive, frozen, joint), EWC λ ∈ LAMBDAS, LwF α ∈ ALPHAS at T = 2;
    q2: seeds 1 and 2 of the five headline settings (the ends, best λ, best α; chosen on seed 0's
        validation accuracy);
    q3: seed 0 of EWC+LwF at (best λ, best α) and of the T sweep at the best α;
    p3: the residual network, seed 0 of the five headline settings (λ and α from the CNN);
    q4: seeds 3 and 4 of the headline settings (5 seeds);
    q5: seeds 1 and 2 of every other sweep point, EWC+LwF and the T sweep (3 seeds each).
    ``smoke``: a few runs for the test suite.
    """
    if name == "smoke":
        return [Spec("naive", 0), ewc(1, 0), lwf(1, 0)]
    if name == "q1":
        # the two ends first, then the pilot's findings (LwF α = 1, EWC λ = 1 vs 10), then the rest
        return [Spec("naive", 0), Spec("frozen", 0), Spec("joint", 0), lwf(1, 0), ewc(10, 0), ewc(1, 0),
                lwf(3, 0), lwf(0.3, 0), ewc(3, 0), ewc(100, 0), ewc(0.3, 0), lwf(0.1, 0), ewc(0.1, 0)]
    if name == "d1":
        # diagnostic: is EWC's weak last exit the BatchNorm policy? (the pilot ran before
        # protective strategies froze the protected stages' BatchNorm statistics)
        return [ewc(10, 0, bn_mode="adapt"), ewc(1, 0, bn_mode="adapt")]
    if name == "d2":  # the same question for LwF
        return [lwf(1, 0, bn_mode="adapt")]
    lam, alpha = _chosen(out)
    if name == "d3":  # the BatchNorm question at the headline λ and α, paired over seeds
        return [x for seed in (1, 2, 0) for x in (ewc(lam, seed, bn_mode="adapt"), lwf(alpha, seed, bn_mode="adapt"))]
    extra = lambda seed: ([Spec("ewc+lwf", seed, ewc_lambda=lam, lwf_alpha=alpha)]  # noqa: E731
                          + [lwf(alpha, seed, T=T) for T in TEMPERATURES])
    if name == "q2":
        return [x for seed in (1, 2) for x in _headline(seed, lam, alpha)]
    if name == "q3":
        return extra(0)
    if name == "p3":
        return _headline(0, lam, alpha, arch="resnet32")
    if name == "q4":
        return [x for seed in (3, 4) for x in _headline(seed, lam, alpha)]
    if name == "q5":
        return [x for seed in (1, 2) for x in extra(seed) + [ewc(v, seed) for v in LAMBDAS if v != lam]
                + [lwf(v, seed) for v in ALPHAS if v != alpha]]
    raise SystemExit(f"--plan: unknown plan {name!r}; valid: smoke, q1, q2, q3, p3, q4, q5, d1, d2, d3")


def _wait_for_sweeps(out: str) -> None:
    """λ and α are chosen from q1's seed-0 sweeps: wait until no other pool is still running one."""
    import glob

    while True:
        busy = [p for p in glob.glob(os.path.join(out, "runs", "cnn28_ewc_lam*_s0.lock")) + glob.glob(
            os.path.join(out, "runs", "cnn28_lwf_a*_T2_*_s0.lock")) if _lock_alive(p)]
        if not busy:
            return
        print(f"p2 waits for {[os.path.basename(b) for b in busy]}", flush=True)
        time.sleep(20)


def _lock_alive(path: str) -> bool:
    try:
        os.kill(int(open(path).read().strip() or 0), 0)
        return True
    except (ValueError, OSError):
        return False


# ---------------------------------------------------------------------------------------------
# one run


def git_commit() -> str:
    try:
        c = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "python", "study", ":!study/results"],
                               capture_output=True, text=True).stdout.strip()
        return c + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_data(dataset: str, arch: str, train_subset: Optional[int]):
    from exitnet import data

    if dataset == "digits":
        return data.digits(seed=0)
    # 55,000 train / 5,000 validation (seeded, the same for every seed) / the 10,000 test images
    splits = data.fashion_mnist(val_fraction=5000 / 60000, seed=0, train_subset=train_subset)
    if arch == "resnet32":
        import torch.nn.functional as F
        from torch.utils.data import TensorDataset

        bg = float(-splits.mean / splits.std)  # a standardised black pixel
        for part in ("train", "val", "test"):
            x, y, ids = getattr(splits, part).tensors
            setattr(splits, part, TensorDataset(F.pad(x, (2, 2, 2, 2), value=bg), y, ids))
        splits.input_shape = (1, 32, 32)
    return splits


def build_net(spec: Spec, dataset: str):
    from exitnet.torch._model import small_cnn_8, small_cnn_28, small_resnet_32

    if dataset == "digits":
        return small_cnn_8(num_classes=10, width=8)
    if spec.arch == "resnet32":
        return small_resnet_32(num_classes=10, in_channels=1, width=16)
    return small_cnn_28(num_classes=10, width=16)


def budget_curve(logits: np.ndarray, labels: np.ndarray, costs: np.ndarray) -> dict:
    """Accuracy and mean normalised cost of the global max-softmax rule at every τ in TAUS:
    a sample leaves at the first exit whose max softmax is ≥ τ (the last exit takes the rest)."""
    z = logits - logits.max(axis=2, keepdims=True)  # (K, N, C)
    p = np.exp(z)
    score = (p.max(axis=2) / p.sum(axis=2)).T  # (N, K)
    correct = (logits.argmax(axis=2) == labels[None, :]).T  # (N, K)
    K = score.shape[1]
    rel = costs / costs[-1]
    acc, cost = [], []
    for tau in TAUS:
        ok = score >= tau
        ok[:, K - 1] = True
        e = ok.argmax(axis=1)
        acc.append(float(correct[np.arange(len(e)), e].mean()))
        cost.append(float(rel[e].mean()))
    return {"acc": np.round(acc, 6).tolist(), "cost": np.round(cost, 6).tolist()}


def run_one(spec: Spec, dataset: str, train_subset: Optional[int], fisher_samples: int) -> dict:
    import torch

    from exitnet.torch._trainer import SequentialTrainer

    load0 = os.getloadavg()
    c0 = time.process_time()  # CPU seconds of this process, all threads (wall time depends on the load)
    t0 = time.perf_counter()
    splits = load_data(dataset, spec.arch, train_subset)
    t_data = time.perf_counter() - t0
    torch.manual_seed(1000 + spec.seed)  # same initial weights for every strategy of a seed
    net = build_net(spec, dataset)
    kw = dict(epochs_per_stage=spec.epochs, lr=spec.lr, batch_size=64, fisher_samples=fisher_samples,
              seed=spec.seed, progress=False, log=lambda r: None)
    if "ewc" in spec.strategy:
        kw["ewc_lambda"] = spec.ewc_lambda
    if "lwf" in spec.strategy:
        kw.update(lwf_alpha=spec.lwf_alpha, lwf_temperature=spec.lwf_temperature)
    if spec.bn_mode is not None:
        kw["bn_mode"] = spec.bn_mode
    tr = SequentialTrainer(net, spec.strategy, **kw)
    t1, c1 = time.perf_counter(), time.process_time()
    res = tr.fit(splits, analyse=False)
    wall_fit, cpu_fit = time.perf_counter() - t1, time.process_time() - c1
    t2 = time.perf_counter()
    vl, vy = tr.predict_logits(splits.val)
    tl, ty = tr.predict_logits(splits.test)
    costs = tr._costs(splits.train)
    t_final_eval = time.perf_counter() - t2
    A = res.stability
    K = A.shape[0]
    forget = [float(np.nanmax(A[:, j]) - A[K - 1, j]) for j in range(K)]
    timings = {k: float(v) for k, v in res.timings.items()}
    timings.update(data=t_data, fit_wall=wall_fit, final_eval=t_final_eval,
                   wall=time.perf_counter() - t0, fit_cpu=cpu_fit, cpu=time.process_time() - c0)
    bn = "BatchNorm statistics of every trainable stage update (train mode), frozen stages in eval mode"
    return {
        "name": spec.name, "setting": spec.setting, "spec": asdict(spec), "dataset": dataset,
        "train_size": len(splits.train), "val_size": len(splits.val), "test_size": len(splits.test),
        "fisher_samples": fisher_samples, "batchnorm": getattr(tr, "bn_policy", bn),
        "stability_test": [[None if np.isnan(v) else float(v) for v in row] for row in A],
        "final_test_acc": A[K - 1].tolist(),
        "final_val_acc": (vl.argmax(2) == vy[None]).mean(1).tolist(),
        "forgetting_test": forget,
        "mean_forgetting_test": float(np.mean(forget[: K - 1])),
        "costs_macs": np.asarray(costs).tolist(),
        "curve_taus": TAUS,
        "curve_val": budget_curve(vl, vy, np.asarray(costs)),
        "curve_test": budget_curve(tl, ty, np.asarray(costs)),
        "timings_s": timings, "config": {k: v for k, v in tr.config().items() if k != "log"},
        "loadavg_start": load0, "loadavg_end": os.getloadavg(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(), "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# ---------------------------------------------------------------------------------------------
# the pool


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=DEFAULT_OUT, help="results directory (runs/ inside)")
    p.add_argument("--plan", default="q1,q2,q3,p3,q4,q5", help="comma-separated: smoke, q1, q2, q3, p3, q4, q5 (in order)")
    p.add_argument("--workers", type=int, default=2, help="parallel child processes (1 torch thread each)")
    p.add_argument("--nice", type=int, default=15)
    p.add_argument("--dataset", default="fashion-mnist", choices=("fashion-mnist", "digits"))
    p.add_argument("--train-subset", type=int, default=None, help="for smoke tests only; the study uses all 55,000")
    p.add_argument("--fisher-samples", type=int, default=500)
    p.add_argument("--epochs", type=int, default=None, help="override epochs per stage (default 2)")
    p.add_argument("--resnet-epochs", type=int, default=None, help="epochs per stage of the resnet32 runs")
    p.add_argument("--stop-at", default=None, help="HH:MM UTC: start no run that would not end by then "
                   "(estimated from the median wall time of finished runs of the same architecture)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child: a JSON Spec
    return p.parse_args(argv)


def _child(args) -> int:
    import torch

    torch.set_num_threads(1)
    spec = Spec(**json.loads(args.one))
    doc = run_one(spec, args.dataset, args.train_subset, args.fisher_samples)
    doc["commit"] = os.environ.get("EXITNET_STUDY_COMMIT") or git_commit()
    doc["command"] = os.environ.get("EXITNET_STUDY_COMMAND", "")
    doc["child_command"] = " ".join(shlex.quote(a) for a in sys.argv)
    from exitnet._io import atomic_write

    path = os.path.join(args.out, "runs", spec.name + ".json")
    with atomic_write(path, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"{time.strftime('%H:%M:%S')} done {spec.name}: {doc['timings_s']['wall']:.0f} s, test exits "
          f"{np.round(100 * np.array(doc['final_test_acc']), 1)}, forgetting "
          f"{100 * doc['mean_forgetting_test']:.2f} pt, load {doc['loadavg_end'][0]:.1f}", flush=True)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.one is not None:
        return _child(args)
    if args.workers < 1:
        raise SystemExit("--workers: must be >= 1")
    os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)
    command = "PYTHONPATH=python .venv/bin/python " + " ".join(shlex.quote(a) for a in sys.argv)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               EXITNET_STUDY_COMMIT=git_commit(), EXITNET_STUDY_COMMAND=command)
    print(f"commit {env['EXITNET_STUDY_COMMIT']}; load average {os.getloadavg()}", flush=True)
    failed = []
    for pname in [s for s in args.plan.split(",") if s]:
        specs = plan(pname, args.out)
        if args.epochs is not None:
            specs = [replace(s, epochs=args.epochs) for s in specs]
        if args.resnet_epochs is not None:
            specs = [replace(s, epochs=args.resnet_epochs) if s.arch == "resnet32" else s for s in specs]
        seen, todo = set(), []
        for s in specs:
            if s.name not in seen and not os.path.exists(os.path.join(args.out, "runs", s.name + ".json")):
                todo.append(s)
            seen.add(s.name)
        print(f"plan {pname}: {len(seen)} runs, {len(seen) - len(todo)} already done, {len(todo)} to run", flush=True)
        for s in todo:
            print(f"  {s.name}", flush=True)
        if args.dry_run:
            continue
        failed += _pool(args, todo, env)
    if failed:
        print(f"failed runs: {failed}", flush=True)
        return 1
    return 0


def _fits(args, s: Spec) -> bool:
    if not args.stop_at:
        return True
    import glob

    hh, mm = (int(v) for v in args.stop_at.split(":"))
    now = time.gmtime()
    left = (hh * 60 + mm - now.tm_hour * 60 - now.tm_min) * 60 - now.tm_sec
    walls = []
    for p in glob.glob(os.path.join(args.out, "runs", f"{s.arch}_*_e{s.epochs}_s*.json")):
        with open(p) as f:
            walls.append(json.load(f)["timings_s"]["wall"])
    est = float(np.median(walls)) if walls else 0.0
    return left > est


def _claim(out: str, s: Spec) -> bool:
    """Claim a run with an exclusive lock file (pid inside), so several pools can share a run list;
    a lock whose process is gone is taken over."""
    runs = os.path.join(out, "runs")
    if os.path.exists(os.path.join(runs, s.name + ".json")):
        return False
    lock = os.path.join(runs, s.name + ".lock")
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(open(lock).read().strip() or 0)
                os.kill(pid, 0)
                return False  # alive: someone else runs it
            except (ValueError, ProcessLookupError, FileNotFoundError):
                try:
                    os.unlink(lock)  # stale
                except FileNotFoundError:
                    pass
                continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def _release(out: str, s: Spec) -> None:
    try:
        os.unlink(os.path.join(out, "runs", s.name + ".lock"))
    except FileNotFoundError:
        pass


def _pool(args, todo: list[Spec], env: dict) -> list[str]:
    procs: dict = {}
    failed = []
    queue = list(todo)
    while queue or procs:
        while queue and len(procs) < args.workers:
            s = queue.pop(0)
            if not _fits(args, s):
                print(f"{time.strftime('%H:%M:%S')} not started (would end after --stop-at {args.stop_at}): {s.name}",
                      flush=True)
                continue
            if not _claim(args.out, s):  # done meanwhile, or another pool runs it
                continue
            cmd = ["nice", "-n", str(args.nice), sys.executable, os.path.abspath(__file__), "--one",
                   json.dumps(asdict(s)), "--out", args.out, "--dataset", args.dataset,
                   "--fisher-samples", str(args.fisher_samples)]
            if args.train_subset is not None:
                cmd += ["--train-subset", str(args.train_subset)]
            child = subprocess.Popen(cmd, env=env)
            with open(os.path.join(args.out, "runs", s.name + ".lock"), "w") as f:
                f.write(str(child.pid))  # the lock lives as long as the run, even if this pool dies
            procs[child] = s
        time.sleep(0.2)
        for p in [p for p in procs if p.poll() is not None]:
            s = procs.pop(p)
            _release(args.out, s)
            if p.returncode != 0:
                failed.append(s.name)
                print(f"run {s.name} failed with exit status {p.returncode}", flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
