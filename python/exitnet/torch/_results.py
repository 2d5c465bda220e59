"""Results of sequential training: the stability matrix, forgetting, budget curves; tables and plots.

Conventions: exits and stages are numbered from 0. ``stability[k, j]`` is the accuracy of exit j
(on the evaluation split) after stage k, NaN for j > k. Forgetting of exit j is
``max_{k ≥ j} stability[k, j] − stability[K-1, j]`` (0 for the last exit). Costs are cumulative MACs
of leaving at each exit (every stage and head up to it ran); a budget is a fraction of the cost of
the full network (the last exit), and speed-up = full cost / mean cost.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .._io import atomic_write

__all__ = [
    "TrainingResult",
    "forgetting",
    "compare",
    "plot_stability",
    "plot_stability_matrices",
    "plot_budget_curves",
    "DEFAULT_BUDGETS",
]

DEFAULT_BUDGETS = (0.25, 0.5, 0.75)


def forgetting(stability: np.ndarray) -> np.ndarray:
    """Forgetting per exit from a K×K stability matrix: max_{k≥j} A[k, j] − A[K-1, j]."""
    A = np.asarray(stability, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"stability: expected a K×K matrix, got shape {A.shape}")
    K = A.shape[0]
    out = np.zeros(K)
    for j in range(K):
        col = A[j:, j]
        out[j] = np.nanmax(col) - A[K - 1, j]
    return out


@dataclass
class TrainingResult:
    """What :meth:`SequentialTrainer.fit` returns.

    Attributes
    ----------
    strategy : str
    stability : ndarray (K, K)
        A[k, j] = accuracy of exit j after stage k (NaN above the diagonal).
    history : list of dict
        Per epoch: stage, epoch, mean loss and its terms (ce, ewc, lwf).
    timings : dict
        Wall-clock seconds: ``train``, ``fisher`` (EWC Fisher passes), ``targets`` (LwF target
        recording or teacher copies), ``eval``, ``total``, ``analysis``.
    config : dict
        The trainer's options.
    val_logits, test_logits : ndarray (K, N, C), optional
        Final logits of every exit; ``val_labels``/``test_labels`` their labels.
    costs : ndarray (K,), optional
        Cumulative MACs of leaving at each exit.
    curve : object, optional
        The exact accuracy-versus-cost curve on the test split (:func:`exitnet.policy.exact_curve`).
    operating_points : pandas.DataFrame, optional
        Per budget (fraction of the full cost): the global threshold τ calibrated on validation
        for mean cost ≤ budget, its validation and test accuracy / normalised cost / speed-up, and
        ``test_best_accuracy``, the best accuracy of the test curve within the budget (an
        oracle upper bound, not a calibrated result).
    budget_accuracy : dict
        budget → calibrated test accuracy (``budget_best_accuracy``: the oracle).
    metadata : dict
        What the run decided: device, AMP dtype, ``bn_mode``, schedule, plugins, and e.g.
        ``lwf_targets`` (``"recorded"``/``"online"``) with ``lwf_targets_reason``.
    stage_timings : list of dict
        Per stage: ``stage`` and the wall seconds of ``train``, ``fisher``, ``targets``,
        ``plugins`` (other plugins' stage preparation) and ``eval``.
    speedup_iso : float, optional
        Speed-up of the cheapest point of the exact test curve whose accuracy is within 1 point
        of the last exit's (:func:`exitnet.policy.speedup_at_iso_accuracy`, delta = 0.01).
    """

    strategy: str
    stability: np.ndarray
    history: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    val_logits: Optional[np.ndarray] = None
    val_labels: Optional[np.ndarray] = None
    test_logits: Optional[np.ndarray] = None
    test_labels: Optional[np.ndarray] = None
    costs: Optional[np.ndarray] = None
    curve: Any = None
    operating_points: Any = None
    speedup_iso: Optional[float] = None
    budget_accuracy: dict = field(default_factory=dict)
    budget_best_accuracy: dict = field(default_factory=dict)
    analysis_error: Optional[str] = None
    metadata: dict = field(default_factory=dict)
    stage_timings: list = field(default_factory=list)

    # ------------------------------------------------------------ derived numbers

    @property
    def num_exits(self) -> int:
        return int(self.stability.shape[0])

    @property
    def forgetting(self) -> np.ndarray:
        """Forgetting per exit (accuracy points as fractions)."""
        return forgetting(self.stability)

    @property
    def mean_forgetting(self) -> float:
        """Mean forgetting over exits 0..K-2 (the last exit cannot forget)."""
        f = self.forgetting
        return float(f[:-1].mean()) if len(f) > 1 else 0.0

    @property
    def final_accuracy(self) -> np.ndarray:
        """Accuracy of every exit after the last stage."""
        return self.stability[-1].copy()

    # ------------------------------------------------------------ analysis

    def analyse(self, budgets: Sequence[float] = DEFAULT_BUDGETS, score: str = "max_softmax") -> None:
        """Budget curve and calibrated operating points from the stored logits and costs.

        Thresholds are calibrated on the validation logits for each budget (fraction of the full
        cost) and reported on the test logits. Needs :mod:`exitnet.policy` and the costs.
        """
        if self.test_logits is None or self.val_logits is None:
            raise ValueError("val_logits: the result holds no logits to analyse")
        costs = self.costs
        if costs is None:
            costs = np.arange(1, self.num_exits + 1, dtype=np.float64)
            self.analysis_error = "stage_costs unavailable: costs are exit indices 1..K"
        try:
            from .. import policy
        except ImportError as e:  # pragma: no cover - depends on the policy module
            self.analysis_error = f"exitnet.policy unavailable: {e}"
            return
        self.costs = np.asarray(costs, dtype=np.float64)
        rows = _analyse(policy, self, budgets, score)
        import pandas as pd

        self.operating_points = pd.DataFrame(rows)
        self.budget_accuracy = {float(r["budget"]): float(r["test_accuracy"]) for r in rows}
        self.budget_best_accuracy = {
            float(r["budget"]): float(r.get("test_best_accuracy", float("nan"))) for r in rows
        }

    # ------------------------------------------------------------ tables

    def stability_frame(self):
        """The stability matrix as a DataFrame (rows: after stage k, columns: exit j)."""
        import pandas as pd

        K = self.num_exits
        return pd.DataFrame(
            self.stability,
            index=pd.Index([f"after stage {k}" for k in range(K)], name="stage"),
            columns=pd.Index([f"exit {j}" for j in range(K)], name="exit"),
        )

    def exits_frame(self):
        """Per exit: final accuracy, best accuracy seen, forgetting, cumulative cost."""
        import pandas as pd

        K = self.num_exits
        best = [float(np.nanmax(self.stability[j:, j])) for j in range(K)]
        d = {
            "final_accuracy": self.final_accuracy,
            "best_accuracy": best,
            "forgetting": self.forgetting,
        }
        if self.costs is not None:
            d["cost_macs"] = np.asarray(self.costs)
            d["cost_fraction"] = np.asarray(self.costs) / float(self.costs[-1])
        return pd.DataFrame(d, index=pd.Index([f"exit {j}" for j in range(K)], name="exit"))

    def summary(self) -> dict:
        """One flat dict of the headline numbers (what :func:`compare` tabulates)."""
        out: dict[str, Any] = {"strategy": self.strategy}
        for j, a in enumerate(self.final_accuracy):
            out[f"acc_exit{j}"] = float(a)
        out["mean_forgetting"] = self.mean_forgetting
        out["max_forgetting"] = float(self.forgetting.max())
        for b, a in sorted(self.budget_accuracy.items()):
            out[f"acc_at_{int(round(b * 100))}pct"] = a
        if self.speedup_iso is not None:
            out["speedup_iso"] = float(self.speedup_iso)
        for key in ("total", "train", "fisher", "targets"):
            if key in self.timings:
                out[f"seconds_{key}"] = float(self.timings[key])
        return out

    def to_json(self, path: Optional[str] = None, include_logits: bool = False) -> str:
        """Serialise (JSON, no pickle). Logits are left out unless ``include_logits``."""
        doc: dict[str, Any] = {
            "strategy": self.strategy,
            "stability": _nan_to_none(self.stability.tolist()),
            "history": self.history,
            "timings": self.timings,
            "config": self.config,
            "costs": None if self.costs is None else np.asarray(self.costs).tolist(),
            "speedup_iso": self.speedup_iso,
            "budget_accuracy": {str(k): v for k, v in self.budget_accuracy.items()},
            "budget_best_accuracy": {str(k): v for k, v in self.budget_best_accuracy.items()},
            "analysis_error": self.analysis_error,
            "metadata": self.metadata,
            "stage_timings": self.stage_timings,
        }
        if self.operating_points is not None:
            doc["operating_points"] = json.loads(self.operating_points.to_json(orient="records"))
        if include_logits:
            for name in ("val_logits", "val_labels", "test_logits", "test_labels"):
                v = getattr(self, name)
                doc[name] = None if v is None else np.asarray(v).tolist()
        text = json.dumps(doc, indent=1)
        if path is not None:
            with atomic_write(path, "w") as f:
                f.write(text)
        return text

    @classmethod
    def from_json(cls, text_or_path: str) -> "TrainingResult":
        text = text_or_path
        if os.path.exists(text_or_path):
            with open(text_or_path) as f:
                text = f.read()
        doc = json.loads(text)
        A = np.array([[np.nan if v is None else v for v in row] for row in doc["stability"]])
        r = cls(strategy=doc["strategy"], stability=A, history=doc.get("history", []),
                timings=doc.get("timings", {}), config=doc.get("config", {}),
                metadata=doc.get("metadata", {}), stage_timings=doc.get("stage_timings", []))
        if doc.get("costs") is not None:
            r.costs = np.asarray(doc["costs"])
        r.speedup_iso = doc.get("speedup_iso")
        r.budget_accuracy = {float(k): v for k, v in doc.get("budget_accuracy", {}).items()}
        r.budget_best_accuracy = {
            float(k): v for k, v in doc.get("budget_best_accuracy", {}).items()
        }
        r.analysis_error = doc.get("analysis_error")
        for name in ("val_logits", "val_labels", "test_logits", "test_labels"):
            if doc.get(name) is not None:
                setattr(r, name, np.asarray(doc[name]))
        if doc.get("operating_points") is not None:
            import pandas as pd

            r.operating_points = pd.DataFrame(doc["operating_points"])
        return r

    # ------------------------------------------------------------ plots

    def plot_stability(self, ax=None, title: Optional[str] = None):
        """Heat map of the stability matrix (matplotlib). Returns the axes."""
        return plot_stability(self.stability, ax=ax, title=title or self.strategy)

    def plot_curve(self, ax=None, label: Optional[str] = None):
        """The test accuracy-versus-cost curve with the per-exit points. Returns the axes."""
        return plot_budget_curves({label or self.strategy: self}, ax=ax)

    def __repr__(self) -> str:
        acc = ", ".join(f"{a:.3f}" for a in self.final_accuracy)
        return (
            f"TrainingResult(strategy={self.strategy!r}, final_accuracy=[{acc}], "
            f"mean_forgetting={self.mean_forgetting:.3f})"
        )


def _nan_to_none(rows):
    return [[None if (isinstance(v, float) and math.isnan(v)) else v for v in row] for row in rows]


def _analyse(policy, res: TrainingResult, budgets: Sequence[float], score: str) -> list[dict]:
    """Calibrate on validation at each budget, report on test (through exitnet.policy)."""
    costs = np.asarray(res.costs, dtype=np.float64)
    cm = policy.CostModel.from_cumulative(costs)
    val = np.ascontiguousarray(res.val_logits, dtype=np.float32)
    test = np.ascontiguousarray(res.test_logits, dtype=np.float32)
    yv = np.asarray(res.val_labels, dtype=np.int64)
    yt = np.asarray(res.test_labels, dtype=np.int64)
    res.curve = policy.exact_curve(test, yt, cost=cm, measure=score).to_pandas()
    rows = []
    lo = costs[0] / costs[-1]
    best = {}
    ok = [b for b in budgets if lo <= b <= 1.0]
    if ok:
        best = dict(zip(ok, policy.accuracy_at_budgets(test, yt, ok, cost=cm, measure=score)))
    for b in budgets:
        row: dict[str, Any] = {"budget": float(b)}
        if not lo <= b <= 1.0:
            row.update(test_accuracy=float("nan"), note=f"budget below the first exit's cost ({lo:.3f})")
            rows.append(row)
            continue
        cal = policy.calibrate(val, yv, test, yt, target_cost=float(b) * cm.full, method="global",
                               cost=cm, measure=score)
        row.update(
            tau=float(cal.thresholds[0]),
            val_accuracy=cal.val.accuracy,
            val_cost=cal.val.mean_cost / cm.full,
            test_accuracy=cal.test.accuracy,
            test_cost=cal.test.mean_cost / cm.full,
            test_speedup=cal.test.speedup,
            test_best_accuracy=float(best[b]),
            exit_histogram=cal.test.exit_histogram.tolist(),
        )
        rows.append(row)
    res.speedup_iso = float(policy.speedup_at_iso_accuracy(test, yt, delta=0.01, cost=cm, measure=score))
    return rows


# ---------------------------------------------------------------------- module-level helpers


def compare(results: Mapping[str, TrainingResult] | Sequence[TrainingResult]):
    """One row per result: final accuracy per exit, forgetting, budget accuracies, speed-up, time."""
    import pandas as pd

    items = results.items() if isinstance(results, Mapping) else [(r.strategy, r) for r in results]
    rows = []
    for name, r in items:
        s = r.summary()
        s["strategy"] = name
        rows.append(s)
    return pd.DataFrame(rows).set_index("strategy")


def plot_stability(stability: np.ndarray, ax=None, title: Optional[str] = None,
                   vmin: Optional[float] = None, vmax: Optional[float] = None):
    """Heat map of a stability matrix (values in % written in the cells). The colour range
    defaults to the matrix's own min..max so that a few points of forgetting are visible."""
    import matplotlib.pyplot as plt

    A = np.asarray(stability, dtype=np.float64)
    if vmin is None:
        vmin = float(np.nanmin(A))
    if vmax is None:
        vmax = float(np.nanmax(A))
    if vmax <= vmin:
        vmin, vmax = vmin - 0.01, vmax + 0.01
    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 2.8))
    K = A.shape[0]
    im = ax.imshow(np.ma.masked_invalid(A), vmin=vmin, vmax=vmax, cmap="viridis")
    for k in range(K):
        for j in range(K):
            if not math.isnan(A[k, j]):
                ax.text(j, k, f"{100 * A[k, j]:.0f}", ha="center", va="center",
                        color="white" if A[k, j] < (vmin + vmax) / 2 else "black", fontsize=8)
    ax.set_xticks(range(K), [f"exit {j}" for j in range(K)], fontsize=8)
    ax.set_yticks(range(K), [f"stage {k}" for k in range(K)], fontsize=8)
    ax.set_xlabel("exit j")
    ax.set_ylabel("after stage k")
    if title:
        ax.set_title(title, fontsize=10)
    ax.figure.colorbar(im, ax=ax, fraction=0.046)
    return ax


def plot_stability_matrices(results: Mapping[str, TrainingResult]):
    """One stability heat map per strategy, side by side, on one colour scale. Returns the figure."""
    import matplotlib.pyplot as plt

    n = len(results)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.0), squeeze=False)
    lo = min(float(np.nanmin(r.stability)) for r in results.values())
    hi = max(float(np.nanmax(r.stability)) for r in results.values())
    for ax, (name, r) in zip(axes[0], results.items()):
        plot_stability(r.stability, ax=ax, title=name, vmin=lo, vmax=hi)
    fig.tight_layout()
    return fig


def _curve_xy(curve) -> Optional[tuple[np.ndarray, np.ndarray]]:
    if curve is None:
        return None
    if hasattr(curve, "columns") and "normalized_cost" in curve.columns:
        return np.asarray(curve["mean_cost"]), np.asarray(curve["accuracy"])
    for cx, ay in (("cost", "accuracy"), ("mean_cost", "accuracy"), ("costs", "accuracies")):
        if hasattr(curve, cx) and hasattr(curve, ay):
            return np.asarray(getattr(curve, cx)), np.asarray(getattr(curve, ay))
    if isinstance(curve, Mapping) and "cost" in curve and "accuracy" in curve:
        return np.asarray(curve["cost"]), np.asarray(curve["accuracy"])
    return None


def plot_budget_curves(results: Mapping[str, TrainingResult], ax=None, relative: bool = True):
    """Test accuracy versus mean cost (fraction of the full network) per strategy, with each exit's
    own accuracy as a marker. Returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.6))
    for name, r in results.items():
        full = float(r.costs[-1]) if r.costs is not None else 1.0
        xy = _curve_xy(r.curve)
        line = None
        if xy is not None:
            x, y = xy
            line, = ax.plot(x / full if relative else x, y, label=name, lw=1.4)
        if r.costs is not None:
            c = np.asarray(r.costs) / (full if relative else 1.0)
            ax.plot(c, r.final_accuracy, "o", ms=4,
                    color=None if line is None else line.get_color(),
                    label=None if line is not None else name)
    ax.set_xlabel("mean cost / full network" if relative else "mean cost (MACs)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax
