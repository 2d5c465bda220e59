"""Threshold calibration of :mod:`exitnet.policy` (:func:`calibrate`) and the summaries
of the exact curve: accuracy at budgets, speedup at iso-accuracy, area under the curve."""

from __future__ import annotations

import ctypes
from typing import Any, Sequence

import numpy as np

from . import _lib
from ._errors import InvalidArgumentError
from ._policy_cost import Calibration, CostModel, _cost, _labels, _point
from ._policy_scores import METHODS, Measure, Method, _dp, _fp, _i64p, _Point, confidence


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
