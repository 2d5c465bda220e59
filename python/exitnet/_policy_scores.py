"""Confidence scores of :mod:`exitnet.policy`: the measure and method tables, the
(K, N) confidences and predictions of K exits (:class:`Scores`, :func:`confidence`)."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
import pyarrow as pa

from . import _abi, _lib
from ._arrow import ArrowIn, ArrowInMany, ArrowOut, _float32_numpy, _is_torch, as_matrix, int_numpy
from ._errors import InvalidArgumentError


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
