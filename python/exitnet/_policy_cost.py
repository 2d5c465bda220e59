"""Costs and results of :mod:`exitnet.policy`: the :class:`CostModel` of the exits,
operating points (:class:`Point`) and :class:`Calibration` results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from . import _lib
from ._arrow import ArrowIn, as_ints
from ._errors import InvalidArgumentError
from ._policy_scores import _dp, _Point


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
