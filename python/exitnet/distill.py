"""Learning without Forgetting (LwF): soft targets, the distillation loss, recorded targets.

Definitions
-----------
For N rows of C logits and a temperature T:

* soft targets: ``p_ij = softmax(z_i / T)_j`` (row-wise, max-subtracted);
* distillation loss of student logits ``s`` against teacher logits ``t``::

      L = T² · (1/N) · Σ_i KL(softmax(t_i/T) ‖ softmax(s_i/T))
      ∂L/∂s_ij = (T/N) · (softmax(s_i/T)_j − softmax(t_i/T)_j)

  i.e. torch's ``F.kl_div(F.log_softmax(s/T, 1), F.log_softmax(t/T, 1),
  reduction="batchmean", log_target=True) * T**2`` (Hinton et al., 2015: the T²
  keeps gradient magnitudes comparable across temperatures). An empty batch
  (N == 0) is an error: the mean over no rows is undefined.

:func:`soft_targets` and :func:`kd_loss` run in the native library (AVX2 kernels,
float32, inputs read in place): numpy arrays, torch CPU tensors or pyarrow arrays
(``fixed_size_list<float32>`` or ``arrow.fixed_shape_tensor``), float32 only (no
silent conversion). :func:`kd_loss_torch` is the same loss as a torch expression
for training steps (autograd, any device).

Recorded targets
----------------
Before training stage k, run the network once over the training set and record
exits 0..k−1's raw logits keyed by sample id with :class:`TargetWriter`; it saves
one Arrow IPC file atomically (column ``sample_id`` int64 sorted, one column
``exit_<j>`` of ``fixed_size_list<float32>[C]`` per exit, schema metadata
``exitnet.kind=lwf_targets``). Read it back with :class:`TargetStore` (native,
memory-mapped) or :func:`read_targets` / :class:`TargetFile` (pyarrow + numpy
only: never calls into the native library, so forked PyTorch DataLoader workers
can use it).

Example
-------
>>> import numpy as np
>>> from exitnet import distill
>>> rng = np.random.default_rng(0)
>>> s = rng.normal(size=(4, 10)).astype(np.float32)
>>> t = rng.normal(size=(4, 10)).astype(np.float32)
>>> loss, grad = distill.kd_loss(s, t, temperature=2.0)
>>> grad.shape
(4, 10)
>>> bool(np.allclose(distill.soft_targets(s, 2.0).sum(axis=1), 1.0, atol=1e-6))
True
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _reexport
from . import _lib
from ._arrow import ArrowIn, ArrowOut, as_matrix, float32_numpy, matrix_to_numpy
from ._errors import InvalidArgumentError
# The target files (writer, native reader, pure-Python reader) live in their own modules;
# re-exported here, where they have always been imported from.
from ._distill_target_file import TargetFile, _count, read_targets  # noqa: F401
from ._distill_targets import TARGETS_FORMAT_VERSION, TARGETS_KIND, TargetStore, TargetWriter, _fp, _i64p  # noqa: F401

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "soft_targets",
    "kd_loss",
    "kd_loss_torch",
    "TargetWriter",
    "TargetStore",
    "TargetFile",
    "read_targets",
    "TARGETS_KIND",
    "TARGETS_FORMAT_VERSION",
]


def _temperature(temperature: float) -> float:
    try:
        return float(temperature)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"temperature: expected a number, got {temperature!r}") from None


def _dense(x: Any, name: str) -> np.ndarray | None:
    """(N, C) float32 C-contiguous numpy view of a numpy array or torch CPU tensor
    (None for Arrow inputs, which take the Arrow C Data path). No copy, except that a
    non-contiguous array is packed (documented); a wrong dtype is an error."""
    if type(x) is np.ndarray and x.dtype == np.float32 and x.ndim == 2 and x.flags.c_contiguous:
        return x  # the common case, without further checks
    if not (isinstance(x, np.ndarray) or (type(x).__module__.startswith("torch") and hasattr(x, "detach"))):
        return None
    a = float32_numpy(x, name)
    if a.ndim < 2:
        raise InvalidArgumentError(f"{name}: expected a 2-D (rows, columns) array, got shape {a.shape}")
    return a.reshape(a.shape[0], int(np.prod(a.shape[1:])))


def _out(out: np.ndarray | None, shape: tuple[int, int], name: str = "out") -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if (not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != shape
            or not out.flags.c_contiguous or not out.flags.writeable):
        raise InvalidArgumentError(f"{name}: need a writable C-contiguous float32 numpy array of shape {shape}")
    return out


def soft_targets(logits: Any, temperature: float = 2.0, *, out: np.ndarray | None = None) -> np.ndarray:
    """Row-wise ``softmax(logits / T)``.

    Parameters
    ----------
    logits : (N, C) float32 numpy array, torch CPU tensor or pyarrow matrix
        Read in place (no copy). NaN/Inf are refused. Trailing dimensions are
        flattened into C.
    temperature : float
        T > 0.
    out : numpy.ndarray, optional
        (N, C) float32 C-contiguous array to write into (may be ``logits`` itself).

    Returns
    -------
    numpy.ndarray
        (N, C) float32, each row sums to 1 (N == 0 gives an empty array).
    """
    T = _temperature(temperature)
    a = _dense(logits, "logits")
    if a is not None:
        r = _out(out, a.shape)
        _lib.call("exitnet_distill_soft_targets_raw", r.ctypes.data, a.ctypes.data, a.shape[0], a.shape[1], T)
        return r
    x = ArrowIn(as_matrix(logits, "logits"))
    res = ArrowOut()
    _lib.call("exitnet_distill_soft_targets", res.array, res.schema, x.array, x.schema, T)
    m = matrix_to_numpy(res.to_array())
    if out is not None:
        _out(out, m.shape)[...] = m
        return out
    return m


def kd_loss(student: Any, teacher: Any, temperature: float = 2.0, *, grad: bool = True,
            out: np.ndarray | None = None) -> tuple[float, np.ndarray | None]:
    """Distillation loss ``T² · mean_rows KL(softmax(t/T) ‖ softmax(s/T))`` and its gradient.

    Parameters
    ----------
    student, teacher : (N, C) float32 arrays (numpy, torch CPU, pyarrow)
        Logits, read in place (numpy and torch through raw pointers, pyarrow through
        the Arrow C Data Interface). Same shape; N ≥ 1; finite values.
    temperature : float
        T > 0 (2 is the classic LwF default).
    grad : bool
        Also return ``∂L/∂student = (T/N)·(softmax(s/T) − softmax(t/T))``.
    out : numpy.ndarray, optional
        (N, C) float32 C-contiguous array the gradient is written into.

    Returns
    -------
    (loss, grad) : (float, numpy.ndarray of shape (N, C) or None)

    Raises
    ------
    InvalidArgumentError
        Wrong dtype, shapes that differ, N == 0, NaN/Inf logits (the message names
        student or teacher, the row and the column), T not finite and > 0.
    """
    T = _temperature(temperature)
    s_np, t_np = _dense(student, "student"), _dense(teacher, "teacher")
    loss = ctypes.c_double()
    if s_np is not None and t_np is not None:
        if s_np.shape != t_np.shape:
            raise InvalidArgumentError(
                f"teacher: shape {t_np.shape}, student: {s_np.shape} (shapes must match)")
        g = _out(out, s_np.shape) if grad else None
        _lib.call("exitnet_distill_kd_loss_raw", ctypes.byref(loss), None if g is None else g.ctypes.data,
                  s_np.ctypes.data, t_np.ctypes.data, s_np.shape[0], s_np.shape[1], T)
        return loss.value, g
    s = ArrowIn(as_matrix(student, "student"))
    t = ArrowIn(as_matrix(teacher, "teacher"))
    if not grad:
        _lib.call("exitnet_distill_kd_loss", ctypes.byref(loss), None, None,
                  s.array, s.schema, t.array, t.schema, T)
        return loss.value, None
    res = ArrowOut()
    _lib.call("exitnet_distill_kd_loss", ctypes.byref(loss), res.array, res.schema,
              s.array, s.schema, t.array, t.schema, T)
    m = matrix_to_numpy(res.to_array())
    if out is not None:
        _out(out, m.shape)[...] = m
        return loss.value, out
    return loss.value, m


def kd_loss_torch(student: "torch.Tensor", teacher: "torch.Tensor", temperature: float = 2.0) -> "torch.Tensor":
    """The distillation loss as a torch expression, for training steps.

    ``T² · F.kl_div(F.log_softmax(s/T, 1), F.log_softmax(t/T, 1), reduction="batchmean",
    log_target=True)``: differentiable in ``student`` (the teacher is detached), on
    any device and dtype. Same value as :func:`kd_loss`. Inputs of shape (N, ...) are
    flattened to (N, C).
    """
    import torch
    import torch.nn.functional as F

    if not torch.is_tensor(student) or not torch.is_tensor(teacher):
        raise InvalidArgumentError("student, teacher: expected torch tensors")
    if student.shape != teacher.shape:
        raise InvalidArgumentError(f"teacher: shape {tuple(teacher.shape)}, student: {tuple(student.shape)} (must match)")
    if student.ndim < 2 or student.shape[0] == 0:
        raise InvalidArgumentError(f"student: expected (N ≥ 1, C) logits, got shape {tuple(student.shape)}")
    T = float(temperature)
    if not (T > 0 and np.isfinite(T)):
        raise InvalidArgumentError(f"temperature: {temperature} (must be finite and > 0)")
    s = student.reshape(student.shape[0], -1)
    t = teacher.detach().reshape(teacher.shape[0], -1).to(s.dtype)
    return F.kl_div(F.log_softmax(s / T, dim=1), F.log_softmax(t / T, dim=1),
                    reduction="batchmean", log_target=True) * (T * T)

_reexport.own(globals())  # public names report this module (help, repr, pickles)
