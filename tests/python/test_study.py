"""Smoke test of the frontier study scripts (study/run_study.py, study/analyse.py) on digits:
runs in child processes, one JSON per run with its command and commit, resumption skips finished
runs, and the analysis recomputes its numbers from the runs."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "study"))

import analyse  # noqa: E402
import run_study  # noqa: E402


def test_budget_curve_matches_a_loop():
    rng = np.random.default_rng(0)
    K, N, C = 3, 200, 5
    logits = rng.normal(size=(K, N, C)) * 3
    labels = rng.integers(0, C, N)
    costs = np.array([1.0, 3.0, 4.0])
    cur = run_study.budget_curve(logits, labels, costs)
    p = np.exp(logits) / np.exp(logits).sum(2, keepdims=True)
    for i, tau in enumerate(run_study.TAUS):
        hit = cost = 0.0
        for n in range(N):
            j = next((j for j in range(K - 1) if p[j, n].max() >= tau), K - 1)
            hit += logits[j, n].argmax() == labels[n]
            cost += costs[j] / costs[-1]
        assert cur["acc"][i] == pytest.approx(hit / N, abs=1e-6)
        assert cur["cost"][i] == pytest.approx(cost / N, abs=1e-6)


def test_study_smoke(tmp_path):
    out = tmp_path / "res"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python") + os.pathsep + os.environ.get("PYTHONPATH", ""),
               MPLBACKEND="Agg")
    cmd = [sys.executable, str(ROOT / "study" / "run_study.py"), "--dataset", "digits", "--plan", "smoke",
           "--epochs", "1", "--workers", "2", "--nice", "0", "--out", str(out)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    files = sorted((out / "runs").glob("*.json"))
    assert [f.name for f in files] == ["cnn28_ewc_lam1_e1_s0.json", "cnn28_lwf_a1_T2_e1_s0.json",
                                       "cnn28_naive_e1_s0.json"]
    docs = {f.stem: json.loads(f.read_text()) for f in files}
    for d in docs.values():
        assert d["command"].endswith("--out " + str(out)) and "run_study.py" in d["command"]
        assert len(d["commit"].split("+")[0]) == 40
        assert d["torch_threads"] == 1
        A = np.array(d["stability_test"], dtype=float)
        # the curve's ends are the first and the last exit alone
        assert d["curve_test"]["acc"][-1] == pytest.approx(A[-1, -1], abs=1e-6)
        assert d["curve_test"]["acc"][0] == pytest.approx(A[-1, 0], abs=1e-6)
        assert d["curve_test"]["cost"][-1] == pytest.approx(1.0)
    # forgetting is the max over rows minus the last row, averaged over exits 0..K-2
    A = np.array(docs["cnn28_naive_e1_s0"]["stability_test"], dtype=float)
    assert docs["cnn28_naive_e1_s0"]["mean_forgetting_test"] == pytest.approx(
        np.mean(np.nanmax(A[:, :3], 0) - A[3, :3]))
    # resuming runs nothing
    r2 = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0 and "0 to run" in r2.stdout, r2.stdout + r2.stderr

    r3 = subprocess.run([sys.executable, str(ROOT / "study" / "analyse.py"), "--out", str(out)], env=env,
                        capture_output=True, text=True, timeout=600)
    assert r3.returncode == 0, r3.stdout + r3.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["provenance"]["command"].endswith("study/analyse.py --out " + str(out))
    agg = summary["archs"]["cnn28"]["agg"]
    assert agg["cnn28_naive_e1"]["last"][0] == pytest.approx(docs["cnn28_naive_e1_s0"]["final_test_acc"][-1])
    assert "Produced by" in (out / "summary.md").read_text()
    for png in ("frontier_forgetting.png", "frontier_budget.png"):
        assert (out / png).stat().st_size > 1000
