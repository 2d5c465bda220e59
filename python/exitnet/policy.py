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

import ctypes
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
import pyarrow as pa

from . import _abi, _lib
from ._arrow import (ArrowIn, ArrowInMany, ArrowOut, _float32_numpy, _is_torch, as_ints, as_matrix, int_numpy,
                     is_arrow)
from ._errors import InvalidArgumentError

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

#: Confidence measures and calibration methods by name (enums of include/exitnet.h).
MEASURES = {k.lower(): v for k, v in _abi.POLICY_MEASURE.items()}
METHODS = {k.lower(): v for k, v in _abi.POLICY_METHOD.items()}

Measure = Literal["max_softmax", "entropy", "margin", "patience"]
Method = Literal["global", "msdnet", "per_exit"]

_dp = ctypes.POINTER(ctypes.c_double)
_fp = ctypes.POINTER(ctypes.c_float)
_i64p = ctypes.POINTER(ctypes.c_int64)
_Point = _abi.exitnet_policy_point

def _exit_arrays(logits: Any, name: str) -> list[pa.Array]:
    """K pyarrow matrices from a list of K arrays or one (K, N, C) array."""
    if isinstance(logits, pa.ChunkedArray):
        logits = logits.combine_chunks()
    if isinstance(logits, pa.Array):
        raise InvalidArgumentError(
            f"{name}: one Arrow array holds one exit; pass a list of K arrays (one per exit)")
    if isinstance(logits, (list, tuple)):
        if len(logits) == 0:
            raise InvalidArgumentError(f"{name}: empty list (need one array per exit)")
        return [as_matrix(x, f"{name}[{k}]") for k, x in enumerate(logits)]
    if _is_torch(logits) or isinstance(logits, np.ndarray):
        shape = tuple(logits.shape)
        if len(shape) != 3:
            raise InvalidArgumentError(
                f"{name}: expected a (K, N, C) array or a list of K (N, C) arrays, got shape {shape}")
        if shape[0] == 0:
            raise InvalidArgumentError(f"{name}: no exits (K = 0)")
        return [as_matrix(logits[k], f"{name}[{k}]") for k in range(shape[0])]
    raise InvalidArgumentError(
        f"{name}: expected a list of K arrays or a (K, N, C) array, got {type(logits).__name__}")


@dataclass
class Scores:
    """Confidences and predictions of N samples at K exits (exit-major).

    Attributes
    ----------
    confidence : np.ndarray, (K, N) float32
    prediction : np.ndarray, (K, N) int32 (argmax of the logits, first on ties)
    n_classes : int
    measure : str (``"custom"`` for :meth:`from_arrays`)
    """

    confidence: np.ndarray
    prediction: np.ndarray
    n_classes: int
    measure: str = "custom"

    @classmethod
    def from_arrays(cls, confidence: Any, prediction: Any, n_classes: int) -> "Scores":
        """Wrap your own (K, N) confidences (higher = more confident) and predictions."""
        conf = np.ascontiguousarray(_np(confidence, "confidence"), dtype=np.float32)
        pred = np.ascontiguousarray(_np(prediction, "prediction"), dtype=np.int32)
        if conf.ndim != 2 or pred.shape != conf.shape:
            raise InvalidArgumentError(
                f"confidence, prediction: need two (K, N) arrays of the same shape, got {conf.shape} and {pred.shape}")
        return cls(conf, pred, int(n_classes))

    @property
    def n_exits(self) -> int:
        return int(self.confidence.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.confidence.shape[1])

    def _arrow(self, prefix: str = "") -> tuple[ArrowIn, ArrowIn]:
        if self.confidence.shape[1] == 0:
            raise InvalidArgumentError(f"{prefix}confidences: no samples (N = 0)")
        return (ArrowIn(as_matrix(self.confidence, prefix + "confidences")),
                ArrowIn(pa.array(self.prediction.reshape(-1), type=pa.int32())))

    def _raw(self, prefix: str = "") -> tuple[np.ndarray, np.ndarray]:
        """Contiguous (K, N) float32 confidences and int32 predictions for a raw-pointer call."""
        if self.confidence.ndim != 2 or self.confidence.shape[1] == 0:
            raise InvalidArgumentError(f"{prefix}confidences: need a (K, N) array with N >= 1, got shape "
                                       f"{self.confidence.shape}")
        conf = _float32_numpy(np.asarray(self.confidence), prefix + "confidences")
        pred = np.asarray(self.prediction)
        if pred.shape != conf.shape:
            raise InvalidArgumentError(f"{prefix}predictions: shape {pred.shape}, confidences are {conf.shape}")
        if pred.dtype != np.int32:
            pred = int_numpy(pred.reshape(-1), prefix + "predictions", dtype=np.int32).reshape(conf.shape)
        return conf, np.ascontiguousarray(pred)

    def __repr__(self) -> str:
        return f"Scores(measure={self.measure!r}, exits={self.n_exits}, samples={self.n_samples}, classes={self.n_classes})"


def _np(x: Any, name: str) -> np.ndarray:
    if _is_torch(x):
        return x.detach().cpu().numpy()
    if isinstance(x, (pa.Array, pa.ChunkedArray)):
        return x.to_numpy(zero_copy_only=False)
    return np.asarray(x)


def confidence(logits: Any, measure: Measure = "max_softmax",
               temperature: float | Sequence[float] | None = None) -> Scores:
    """Confidence and prediction of every sample at every exit.

    Parameters
    ----------
    logits : list of K (N, C) arrays or a (K, N, C) array (numpy, torch, pyarrow), float32.
    measure : ``"max_softmax"``, ``"entropy"``, ``"margin"`` or ``"patience"`` (see the module doc).
    temperature : None, one float for every exit, or K floats (> 0) dividing each exit's logits.

    Returns
    -------
    Scores
        ``.confidence`` and ``.prediction``, both (K, N).
    """
    if isinstance(logits, Scores):
        return logits
    if measure not in MEASURES:
        raise InvalidArgumentError(f"measure: {measure!r} is not one of {', '.join(MEASURES)}")
    arrs = _exit_arrays(logits, "logits")
    k = len(arrs)
    temps = None
    if temperature is not None:
        t = np.atleast_1d(np.asarray(temperature, dtype=np.float32))
        if t.size == 1:
            t = np.full(k, t[0], dtype=np.float32)
        if t.size != k:
            raise InvalidArgumentError(f"temperature: {t.size} values for {k} exits (need 1 or K)")
        temps = (ctypes.c_float * k)(*t.tolist())
    n_classes = arrs[0].type.list_size if pa.types.is_fixed_size_list(arrs[0].type) else \
        arrs[0].storage.type.list_size
    ins = ArrowInMany(arrs)
    oc, op = ArrowOut(), ArrowOut()
    _lib.call("exitnet_policy_confidences", oc.array, oc.schema, op.array, op.schema,
              ins.array, ins.schema, k, MEASURES[measure], temps)
    conf = oc.to_array()
    pred = op.to_array()
    n = len(conf.flatten()) // k
    return Scores(conf.flatten().to_numpy(zero_copy_only=True).reshape(k, n),
                  pred.to_numpy(zero_copy_only=True).reshape(k, n), int(n_classes), measure)


class CostModel:
    """Declared cost of leaving at each exit (MACs or any unit shared by all exits).

    ``costs[k] = Σ_{j≤k} (stage_macs[j] + head_macs[j])``; negative costs, a zero total
    or (for :meth:`from_cumulative`) decreasing costs are errors. ``exitnet.torch``'s
    ``stage_costs(stages, heads, example_input)`` counts the MACs.
    """

    def __init__(self, stage_macs: Sequence[float], head_macs: Sequence[float] | None = None) -> None:
        s = np.ascontiguousarray(stage_macs, dtype=np.float64).reshape(-1)
        h = np.zeros_like(s) if head_macs is None else np.ascontiguousarray(head_macs, dtype=np.float64).reshape(-1)
        if s.size == 0:
            raise InvalidArgumentError("stage_macs: empty")
        if h.size != s.size:
            raise InvalidArgumentError(f"head_macs: {h.size} values, stage_macs has {s.size} (need one per exit)")
        out = np.empty_like(s)
        _lib.call("exitnet_policy_cost_cumulative", out.ctypes.data_as(_dp), s.ctypes.data_as(_dp),
                  h.ctypes.data_as(_dp), int(s.size))
        self.stage_macs, self.head_macs, self.costs = s, h, out

    @classmethod
    def from_cumulative(cls, costs: Sequence[float]) -> "CostModel":
        """Cost model from the cost of leaving at each exit (must not decrease)."""
        c = np.ascontiguousarray(costs, dtype=np.float64).reshape(-1)
        if c.size == 0:
            raise InvalidArgumentError("costs: empty")
        bad = np.flatnonzero(~np.isfinite(c) | (c < 0))
        if bad.size:
            raise InvalidArgumentError(f"costs: exit {bad[0]} has {c[bad[0]]:g}, need a finite value >= 0")
        dec = np.flatnonzero(np.diff(c) < 0)
        if dec.size:
            k = int(dec[0]) + 1
            raise InvalidArgumentError(
                f"costs: exit {k} costs {c[k]:g} < exit {k - 1}'s {c[k - 1]:g} (cumulative costs cannot decrease)")
        if not c[-1] > 0:
            raise InvalidArgumentError("costs: total cost is 0 (speed-up undefined)")
        self = cls.__new__(cls)
        self.stage_macs, self.head_macs, self.costs = None, None, c
        return self

    @classmethod
    def uniform(cls, n_exits: int) -> "CostModel":
        """Every exit adds one unit: ``costs[k] = k + 1``."""
        return cls(np.ones(n_exits), np.zeros(n_exits))

    @property
    def n_exits(self) -> int:
        return int(self.costs.size)

    @property
    def full(self) -> float:
        """Cost of the whole network (leaving at the last exit)."""
        return float(self.costs[-1])

    def _c(self, k: int) -> Any:
        if self.costs.size != k:
            raise InvalidArgumentError(f"cost: {self.costs.size} exits in the cost model, {k} in the logits")
        return self.costs.ctypes.data_as(_dp)

    def __repr__(self) -> str:
        return f"CostModel(costs={self.costs.tolist()})"


def _cost(cost: CostModel | Sequence[float] | None, k: int) -> CostModel:
    if cost is None:
        return CostModel.uniform(k)
    if isinstance(cost, CostModel):
        return cost
    return CostModel.from_cumulative(cost)


def _labels(labels: Any, name: str) -> ArrowIn:
    return ArrowIn(as_ints(labels, name))


@dataclass
class Point:
    """An operating point. ``tau`` is the global threshold (NaN for per-exit ones)."""

    tau: float
    correct: int
    n: int
    accuracy: float
    mean_cost: float
    speedup: float
    exit_histogram: np.ndarray = field(repr=False)


def _point(p: _Point, hist: np.ndarray) -> Point:
    return Point(float(p.tau), int(p.correct), int(p.n), float(p.accuracy), float(p.mean_cost),
                 float(p.speedup), hist)


@dataclass
class Calibration:
    """Thresholds chosen on validation and their validation and test points."""

    method: str
    thresholds: np.ndarray
    q: float
    val: Point
    test: Point | None
    target_cost: float | None = None
    target_accuracy: float | None = None

    def __repr__(self) -> str:
        t = f"target_cost={self.target_cost:g}" if self.target_cost is not None else \
            f"target_accuracy={self.target_accuracy:g}"
        thr = ", ".join(f"{v:.4g}" for v in self.thresholds)
        s = f"Calibration({self.method}, {t}, thresholds=[{thr}]"
        s += f", val acc={self.val.accuracy:.4f} cost={self.val.mean_cost:g}"
        if self.test is not None:
            s += f", test acc={self.test.accuracy:.4f} cost={self.test.mean_cost:g} speedup={self.test.speedup:.3f}"
        return s + ")"


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


def calibrate(val_logits: Any, val_labels: Any, test_logits: Any = None, test_labels: Any = None, *,
              target_cost: float | None = None, target_accuracy: float | None = None,
              method: Method = "global", cost: CostModel | Sequence[float] | None = None,
              measure: Measure = "max_softmax",
              temperature: float | Sequence[float] | None = None) -> Calibration:
    """Choose thresholds on validation, report them on test.

    Exactly one target:

    * ``target_cost`` (same unit as the cost model, between the first exit's cost and
      the full cost; outside is an error, not a clamp; e.g. ``0.5 * cost.full``):
      maximise validation accuracy subject to mean cost ≤ target;
    * ``target_accuracy`` (in [0, 1]): minimise validation mean cost subject to
      accuracy ≥ target (an unreachable target is an error).

    Methods: ``"global"`` (one τ, the best point of the validation exact curve),
    ``"msdnet"`` (per-exit thresholds giving geometric exit proportions p_k ∝ q^k on
    validation, q searched for the target; Huang et al. 2018), ``"per_exit"``
    (coordinate descent over τ_0..τ_{K−2}, each swept exactly, from the MSDNet and
    global points: never worse than either on validation).
    """
    if (target_cost is None) == (target_accuracy is None):
        raise InvalidArgumentError("target_cost, target_accuracy: pass exactly one of them")
    if method not in METHODS:
        raise InvalidArgumentError(f"method: {method!r} is not one of {', '.join(METHODS)}")
    if (test_logits is None) != (test_labels is None):
        raise InvalidArgumentError("test_logits, test_labels: pass both or neither")
    vs = confidence(val_logits, measure, temperature)
    k = vs.n_exits
    cm = _cost(cost, k)
    vc, vp = vs._arrow("val_")
    vy = _labels(val_labels, "val_labels")
    has_test = test_logits is not None
    if has_test:
        ts = confidence(test_logits, measure, temperature)
        if ts.n_exits != k or ts.n_classes != vs.n_classes:
            raise InvalidArgumentError(
                f"test_logits: {ts.n_exits} exits × {ts.n_classes} classes, validation has {k} × {vs.n_classes}")
        tc, tp = ts._arrow("test_")
        ty = _labels(test_labels, "test_labels")
        targs = [tc.array, tc.schema, tp.array, tp.schema, ty.array, ty.schema]
    else:
        targs = [None] * 6
    thr = np.empty(k, dtype=np.float32)
    q = ctypes.c_double()
    pv, pt = _Point(), _Point()
    hv, ht = np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64)
    by_acc = target_accuracy is not None
    target = float(target_accuracy if by_acc else target_cost)  # type: ignore[arg-type]
    _lib.call("exitnet_policy_calibrate", thr.ctypes.data_as(_fp), ctypes.byref(q), ctypes.byref(pv),
              hv.ctypes.data_as(_i64p), ctypes.byref(pt), ht.ctypes.data_as(_i64p),
              vc.array, vc.schema, vp.array, vp.schema, vy.array, vy.schema, *targs,
              vs.n_classes, cm._c(k), METHODS[method], int(by_acc), target)
    return Calibration(method, thr, q.value, _point(pv, hv), _point(pt, ht) if has_test else None,
                       None if by_acc else target, target if by_acc else None)


def _summary(logits: Any, labels: Any, cost: Any, measure: Measure, temperature: Any,
             budgets: Sequence[float] | None, delta: float | None, want_auc: bool) -> tuple:
    s = confidence(logits, measure, temperature)
    cm = _cost(cost, s.n_exits)
    c, p = s._arrow()
    y = _labels(labels, "labels")
    b = np.ascontiguousarray(np.atleast_1d(np.asarray([] if budgets is None else budgets, dtype=np.float64)))
    if budgets is not None and b.size == 0:
        raise InvalidArgumentError("budgets: empty")
    acc = np.empty(b.size, dtype=np.float64)
    sp, a = ctypes.c_double(), ctypes.c_double()
    _lib.call("exitnet_policy_summary", acc.ctypes.data_as(_dp),
              ctypes.byref(sp) if delta is not None else None, ctypes.byref(a) if want_auc else None,
              c.array, c.schema, p.array, p.schema, y.array, y.schema, s.n_classes, cm._c(s.n_exits),
              b.ctypes.data_as(_dp), int(b.size), float(delta or 0.0))
    return acc, sp.value, a.value


def accuracy_at_budgets(logits: Any, labels: Any, budgets: Sequence[float] = (0.25, 0.5, 0.75),
                        cost: CostModel | Sequence[float] | None = None, measure: Measure = "max_softmax",
                        temperature: float | Sequence[float] | None = None) -> np.ndarray:
    """Best accuracy of the exact curve with mean cost ≤ b · full cost, for each budget b.

    Budgets are fractions of the full cost in [cost_0 / full, 1]; outside is an error.
    """
    return _summary(logits, labels, cost, measure, temperature, budgets, None, False)[0]


def speedup_at_iso_accuracy(logits: Any, labels: Any, delta: float = 0.0,
                            cost: CostModel | Sequence[float] | None = None, measure: Measure = "max_softmax",
                            temperature: float | Sequence[float] | None = None) -> float:
    """Speed-up (full cost / mean cost) of the cheapest point of the exact curve whose
    accuracy is at least the last exit's accuracy minus ``delta``."""
    return _summary(logits, labels, cost, measure, temperature, None, delta, False)[1]


def auc(logits: Any, labels: Any, cost: CostModel | Sequence[float] | None = None,
        measure: Measure = "max_softmax", temperature: float | Sequence[float] | None = None) -> float:
    """Area under accuracy versus normalised cost (mean cost / full cost) of the exact
    curve, trapezoid rule, over [cost_0 / full, 1] (at most 1 − cost_0 / full)."""
    return _summary(logits, labels, cost, measure, temperature, None, None, True)[2]


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
