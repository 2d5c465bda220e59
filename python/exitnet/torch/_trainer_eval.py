"""The trainer's precision (AMP) and evaluation methods, split out of :mod:`._trainer`.

:class:`PrecisionAndEval` is a mixin of :class:`~exitnet.torch.SequentialTrainer`: it reads the
trainer's ``net``, ``device``, ``amp``, ``data`` and ``eval_batch_size``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ._batches import TrainData, eval_batches


class PrecisionAndEval:
    """AMP dtype and autocast, class-count check, eval-mode logits and accuracies, stage costs."""

    net: Any
    device: torch.device
    amp: Any
    data: Optional[TrainData]
    eval_batch_size: int

    # ------------------------------------------------------------------ precision

    def _amp_dtype(self) -> Optional[torch.dtype]:
        if self.amp is False:
            return None
        if self.amp == "bf16" or (self.amp is True and self.device.type != "cuda"):
            return torch.bfloat16
        return torch.float16

    def _amp_dtype_name(self) -> Optional[str]:
        d = self._amp_dtype()
        return None if d is None else str(d).replace("torch.", "")

    def autocast(self) -> Any:
        """The autocast context of training and recording steps (a no-op without AMP)."""
        d = self._amp_dtype()
        if d is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=d)

    def _grad_scaler(self) -> Any:
        if self._amp_dtype() is torch.float16 and self.device.type == "cuda":
            return torch.amp.GradScaler("cuda")
        return None

    # ------------------------------------------------------------------ data

    def _check_classes(self, data: TrainData, num_classes: Optional[int]) -> int:
        x0 = data.example.to(self.device)
        was = self.net.training
        self.net.eval()
        with torch.no_grad():
            outs = self.net(x0)
        self.net.train(was)
        widths = {int(o.shape[-1]) for o in outs}
        if len(widths) != 1:
            raise ValueError(f"net: the exits output different numbers of classes: {sorted(widths)}")
        c = widths.pop()
        if num_classes is not None and c != num_classes:
            raise ValueError(f"net: the exits output {c} classes but the data has {num_classes}")
        ds = data.dataset
        if isinstance(ds, TensorDataset):
            y = ds.tensors[1]
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= c):
                raise ValueError(
                    f"train: labels span [{int(y.min())}, {int(y.max())}] but the exits output {c} classes"
                )
        return c

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def predict_logits(self, ds: Any, upto: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
        """Logits of exits 0..upto on ``ds`` (a Dataset or DataLoader) in eval mode: an array
        (K, N, C) and the labels (N,)."""
        was = self.net.training
        self.net.eval()
        outs: list[list[torch.Tensor]] = []
        ys = []
        try:
            for x, y, _ in eval_batches(ds, self.eval_batch_size):
                with self.autocast():
                    z = self.net.forward_exits(x.to(self.device), upto=upto)
                outs.append([t.float().cpu() for t in z])
                ys.append(torch.as_tensor(y))
        finally:
            self.net.train(was)
        K = len(outs[0])
        logits = np.stack([torch.cat([o[k] for o in outs]).numpy() for k in range(K)])
        return logits, torch.cat(ys).numpy()

    def evaluate(self, ds: Any, upto: int) -> list[float]:
        """Eval-mode accuracy of exits 0..upto on ``ds``."""
        logits, y = self.predict_logits(ds, upto)
        return [float((logits[k].argmax(1) == y).mean()) for k in range(logits.shape[0])]

    def _costs(self, ds: Any = None) -> Optional[np.ndarray]:
        """Cumulative MACs of leaving at each exit (stage_costs), or None if unavailable."""
        try:
            from ._macs import stage_costs
        except ImportError:
            return None
        if ds is not None:
            x0 = TrainData(ds).example.to(self.device)
        else:
            x0 = self.data.example.to(self.device)
        was = self.net.training
        self.net.eval()
        try:
            s_macs, h_macs = stage_costs(self.net.stages, self.net.heads, x0)
        finally:
            self.net.train(was)
        return np.cumsum(np.asarray(s_macs, np.float64) + np.asarray(h_macs, np.float64))
