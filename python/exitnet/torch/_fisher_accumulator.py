"""A diagonal-Fisher accumulator whose state lives on the model's device (torchmetrics style).

State: per parameter the float64 sum S of (weighted) squared per-sample gradients, and the sample
count N; ``compute()`` gives F = S / N. The methods mirror :class:`exitnet.fisher.FisherAccumulator`
(the Go one: CPU state, used for CPU tensors), so the Fisher runner feeds either; on a GPU nothing
P-sized crosses to the host per batch. ``merge`` adds the sums and counts of another accumulator
over disjoint samples (exact up to float64 addition), and :meth:`all_reduce` does the same across
``torch.distributed`` ranks from the float64 sums (not from F × N in float32).

Granularity: per-sample label modes store S = Σ_n w_n g_n²; ``batched`` stores Σ_b B_b m_b² (the
squared mean gradient m_b of a minibatch of B_b samples, weighted by its size), as the Go one does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import torch
from torch import Tensor

__all__ = ["TorchFisherAccumulator"]


def _finite(name: str, t: Tensor) -> None:
    if not torch.isfinite(t).all():
        raise ValueError(f"{name}: NaN or Inf in the squared gradients")


class TorchFisherAccumulator:
    """``update``/``compute``/``reset``/``merge`` of diagonal-Fisher sums on ``device`` (float64).

    Parameters
    ----------
    layout : mapping name -> shape
        The parameters accumulated.
    label_mode : str
        ``"batched"`` changes the granularity (see the module documentation).
    device : torch.device, optional
        Where the state lives (default CPU).
    """

    on_device = True  # the Fisher runner hands it tensors, not host arrays

    def __init__(self, layout: Mapping[str, tuple], label_mode: str = "exact",
                 device: Optional[torch.device] = None) -> None:
        self.layout = {n: tuple(int(d) for d in s) for n, s in layout.items()}
        self.label_mode = label_mode
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.reset()

    @property
    def granularity(self) -> str:
        return "batched" if self.label_mode == "batched" else "per_sample"

    @property
    def n_samples(self) -> int:
        return self.count

    def reset(self) -> None:
        """Zero sums and count."""
        self.sums = {n: torch.zeros(s, dtype=torch.float64, device=self.device) for n, s in self.layout.items()}
        self.count = 0

    def _sum(self, param: str) -> Tensor:
        s = self.sums.get(param)
        if s is None:
            raise ValueError(f"param: {param!r} is not in the layout ({', '.join(self.layout)})")
        return s

    # -- updates (the Go accumulator's names) ------------------------------------------------------

    def update_squared(self, param: str, sq_sum: Any, n: int) -> None:
        """S += sq_sum (per-sample: Σ_n g_n² over n samples; batched: n·m_b²)."""
        s = self._sum(param)
        t = torch.as_tensor(sq_sum).to(self.device, torch.float64).reshape(s.shape)
        _finite(param, t)
        if n < 1:
            raise ValueError(f"n: expected ≥ 1, got {n}")
        if self.granularity == "batched":
            t = t * float(n)
        s.add_(t)

    def update_rows(self, rows: Tensor, *, param: str, weights: Any = None) -> None:
        """S += Σ_n w_n r_n² for per-sample gradient rows (N, numel)."""
        s = self._sum(param)
        r = torch.as_tensor(rows).to(self.device, torch.float64).reshape(rows.shape[0], -1)
        _finite(param, r)
        sq = r * r
        if weights is None:
            s.add_(sq.sum(0).reshape(s.shape))
        else:
            w = torch.as_tensor(weights).to(self.device, torch.float64)
            s.add_(torch.tensordot(w, sq, dims=([0], [0])).reshape(s.shape))

    def update_linear(self, weight: str, bias: Optional[str], inputs: Tensor, grad_outputs: Tensor, *,
                      weights: Any = None) -> None:
        """A Linear layer's sums from its factors: S_W += (w∘G∘G)ᵀ(A∘A), S_b += Σ_n w_n G_n²."""
        A = inputs.to(self.device, torch.float64)
        G2 = grad_outputs.to(self.device, torch.float64) ** 2
        if weights is not None:
            G2 = G2 * torch.as_tensor(weights).to(self.device, torch.float64).unsqueeze(1)
        _finite(weight, G2)
        self._sum(weight).add_(G2.t() @ (A * A))
        if bias is not None:
            self._sum(bias).add_(G2.sum(0))

    def add_samples(self, n: int) -> None:
        """Count n ≥ 0 samples (once per batch)."""
        if n < 0:
            raise ValueError(f"n: expected ≥ 0, got {n}")
        self.count += int(n)

    update = update_squared  # torchmetrics-style name for the generic update

    # -- results -------------------------------------------------------------------------------

    def compute(self) -> dict[str, Tensor]:
        """F = S / N per parameter (float32 on the device)."""
        if self.count <= 0:
            raise ValueError("compute: no samples counted")
        return {n: (s / self.count).to(torch.float32) for n, s in self.sums.items()}

    def state(self) -> tuple[dict[str, Tensor], int]:
        """The float64 sums (on the device) and the count."""
        return dict(self.sums), self.count

    def load_state(self, sums: Mapping[str, Any], count: int) -> None:
        missing = [n for n in self.layout if n not in sums]
        extra = [n for n in sums if n not in self.layout]
        if missing or extra:
            raise ValueError(f"sums: missing parameters {missing}, unknown {extra}")
        new = {}
        for n, shape in self.layout.items():
            t = torch.as_tensor(sums[n]).to(self.device, torch.float64).reshape(shape).clone()
            _finite(n, t)
            if (t < 0).any():
                raise ValueError(f"sums: {n!r} has negative entries")
            new[n] = t
        if isinstance(count, bool) or int(count) != count or count < 0:
            raise ValueError(f"count: expected an int ≥ 0, got {count!r}")
        self.sums, self.count = new, int(count)

    def merge(self, other: "TorchFisherAccumulator") -> None:
        """Add another accumulator's sums and count (disjoint samples)."""
        if not isinstance(other, TorchFisherAccumulator):
            raise TypeError(f"other: expected a TorchFisherAccumulator, got {type(other).__name__}")
        if other.layout != self.layout or other.label_mode != self.label_mode:
            raise ValueError("other: a different layout or label mode")
        for n, s in self.sums.items():
            s.add_(other.sums[n].to(s.device))
        self.count += other.count

    def all_reduce(self) -> None:
        """Sum the state over ``torch.distributed`` ranks (float64 sums, exact counts)."""
        from . import _dist

        sums, count = _dist.all_reduce_sums(self.sums, float(self.count))
        self.sums = {n: sums[n] for n in self.layout}
        self.count = int(round(count))

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        p = sum(s.numel() for s in self.sums.values())
        return (f"TorchFisherAccumulator({len(self.sums)} tensors, {p} values, n_samples={self.count}, "
                f"device={self.device}, label_mode={self.label_mode!r})")
