"""The result of a Fisher pass: :class:`FisherResult`, a read-only mapping name -> Fisher tensor
with the exact float64 sums it was computed from."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal, Optional

import numpy as np
import torch
from torch import Tensor


def _go():
    """The Go-backed accumulator module (imported lazily: loading it loads the shared library)."""
    from .. import fisher

    return fisher


class FisherResult(Mapping):
    """Diagonal Fisher per parameter: a read-only mapping ``name -> Tensor`` (parameter shape,
    parameter dtype, on the parameters' device).

    Attributes
    ----------
    n_samples : int
        Number of samples averaged over (N).
    label_mode : str
        One of ``exact``, ``sampled``, ``argmax``, ``empirical``, ``batched``.
    granularity : str
        ``"per_sample"`` (mean of squared per-sample gradients) or ``"batched"``.
    normalisation : str
        ``"mean_over_samples"``: F = S / N with S the sum of (weighted) squared gradients.
    methods : dict[str, str]
        How each parameter's per-sample gradients were obtained: ``linear``, ``linear_seq``,
        ``conv2d``, ``norm``, ``rows`` (torch.func), ``batched`` or ``unreached`` (no gradient from
        this forward: its Fisher is zero).
    sums : dict[str, numpy.ndarray]
        The accumulator's float64 sums S (so results from chunks or ranks merge exactly); from
        an accumulator on the device they are copied to the host only when read
        (:meth:`sum_tensors` keeps them where they are).
    """

    def __init__(
        self,
        fishers: Mapping[str, Tensor],
        *,
        n_samples: int,
        label_mode: str,
        sums: Mapping[str, Any],
        methods: Optional[Mapping[str, str]] = None,
    ) -> None:
        self._f = dict(fishers)
        self.n_samples = int(n_samples)
        self.label_mode = str(label_mode)
        self.granularity = "batched" if label_mode == "batched" else "per_sample"
        self.normalisation = "mean_over_samples"
        if any(isinstance(v, Tensor) for v in sums.values()):
            self._sums_t: Optional[dict[str, Tensor]] = {k: v.detach().to(torch.float64) for k, v in sums.items()}
            self._sums_np: Optional[dict[str, np.ndarray]] = None
        else:
            self._sums_t = None
            self._sums_np = {k: np.array(v, dtype=np.float64, copy=True) for k, v in sums.items()}
        self.methods = dict(methods or {})

    @property
    def sums(self) -> dict[str, np.ndarray]:
        if self._sums_np is None:
            assert self._sums_t is not None
            self._sums_np = {k: v.cpu().numpy().copy() for k, v in self._sums_t.items()}
        return self._sums_np

    def sum_tensors(self) -> dict[str, Tensor]:
        """The float64 sums as tensors (on the accumulator's device when it had one)."""
        if self._sums_t is not None:
            return dict(self._sums_t)
        return {k: torch.from_numpy(v.copy()) for k, v in self.sums.items()}

    def __getitem__(self, name: str) -> Tensor:
        return self._f[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._f)

    def __len__(self) -> int:
        return len(self._f)

    def to_dict(self) -> dict[str, Tensor]:
        """A plain ``dict`` of the Fisher tensors (name -> Tensor)."""
        return dict(self._f)

    def numpy(self) -> dict[str, np.ndarray]:
        """The Fishers as float32 numpy arrays on the CPU."""
        return {k: v.detach().to("cpu", torch.float32).numpy() for k, v in self._f.items()}

    def merge(self, other: "FisherResult") -> "FisherResult":
        """Combine two results over disjoint samples exactly (sums and counts add), e.g. two halves
        of a data set or two data-parallel ranks. Both must have the same parameters, shapes and
        label mode. Returns a new result; the merge runs in the Go accumulator, or in torch on
        the device when both results come from a device accumulator."""
        if not isinstance(other, FisherResult):
            raise TypeError(f"other: expected a FisherResult, got {type(other).__name__}")
        if other.label_mode != self.label_mode:
            raise ValueError(
                f"other: label mode {other.label_mode!r} differs from {self.label_mode!r}"
            )
        if list(other.keys()) != list(self.keys()):
            raise ValueError(
                f"other: parameters {sorted(other.keys())} differ from {sorted(self.keys())}"
            )
        layout = {k: tuple(v.shape) for k, v in self._f.items()}
        for k, v in other.items():
            if tuple(v.shape) != layout[k]:
                raise ValueError(f"other: {k!r} has shape {tuple(v.shape)}, expected {layout[k]}")
        methods = {k: self.methods.get(k, "") for k in self._f}
        for k, m in other.methods.items():
            if methods.get(k) != m:
                methods[k] = "mixed"
        if self._sums_t is not None and other._sums_t is not None:
            # both on a device: add the float64 sums there (exact as float64 addition)
            a, b = self._sums_t, other._sums_t
            sums_t = {k: a[k] + b[k].to(a[k].device) for k in a}
            count_t = self.n_samples + other.n_samples
            out_t = {k: (sums_t[k] / count_t).reshape(v.shape).to(v.device, v.dtype) for k, v in self._f.items()}
            return FisherResult(out_t, n_samples=count_t, label_mode=self.label_mode, sums=sums_t, methods=methods)
        go = _go()
        with go.FisherAccumulator(layout, label_mode=self.label_mode) as a, go.FisherAccumulator(
            layout, label_mode=self.label_mode
        ) as b:
            a.load_state(self.sums, self.n_samples)
            b.load_state(other.sums, other.n_samples)
            a.merge(b)
            sums, count = a.state()
            f = a.compute()
        ref = self._f
        out = {k: torch.from_numpy(np.array(f[k], copy=True)).to(ref[k].device, ref[k].dtype) for k in ref}
        return FisherResult(
            out, n_samples=count, label_mode=self.label_mode, sums=sums, methods=methods
        )

    def summary(self) -> list[dict[str, Any]]:
        """One row per parameter: name, shape, numel, mean, max, sum of its Fisher, and method."""
        rows = []
        for n, v in self._f.items():
            d = v.detach().double()
            rows.append({
                "name": n, "shape": tuple(v.shape), "numel": int(v.numel()),
                "mean": float(d.mean()) if v.numel() else 0.0,
                "max": float(d.max()) if v.numel() else 0.0,
                "sum": float(d.sum()), "method": self.methods.get(n, ""),
            })
        return rows

    def plot(self, ax: Any = None, stat: Literal["mean", "max", "sum"] = "mean") -> Any:
        """Bar chart (log scale) of one statistic of each parameter's Fisher; returns the Axes.

        Needs matplotlib (optional dependency)."""
        if stat not in ("mean", "max", "sum"):
            raise ValueError(f"stat: {stat!r} is not one of mean, max, sum")
        import matplotlib.pyplot as plt

        rows = self.summary()
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 0.25 * len(rows) + 1.2))
        vals = [max(r[stat], 1e-30) for r in rows]
        ax.barh(range(len(rows)), vals)
        ax.set_yticks(range(len(rows)), [r["name"] for r in rows])
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel(f"{stat} of diagonal Fisher ({self.label_mode}, N={self.n_samples})")
        return ax

    def __repr__(self) -> str:
        p = sum(v.numel() for v in self._f.values())
        return (
            f"FisherResult({len(self._f)} tensors, {p} values, n_samples={self.n_samples}, "
            f"label_mode={self.label_mode!r}, granularity={self.granularity!r})"
        )

