#!/usr/bin/env python3
"""Tables and plots of the frontier study, from the run JSONs of ``study/run_study.py``.

Reads ``<out>/runs/*.json`` and writes, into ``<out>``:

- ``summary.md``: the validation choice of λ and α, the per-setting test table (mean ± sample std
  over seeds), iso-accuracy against one common reference per seed, the paired comparisons with 95 %
  confidence intervals, the wall-time split; headed by the command and commit that produced it;
- ``summary.json``: the same numbers, machine-readable, with the same provenance;
- ``frontier_forgetting.png`` (mean forgetting of exits 1..K−1 vs last-exit accuracy) and
  ``frontier_budget.png`` (accuracy at 25 % of the compute vs last-exit accuracy), one panel per
  architecture, and ``stability_matrices.png`` (mean stability matrices of the headline settings).

Definitions (all accuracies on the 10,000 test images unless said otherwise):

- forgetting of exit j = max_k A[k][j] − A[K−1][j]; the frontier uses its mean over exits 1..K−1
  (the K−1 exits that can be forgotten; 0-based j = 0..K−2);
- accuracy at 25 % compute: the global max-softmax threshold τ is chosen on validation (highest
  validation accuracy with validation mean cost ≤ 25 % of the full network's MACs), then the
  test accuracy at that τ is reported;
- iso-accuracy: the reference of a seed is the best last-exit accuracy of the five headline settings
  (naive, frozen, joint, best EWC, best LwF) for that seed, on validation (calibrated) and on test
  (oracle). The calibrated point is the cheapest τ whose validation accuracy is within 1 point of the
  validation reference; its test accuracy and test speed-up (full cost / mean cost) are reported.
  The oracle point is the cheapest τ of the test curve within 1 point of the test reference. A run
  that never reaches the reference has no speed-up (counted in "reached");
- paired comparisons use the seeds both settings share (same initialisation and batch order):
  mean difference ± t_{n−1, 0.975} · sd / √n. "within noise" = the interval contains 0.

Reproduce: ``PYTHONPATH=python .venv/bin/python study/analyse.py [--out study/results]``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shlex
import subprocess
import sys
from collections import defaultdict
from typing import Optional

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
BUDGET = 0.25
DELTA = 0.01
STUDY_EPOCHS = defaultdict(lambda: 2)  # epochs per stage of the study's headline runs, per architecture
# t_{n-1, 0.975}
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def load_runs(out: str) -> list[dict]:
    from run_study import Spec

    runs = []
    for p in sorted(glob.glob(os.path.join(out, "runs", "*.json"))):
        with open(p) as f:
            r = json.load(f)
        r["setting"] = Spec(**r["spec"]).setting  # from the spec: the file's name field is not trusted
        runs.append(r)
    return runs


def _val_score(r: dict) -> float:
    """The validation criterion of the sweeps: mean final validation accuracy over all exits
    (it rewards keeping the early exits and the last exit alike)."""
    return float(np.mean(r["final_val_acc"]))


# λ and α are chosen on these seeds' validation sweeps: the run list chose them so (plan q1, seed 0)
# before it launched the other seeds of the headline settings. The sweep over every seed the points
# share is reported beside it as a check of that choice.
SELECTION_SEEDS = (0,)


def sweep_table(runs: list[dict], family: str, arch: str, epochs: int = 2,
                seeds: Optional[tuple] = None) -> list[dict]:
    """Validation scores of one sweep (EWC λ, or LwF α at T = 2) over the seeds every point has
    (only those in ``seeds`` when given)."""
    key = "ewc_lambda" if family == "ewc" else "lwf_alpha"
    pts = defaultdict(dict)
    for r in runs:
        s = r["spec"]
        if s["arch"] != arch or s["strategy"] != family or s["epochs"] != epochs or s.get("bn_mode"):
            continue
        if seeds is not None and s["seed"] not in seeds:
            continue
        if family == "lwf" and s["lwf_temperature"] != 2.0:
            continue
        pts[s[key]][s["seed"]] = r
    if not pts:
        return []
    common = sorted(set.intersection(*[set(v) for v in pts.values()]))
    rows = []
    for v in sorted(pts):
        sc = [_val_score(pts[v][s]) for s in common]
        rows.append({"value": v, "seeds": common, "val_mean_over_exits": float(np.mean(sc)) if sc else float("nan"),
                     "val_last": float(np.mean([pts[v][s]["final_val_acc"][-1] for s in common])) if common else float("nan")})
    return rows


def best_setting(runs: list[dict], family: str, arch: str, epochs: int = 2,
                 seeds: Optional[tuple] = SELECTION_SEEDS) -> Optional[float]:
    """The sweep value with the best validation score on ``seeds`` (None: every shared seed)."""
    rows = [r for r in sweep_table(runs, family, arch, epochs, seeds) if r["seeds"]]
    if not rows:
        return None
    return max(rows, key=lambda r: r["val_mean_over_exits"])["value"]


# ---------------------------------------------------------------------------------------------
# per-run metrics


def _cheapest(acc: np.ndarray, cost: np.ndarray, target: float) -> Optional[int]:
    ok = np.flatnonzero(acc >= target - 1e-12)
    return None if ok.size == 0 else int(ok[np.argmin(cost[ok])])


def run_metrics(r: dict, ref_val: Optional[float], ref_test: Optional[float]) -> dict:
    va, vc = np.array(r["curve_val"]["acc"]), np.array(r["curve_val"]["cost"])
    ta, tc = np.array(r["curve_test"]["acc"]), np.array(r["curve_test"]["cost"])
    m = {"acc_exit%d" % j: a for j, a in enumerate(r["final_test_acc"])}
    m["last"] = r["final_test_acc"][-1]
    m["mean_forgetting"] = r["mean_forgetting_test"]
    m["max_forgetting"] = max(r["forgetting_test"])
    m["val_mean_over_exits"] = _val_score(r)
    within = np.flatnonzero(vc <= BUDGET + 1e-12)
    m["acc25"] = float("nan")
    if within.size:
        i = within[np.lexsort((vc[within], -va[within]))[0]]  # best validation accuracy, then cheapest
        m["acc25"], m["cost25_test"] = float(ta[i]), float(tc[i])
    ok = tc <= BUDGET + 1e-12
    m["acc25_oracle"] = float(ta[ok].max()) if ok.any() else float("nan")
    m["iso_speedup"] = m["iso_acc"] = m["iso_speedup_oracle"] = float("nan")
    if ref_val is not None:
        i = _cheapest(va, vc, ref_val - DELTA)
        if i is not None:
            m["iso_speedup"], m["iso_acc"] = 1.0 / tc[i], float(ta[i])
    if ref_test is not None:
        i = _cheapest(ta, tc, ref_test - DELTA)
        if i is not None:
            m["iso_speedup_oracle"] = 1.0 / tc[i]
    t = r["timings_s"]
    m["sec_wall"] = t["wall"]
    m["sec_cpu"] = t.get("cpu", np.nan)  # process CPU time (runs from 29695c5 on)
    m["sec_train"] = t.get("train", np.nan)
    m["sec_fisher"] = t.get("fisher", 0.0)
    m["sec_targets"] = t.get("targets", 0.0)
    m["sec_eval"] = t.get("eval", 0.0) + t.get("final_eval", 0.0)
    m["load"] = float(np.mean([r["loadavg_start"][0], r["loadavg_end"][0]]))
    m["test_size"] = r["test_size"]
    return m


def best_setting_label(a: dict, key: str) -> str:
    """The chosen value of a headline setting, read back from its name (cnn28_ewc_lam100_e2 → 100)."""
    name = a["headline"].get(key, "")
    for tag in ("_lam", "_a"):
        if tag in name:
            return name.split(tag, 1)[1].split("_", 1)[0]
    return "?"


def label(setting: str) -> str:
    """cnn28_ewc_lwf_lam1_a1_T2_e1 → "ewc+lwf λ=1 α=1 T=2" (the study's epochs per stage not named)."""
    arch, s = setting.split("_", 1)
    s, _, e = s.rpartition("_e")
    s = s.replace("ewc_lwf", "ewc+lwf").replace("_bn", " BN ").replace("_lam", " λ=").replace("_a", " α=").replace("_T", " T=")
    return s if int(e) == STUDY_EPOCHS[arch] else f"{s} ({e} epochs/stage)"


def headline(runs: list[dict], arch: str) -> dict:
    """The five settings with the most seeds: naive, frozen, joint, best EWC, best LwF (chosen on
    validation over the sweep's seeds)."""
    e = STUDY_EPOCHS[arch]
    lam, alpha = best_setting(runs, "ewc", "cnn28"), best_setting(runs, "lwf", "cnn28")
    h = {"naive": f"{arch}_naive_e{e}", "frozen": f"{arch}_frozen_e{e}", "joint": f"{arch}_joint_e{e}"}
    if lam is not None:
        h["best EWC"] = f"{arch}_ewc_lam{lam:g}_e{e}"
    if alpha is not None:
        h["best LwF"] = f"{arch}_lwf_a{alpha:g}_T2_e{e}"
    return h


def analyse(runs: list[dict]) -> dict:
    out: dict = {"archs": {}}
    for arch in sorted({r["spec"]["arch"] for r in runs}):
        rs = [r for r in runs if r["spec"]["arch"] == arch]
        head = headline(runs, arch)
        heads = set(head.values())
        ref_val, ref_test = {}, {}
        for r in rs:
            if r["setting"] in heads:
                sd = r["spec"]["seed"]
                ref_val[sd] = max(ref_val.get(sd, 0.0), r["final_val_acc"][-1])
                ref_test[sd] = max(ref_test.get(sd, 0.0), r["final_test_acc"][-1])
        per = defaultdict(dict)  # setting → seed → metrics
        spec, mats = {}, defaultdict(list)
        for r in rs:
            mats[r["setting"]].append(np.array(r["stability_test"], dtype=float))
            sd = r["spec"]["seed"]
            per[r["setting"]][sd] = run_metrics(r, ref_val.get(sd), ref_test.get(sd))
            spec[r["setting"]] = {k: v for k, v in r["spec"].items() if k != "seed"}
        out["archs"][arch] = {"headline": head, "ref_val": ref_val, "ref_test": ref_test,
                              "per_run": {s: {str(k): v for k, v in d.items()} for s, d in per.items()},
                              "spec": spec, "agg": {s: aggregate(d) for s, d in per.items()},
                              "paired": paired(per, head),
                              "stability": {k: np.round(np.mean(v, axis=0), 5).tolist() for k, v in mats.items()},
                              "sweeps": {f: sweep_table(runs, f, arch) for f in ("ewc", "lwf")},
                              "choice_all_seeds": {f: best_setting(runs, f, "cnn28", seeds=None) for f in ("ewc", "lwf")}}
    return out


def aggregate(by_seed: dict) -> dict:
    keys = sorted({k for m in by_seed.values() for k in m})
    agg = {"n": len(by_seed), "seeds": sorted(by_seed)}
    for k in keys:
        v = np.array([m.get(k, np.nan) for m in by_seed.values()], dtype=float)
        ok = v[~np.isnan(v)]
        agg[k] = [float(ok.mean()) if ok.size else float("nan"),
                  float(ok.std(ddof=1)) if ok.size > 1 else 0.0, int(ok.size)]
    return agg


PAIRS = [("best LwF", "frozen"), ("best LwF", "naive"), ("best EWC", "frozen"), ("best EWC", "naive"),
         ("best LwF", "best EWC"), ("joint", "frozen"), ("joint", "best LwF"), ("frozen", "naive")]
PAIR_METRICS = [("last", "last-exit accuracy (pt)", 100), ("acc25", "accuracy at 25 % compute (pt)", 100),
                ("mean_forgetting", "mean forgetting (pt)", 100)]


def paired(per: dict, head: dict) -> list[dict]:
    rows = []
    for a, b in PAIRS:
        if a not in head or b not in head or head[a] not in per or head[b] not in per:
            continue
        sa, sb = per[head[a]], per[head[b]]
        seeds = sorted(set(sa) & set(sb))
        for key, name, scale in PAIR_METRICS:
            d = np.array([sa[s][key] - sb[s][key] for s in seeds], dtype=float) * scale
            d = d[~np.isnan(d)]
            n = d.size
            if n == 0:
                continue
            mean = float(d.mean())
            half = float(T975.get(n - 1, 2.0) * d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
            if n > 1:
                verdict = ("within noise" if mean - half <= 0 <= mean + half else
                           ("a higher" if mean > 0 else "b higher"))
            elif key == "mean_forgetting":
                verdict = "one seed: no interval"
            else:
                # one seed: only the test-sampling noise is known. Two accuracies p_a, p_b on the same
                # N test images differ by less than 1.96·sqrt(p_a(1−p_a)/N + p_b(1−p_b)/N) by chance
                # (an unpaired bound, conservative for the paired difference); seed noise comes on top.
                s0 = seeds[0]
                pa, pb, N = sa[s0][key], sb[s0][key], sa[s0]["test_size"]
                tn = 100 * 1.96 * np.sqrt((pa * (1 - pa) + pb * (1 - pb)) / N)
                verdict = (f"one seed; within test-sampling noise (±{tn:.2f})" if abs(mean) < tn else
                           f"one seed; beyond test-sampling noise (±{tn:.2f}), seed noise unknown")
            rows.append({"a": a, "b": b, "metric": name, "n": n, "mean": mean, "ci95": [mean - half, mean + half],
                         "diffs": d.round(3).tolist(), "verdict": verdict})
    return rows


# ---------------------------------------------------------------------------------------------
# output


def _pm(agg: dict, key: str, scale: float = 100.0, digits: int = 1) -> str:
    v = agg.get(key)
    if v is None or np.isnan(v[0]):
        return "–"
    if v[2] < 2:  # one seed: no spread to show
        return f"{scale * v[0]:.{digits}f}"
    return f"{scale * v[0]:.{digits}f} ± {scale * v[1]:.{digits}f}"


def _order(settings) -> list[str]:
    def key(s):
        fam = s.split("_", 1)[1]
        rank = ["naive", "frozen", "joint", "ewc_lam", "lwf", "ewc_lwf"]
        r = next((i for i, p in enumerate(rank) if fam.startswith(p)), 9)
        if fam.startswith("ewc_lwf"):
            r = 5
        nums = [float(x) for x in __import__("re").findall(r"[\d.]+", fam.replace("ewc_lwf", ""))] or [0]
        return (r, nums)
    return sorted(settings, key=key)


def write_markdown(res: dict, provenance: dict, path: str) -> str:
    L = ["<!-- generated by study/analyse.py; do not edit -->",
         f"Produced by `{provenance['command']}` at commit `{provenance['commit']}` from "
         f"{provenance['n_runs']} runs in `runs/` (their commits: {', '.join(provenance['run_commits'])}; each run JSON "
         "holds its own command).", ""]
    for arch, a in res["archs"].items():
        L.append(f"## {arch}\n")
        for fam, sym in (("ewc", "λ"), ("lwf", "α (T = 2)")):
            rows = a["sweeps"][fam]
            if rows:
                L.append(f"Validation sweep of {sym}, seeds {rows[0]['seeds']} (criterion: mean final validation "
                         "accuracy over exits, %): " + ", ".join(
                             f"{r['value']:g} → {100 * r['val_mean_over_exits']:.2f}" for r in rows) + "\n")
        ch = a.get("choice_all_seeds", {})
        if a["sweeps"]["ewc"] and a["sweeps"]["lwf"]:
            L.append(f"Chosen on validation at seeds {list(SELECTION_SEEDS)} (the run list's rule, before the other "
                     f"seeds ran): λ = {best_setting_label(a, 'best EWC')}, α = {best_setting_label(a, 'best LwF')}; "
                     f"over every seed the sweep points share the choice would be λ = {ch.get('ewc')}, "
                     f"α = {ch.get('lwf')}.\n")
        L.append("Headline settings (those with runs): " + ", ".join(
            f"{k} = {label(v)}" for k, v in a["headline"].items() if v in a["agg"]) + "\n")
        L.append("### Test accuracy per exit, forgetting, 25 % compute (%, mean ± sample std over seeds)\n")
        L.append("| setting | seeds | exit 0 | exit 1 | exit 2 | exit 3 | mean forgetting (pt) | max forgetting (pt) "
                 "| acc at 25 % (calibrated) | 25 % oracle |")
        L.append("|---|---|---|---|---|---|---|---|---|---|")
        for s in _order(a["agg"]):
            g = a["agg"][s]
            L.append(f"| {label(s)} | {g['n']} | " + " | ".join(_pm(g, f"acc_exit{j}") for j in range(4)) +
                     f" | {_pm(g, 'mean_forgetting', digits=2)} | {_pm(g, 'max_forgetting')} | {_pm(g, 'acc25')} "
                     f"| {_pm(g, 'acc25_oracle')} |")
        L.append("\n### Iso-accuracy against one common reference per seed\n")
        L.append("Reference per seed = best last-exit accuracy of the headline settings: validation "
                 + ", ".join(f"seed {k}: {100 * v:.2f}" for k, v in sorted(a["ref_val"].items(), key=lambda kv: int(kv[0])))
                 + "; test " + ", ".join(f"seed {k}: {100 * v:.2f}" for k, v in sorted(a["ref_test"].items(), key=lambda kv: int(kv[0])))
                 + f". Target = reference − {100 * DELTA:g} pt.\n")
        L.append("| setting | reached (calibrated) | speed-up (calibrated, ×) | test accuracy there (%) "
                 "| reached (oracle) | speed-up (oracle, ×) |")
        L.append("|---|---|---|---|---|---|")
        for s in _order(a["agg"]):
            g = a["agg"][s]
            n = g["n"]
            L.append(f"| {label(s)} | {g['iso_speedup'][2]}/{n} | {_pm(g, 'iso_speedup', 1, 2)} | {_pm(g, 'iso_acc')} "
                     f"| {g['iso_speedup_oracle'][2]}/{n} | {_pm(g, 'iso_speedup_oracle', 1, 2)} |")
        if a["paired"]:
            L.append("\n### Paired differences across seeds (a − b; 95 % t interval)\n")
            L.append("| a | b | metric | seeds | mean | 95 % CI | per seed | verdict |")
            L.append("|---|---|---|---|---|---|---|---|")
            for p in a["paired"]:
                ci = "–" if p["n"] < 2 else f"[{p['ci95'][0]:+.2f}, {p['ci95'][1]:+.2f}]"
                L.append(f"| {p['a']} | {p['b']} | {p['metric']} | {p['n']} | {p['mean']:+.2f} | {ci} | "
                         f"{', '.join(f'{d:+.2f}' for d in p['diffs'])} | {p['verdict']} |")
        L.append("\n### Time per run (s, mean ± std; 1 torch thread, two runs at once on a shared 2-core machine)\n")
        L.append("Wall-clock split by phase; process CPU time (the run's own cost, whatever the load) beside it.\n")
        L.append("| strategy | runs | wall total | training | Fisher | LwF targets | evaluation | CPU total | load average (1 min) |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        fams = defaultdict(dict)
        for s, d in a["per_run"].items():
            fam = a["spec"][s]["strategy"]
            for sd, m in d.items():
                fams[fam][f"{s}/{sd}"] = m
        for fam in ("naive", "frozen", "joint", "ewc", "lwf", "ewc+lwf"):
            if fam in fams:
                g = aggregate(fams[fam])
                L.append(f"| {fam} | {g['n']} | " + " | ".join(
                    _pm(g, k, 1, 0) for k in ("sec_wall", "sec_train", "sec_fisher", "sec_targets", "sec_eval", "sec_cpu"))
                    + f" | {_pm(g, 'load', 1, 1)} |")
        L.append("")
    text = "\n".join(L) + "\n"
    with open(path, "w") as f:
        f.write(text)
    return text


def _bar(agg: dict, key: str) -> list:
    """(value, error bar): the seeds' std, or for one seed the 95 % test-sampling half-width of an
    accuracy, 1.96·sqrt(p(1−p)/N) (none for forgetting, a difference of accuracies over stages)."""
    v, sd, n = agg[key]
    if n >= 2 or key == "mean_forgetting":
        return [v, sd]
    return [v, 1.96 * np.sqrt(v * (1 - v) / agg["test_size"][0])]


def plot(res: dict, out: str, provenance: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta = {"Description": f"{provenance['command']} @ {provenance['commit']}"}
    files = []
    archs = list(res["archs"])
    for fname, xkey, xlabel in (("frontier_forgetting.png", "mean_forgetting", "mean forgetting of exits 1..K−1 (pt, test)"),
                                ("frontier_budget.png", "acc25", "accuracy at 25 % of the compute (%, τ calibrated on validation)")):
        fig, axes = plt.subplots(1, len(archs), figsize=(6.2 * len(archs), 4.6), squeeze=False)
        for ax, arch in zip(axes[0], archs):
            a = res["archs"][arch]
            groups = defaultdict(list)
            for s in _order(a["agg"]):
                fam = a["spec"][s]["strategy"]
                if fam == "lwf" and a["spec"][s]["lwf_temperature"] != 2.0:
                    fam = "lwf (T sweep)"
                groups[fam].append(s)
            style = {"naive": ("k", "s"), "frozen": ("tab:blue", "D"), "joint": ("tab:gray", "^"),
                     "ewc": ("tab:red", "o"), "lwf": ("tab:green", "o"), "lwf (T sweep)": ("tab:olive", "v"),
                     "ewc+lwf": ("tab:purple", "P")}
            for fam, ss in groups.items():
                c, mk = style.get(fam, ("tab:brown", "x"))
                xs = np.array([_bar(a["agg"][s], xkey) for s in ss]) * 100
                ys = np.array([_bar(a["agg"][s], "last") for s in ss]) * 100
                ax.errorbar(xs[:, 0], ys[:, 0], xerr=xs[:, 1], yerr=ys[:, 1], color=c, marker=mk, capsize=2,
                            linestyle="-" if fam in ("ewc", "lwf") else "none", label=fam, alpha=0.9)
                for s, x, y in zip(ss, xs[:, 0], ys[:, 0]):
                    lab = label(s).replace("ewc+lwf", "").replace("ewc", "").replace("lwf", "").strip()
                    if lab and fam != "naive":
                        ax.annotate(lab, (x, y), fontsize=6.5, xytext=(3, 3), textcoords="offset points")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("last-exit accuracy (%, test)")
            n = max(g["n"] for g in a["agg"].values())
            ax.set_title(f"{arch}: mean ± std over seeds (up to {n}); one seed: ± 95 % test-sampling interval",
                         fontsize=8)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(out, fname), dpi=90, metadata=meta)
        plt.close(fig)
        files.append(fname)
    if any(s in a["stability"] for a in res["archs"].values() for s in a["headline"].values()):
        files.append(plot_stability(res, out, meta))
    return files


def plot_stability(res: dict, out: str, meta: dict) -> str:
    """Mean test stability matrices of the headline settings (seeds they all have)."""
    import matplotlib.pyplot as plt

    sys.path.insert(0, os.path.join(ROOT, "python"))
    from exitnet.torch._results import plot_stability as one

    panels = []
    for arch, a in res["archs"].items():
        for k, s in a["headline"].items():
            if s in a["stability"]:
                panels.append((f"{arch} {k} (n={a['agg'][s]['n']})", np.array(a["stability"][s], dtype=float)))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 2.9), squeeze=False)
    vals = np.concatenate([A[~np.isnan(A)] for _, A in panels])
    for ax, (t, A) in zip(axes[0], panels):
        one(A, ax=ax, title=t, vmin=float(vals.min()), vmax=float(vals.max()))
        ax.title.set_fontsize(8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "stability_matrices.png"), dpi=80, metadata=meta)
    plt.close(fig)
    return "stability_matrices.png"


def provenance_of(runs: list[dict], argv: list[str]) -> dict:
    try:
        c = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "study/analyse.py", "study/run_study.py"],
                               capture_output=True, text=True).stdout.strip()
        c += "+dirty" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        c = "unknown"
    return {"command": "PYTHONPATH=python .venv/bin/python " + " ".join(shlex.quote(x) for x in argv),
            "commit": c, "n_runs": len(runs), "run_commits": sorted({r.get("commit", "?")[:12] for r in runs})}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    runs = load_runs(args.out)
    if not runs:
        raise SystemExit(f"--out: no run JSONs under {os.path.join(args.out, 'runs')}")
    prov = provenance_of(runs, [os.path.relpath(os.path.abspath(__file__), ROOT)] + list(sys.argv[1:] if argv is None else argv))
    res = analyse(runs)
    text = write_markdown(res, prov, os.path.join(args.out, "summary.md"))
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump({"provenance": prov, **res}, f, indent=1, default=float)
    files = [] if args.no_plots else plot(res, args.out, prov)
    print(text)
    print("written:", ", ".join(["summary.md", "summary.json"] + files), "in", args.out)
    print("reproduce:", prov["command"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
