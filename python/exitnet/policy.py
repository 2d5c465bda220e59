"""Early-exit policies: confidences, exit assignment, exact budget curves, calibration.

Definitions
-----------
An early-exit network has K exits (exit 0 is the shallowest); exit k produces
logits ``z_k`` (N×C). For each sample and exit:

* confidence (higher = more confident), after an optional per-exit temperature
  ``z / T_k`` and ``p = softmax(z / T_k)``:

  - ``"max_softmax"``: ``max_c p_c``;
  - ``"entropy"``: ``1 − H(p) / log C`` with ``H(p) = −Σ_c p_c log p_c`` (the
    negative entropy normalised by log C, shifted to [0, 1]);
  - ``"margin"``: ``p_(1) − p_(2)``, top-1 minus top-2 probability;
  - ``"patience"``: the number of consecutive exits, ending at k, that predict the
    same class (1 at exit 0); a threshold τ = p means "p exits agree".

* policy: sample i leaves at the first exit ``k < K−1`` with ``conf[k, i] ≥ τ_k``;
  the last exit always accepts. A global threshold is ``τ_k = τ``.
* cost model: leaving at exit k costs ``cost_k = Σ_{j≤k} (stage_j + head_j)``
  (MACs: every stage and head up to k ran). Mean cost ``= Σ_k hist_k cost_k / N``;
  speed-up ``= cost_{K−1} / mean cost``; normalised cost ``= mean cost / cost_{K−1}``.
* exact curve: with a global τ a sample's exit changes only where τ crosses a
  running maximum of its confidences, so the ≤ N·(K−1) breakpoints, sorted and
  swept (O(NK log NK)), give every distinct operating point; no grid.

Inputs
------
``logits`` is a list of K arrays (N, C), one per exit, or one (K, N, C) array;
numpy, torch (CPU) or pyarrow (``fixed_size_list<float32>`` or
``arrow.fixed_shape_tensor``), float32 (no silent conversion). Every function
that takes logits also takes a :class:`Scores` (from :func:`confidence`), which
skips recomputing the confidences. Labels are integer arrays of N values in
[0, C). Without a cost model, each exit adds one unit (``cost_k = k + 1``).

Example
-------
>>> import numpy as np
>>> from exitnet import policy
>>> rng = np.random.default_rng(0)
>>> logits = rng.normal(size=(3, 100, 10)).astype(np.float32)
>>> labels = rng.integers(0, 10, 100)
>>> cost = policy.CostModel([100, 100, 100], [10, 10, 10])
>>> curve = policy.exact_curve(logits, labels, cost=cost)
>>> curve.column_names[:4]
['tau', 'correct', 'accuracy', 'mean_cost']
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from . import _reexport
from . import _lib
from ._arrow import ArrowOut, int_numpy, is_arrow
from ._errors import InvalidArgumentError
# Scores, costs and results, and the calibration live in their own modules; re-exported
# here, where they have always been imported from.
from ._policy_calibrate import _summary, accuracy_at_budgets, auc, calibrate, speedup_at_iso_accuracy  # noqa: F401
from ._policy_cost import Calibration, CostModel, Point, _cost, _labels, _point  # noqa: F401
from ._policy_scores import (  # noqa: F401
    MEASURES,
    METHODS,
    Measure,
    Method,
    Scores,
    _dp,
    _exit_arrays,
    _fp,
    _i64p,
    _np,
    _Point,
    confidence,
)

__all__ = [
    "MEASURES",
    "METHODS",
    "Scores",
    "CostModel",
    "Point",
    "Calibration",
    "confidence",
    "assign",
    "exact_curve",
    "calibrate",
    "accuracy_at_budgets",
    "speedup_at_iso_accuracy",
    "auc",
    "plot_curve",
]


def assign(logits: Any, thresholds: float | Sequence[float], measure: Measure = "max_softmax",
           temperature: float | Sequence[float] | None = None) -> pa.Table:
    """Exit taken by every sample for a global τ (a float) or per-exit τ_k (K values;
    τ_{K−1} is ignored: the last exit always accepts).

    Returns
    -------
    pyarrow.Table with columns ``exit`` (int32), ``prediction`` (int32) and
    ``confidence`` (float32, at the exit taken), one row per sample.
    """
    s = confidence(logits, measure, temperature)
    t = np.ascontiguousarray(np.atleast_1d(np.asarray(thresholds, dtype=np.float32)).reshape(-1))
    c, p = s._arrow()
    out = ArrowOut()
    _lib.call("exitnet_policy_assign", out.array, out.schema, c.array, c.schema, p.array, p.schema,
              s.n_classes, t.ctypes.data_as(_fp), int(t.size))
    return pa.Table.from_batches([out.to_batch()])


def exact_curve(logits: Any, labels: Any, cost: CostModel | Sequence[float] | None = None,
                measure: Measure = "max_softmax",
                temperature: float | Sequence[float] | None = None) -> pa.Table:
    """The exact accuracy-versus-cost curve of a global threshold.

    Every distinct operating point, in sweep order: row 0 is τ = +inf (everyone at the
    last exit), τ then decreases; the row with threshold v holds for every τ in
    (previous v, v]. Ties are exact (equal confidences move together).

    Returns
    -------
    pyarrow.Table with ``tau``, ``correct``, ``accuracy``, ``mean_cost``,
    ``normalized_cost`` (mean cost / full cost), ``speedup`` (full cost / mean cost) and
    ``exit_histogram`` (K counts). ``.to_pandas()`` works.

    The scores and numpy / torch labels cross as plain pointers
    (``exitnet_policy_curve_raw``); pyarrow labels through Arrow C Data.
    """
    s = confidence(logits, measure, temperature)
    cm = _cost(cost, s.n_exits)
    out = ArrowOut()
    if is_arrow(labels):
        c, p = s._arrow()
        y = _labels(labels, "labels")
        _lib.call("exitnet_policy_curve", out.array, out.schema, c.array, c.schema, p.array, p.schema,
                  y.array, y.schema, s.n_classes, cm._c(s.n_exits))
    else:
        # numpy / torch labels: plain pointers (exitnet_policy_curve_raw), no Arrow structs in
        conf, pred = s._raw()
        yn = int_numpy(labels, "labels").astype(np.int64, copy=False)
        if yn.size != s.n_samples:
            raise InvalidArgumentError(f"labels: {yn.size} values, the scores have {s.n_samples} samples")
        _lib.call("exitnet_policy_curve_raw", out.array, out.schema, conf.ctypes.data, pred.ctypes.data,
                  yn.ctypes.data, s.n_exits, s.n_samples, s.n_classes, cm._c(s.n_exits))
    return pa.Table.from_batches([out.to_batch()])


def plot_curve(logits: Any, labels: Any, cost: CostModel | Sequence[float] | None = None, *,
               measure: Measure = "max_softmax", temperature: float | Sequence[float] | None = None,
               calibrations: Sequence[Calibration] = (), ax: Any = None, label: str | None = None) -> Any:
    """Plot the exact curve (accuracy vs normalised cost) with the per-exit points
    (everyone at exit k) and calibrated operating points (their ``test`` point if
    present, else ``val``). Needs matplotlib. Returns the axes."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover
        raise ImportError("plot_curve needs matplotlib: pip install matplotlib") from e
    s = confidence(logits, measure, temperature)
    cm = _cost(cost, s.n_exits)
    curve = exact_curve(s, labels, cm)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    x = curve.column("normalized_cost").to_numpy()
    y = curve.column("accuracy").to_numpy()
    ax.plot(x, y, "-", lw=1.2, label=label or f"exact curve ({s.measure})")
    k = s.n_exits
    ex_x, ex_y = [], []
    for e in range(k):
        t = np.full(k, np.inf, dtype=np.float32)
        t[e] = -np.inf
        a = assign(s, t)
        ex_y.append(float(np.mean(a.column("prediction").to_numpy() == np.asarray(_np(labels, "labels")))))
        ex_x.append(cm.costs[e] / cm.full)
    ax.plot(ex_x, ex_y, "o", color="k", label="single exits")
    for c in calibrations:
        p = c.test if c.test is not None else c.val
        ax.plot([p.mean_cost / cm.full], [p.accuracy], "*", ms=10, label=f"{c.method}")
    ax.set_xlabel("normalised mean cost")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    return ax

_reexport.own(globals())  # public names report this module (help, repr, pickles)
