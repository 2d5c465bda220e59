"""The distillation loss of LwF in training steps: Go's fused kernel on CPU as an autograd Function.

``L = T² · mean_n KL(softmax(t_n/T) ‖ softmax(s_n/T))``, ``∂L/∂s = (T/N)·(softmax(s/T) − softmax(t/T))``.
On float32 CPU logits :func:`exitnet.distill.kd_loss` forms the value and the gradient in one pass
(the gradient is kept for backward); elsewhere (GPU, other dtypes) the torch expression
:func:`exitnet.distill.kd_loss_torch` runs on the tensors' device.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class _GoKD(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, student: Tensor, teacher: Tensor, temperature: float) -> Tensor:  # type: ignore[override]
        from ..distill import kd_loss as go_kd

        s = student.detach().reshape(student.shape[0], -1).contiguous()
        t = teacher.detach().to(torch.float32).reshape(s.shape).contiguous()
        loss, g = go_kd(s, t, temperature, grad=True)
        ctx.save_for_backward(torch.from_numpy(g).view(student.shape))
        return torch.tensor(loss, dtype=student.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, gout: Tensor) -> tuple:  # type: ignore[override]
        (g,) = ctx.saved_tensors
        return (g if float(gout) == 1.0 else g * gout), None, None


def kd_loss(student: Tensor, teacher: Tensor, temperature: float = 2.0, *, backend: str = "auto") -> Tensor:
    """The LwF/KD loss as a differentiable scalar (gradient into ``student`` only).

    ``backend``: ``"go"`` (float32 CPU tensors only), ``"torch"``, or ``"auto"`` = Go for float32
    CPU logits, torch otherwise. Both give the same value and gradient up to float32 rounding."""
    from ..distill import kd_loss_torch

    use_go = backend == "go" or (
        backend == "auto" and student.device.type == "cpu" and student.dtype == torch.float32
        and teacher.device.type == "cpu"
    )
    if not use_go:
        return kd_loss_torch(student, teacher, temperature)
    if student.device.type != "cpu" or student.dtype != torch.float32:
        raise ValueError(f"student: the Go KD kernel takes float32 CPU logits, got {student.dtype} on {student.device}")
    if student.shape != teacher.shape or student.ndim < 2 or student.shape[0] == 0:
        return kd_loss_torch(student, teacher, temperature)  # its errors name the problem
    return _GoKD.apply(student, teacher, float(temperature))
