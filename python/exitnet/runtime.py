"""The early-exit inference engine (Go, through the C ABI).

A model file written by :func:`exitnet.torch.export` is loaded, validated and
compiled once; :meth:`Model.predict` runs a batch stage by stage. After exit k the
samples whose confidence is at least ``τ_k`` leave; the others are gathered into a
dense batch for stage k+1 (batch compaction), so the compute saved is real::

    leave at the first k < K−1 with conf_k(x) ≥ τ_k; the last exit always accepts
    cost(exit k) = Σ_{j≤k} MACs(stage_j) + MACs(head_j)

Confidences are those of :mod:`exitnet.policy` (the same Go code): ``max_softmax``,
``entropy`` (1 − H/log C), ``margin`` and ``patience``. Non-finite inputs are
refused (:class:`~exitnet.InvalidArgumentError` naming the sample).

A :class:`Model` is safe to share between threads; each ``predict`` call uses
``exitnet.set_num_threads`` threads.

Example
-------
>>> import numpy as np, torch, tempfile, os
>>> from torch import nn
>>> from exitnet.torch import EarlyExitNet, export
>>> from exitnet.runtime import Model
>>> net = EarlyExitNet([nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()), nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU())],
...                    [nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 3)), nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, 3))])
>>> path = export(net, os.path.join(tempfile.mkdtemp(), "m.exitnet"), (1, 8, 8))
>>> with Model(path) as m:
...     out = m.predict(np.zeros((5, 1, 8, 8), np.float32), thresholds=0.5)
>>> out.column_names
['prediction', 'exit', 'confidence']
"""

from __future__ import annotations

import ctypes
import os
from typing import Any, Literal, NamedTuple, Optional, Sequence, Union

import numpy as np
import pyarrow as pa

from . import _abi, _lib
from ._arrow import ArrowIn, ArrowOut, _is_torch, float32_numpy
from ._errors import InvalidArgumentError, InvalidStateError
from .policy import MEASURES

__all__ = ["Model", "LayerKernel", "MEASURES", "set_max_work_per_sample", "max_work_per_sample", "MACS_KEY"]

#: Schema-metadata key of a :meth:`Model.predict` table holding the MACs executed.
MACS_KEY = b"exitnet.macs"


def set_max_work_per_sample(n: int) -> None:
    """Set the largest work per sample a model file may need to load (process-wide).

    Work is computed from the graph at load: MACs of conv2d/linear plus pooling window
    reads and elementwise operations. The default, 1e11, fits every common ImageNet
    network at 224×224; a forged file above the bound is refused
    (:class:`~exitnet.ExitnetIOError`), so it cannot run for minutes per sample.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise InvalidArgumentError(f"n: expected an int, got {type(n).__name__}")
    _lib.call("exitnet_model_set_max_work_per_sample", int(n))


def max_work_per_sample() -> int:
    """The current bound of :func:`set_max_work_per_sample`."""
    out = ctypes.c_int64()
    _lib.call("exitnet_model_max_work_per_sample", ctypes.byref(out))
    return int(out.value)


_h = ctypes.c_void_p
_Params = _abi.exitnet_predict_params


class LayerKernel(NamedTuple):
    """Which kernel a conv2d or linear layer runs (:meth:`Model.kernels`)."""

    block: str  #: "stage" or "head"
    index: int  #: of the stage or head
    node: str  #: the graph node's name
    op: str  #: "conv2d" or "linear"
    kernel: str  #: the kernel chosen at load, with its parameters
    input_shape: tuple[int, int, int]  #: per sample (C, H, W); linear: (features, 1, 1)
    output_shape: tuple[int, int, int]  #: per sample, after a fused 2×2 max-pool




class Model:
    """A loaded early-exit model.

    Parameters
    ----------
    path : str or PathLike
        A model file from :func:`exitnet.torch.export`.

    Attributes
    ----------
    num_exits : int
        K.
    num_classes : int
        Logits per exit.
    input_shape : tuple (C, H, W)
    exit_costs : numpy.ndarray of int64
        MACs per sample of leaving at each exit (cumulative).
    preprocess : tuple (mean, std) of float32 arrays, or None
        The stored input normalisation ``(x − mean[c]) / std[c]`` applied by
        ``predict(..., raw=True)``; None when the file stores none.
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"]) -> None:
        self._h = _h()
        self.path = os.fspath(path)
        h = _h()
        _lib.call("exitnet_model_load", ctypes.byref(h), self.path.encode())
        self._h = h
        k, c = ctypes.c_int(), ctypes.c_int()
        _lib.call("exitnet_model_num_exits", ctypes.byref(k), h)
        _lib.call("exitnet_model_num_classes", ctypes.byref(c), h)
        shape = (ctypes.c_int64 * 3)()
        _lib.call("exitnet_model_input_shape", shape, h)
        costs = (ctypes.c_int64 * k.value)()
        _lib.call("exitnet_model_exit_costs", costs, k.value, h)
        self.num_exits: int = k.value
        self.num_classes: int = c.value
        self.input_shape: tuple[int, int, int] = (shape[0], shape[1], shape[2])
        self.exit_costs: np.ndarray = np.array(costs[:], dtype=np.int64)
        present = ctypes.c_int()
        mean, std = np.empty(shape[0], np.float32), np.empty(shape[0], np.float32)
        _lib.call("exitnet_model_preprocess", ctypes.byref(present), mean.ctypes.data, std.ctypes.data, shape[0], h)
        self.preprocess: Optional[tuple[np.ndarray, np.ndarray]] = (mean, std) if present.value else None

    # -- lifetime ---------------------------------------------------------
    def close(self) -> None:
        """Free the native model (idempotent)."""
        if self._h:
            h = self._h
            self._h = _h()
            _lib.call("exitnet_model_free", ctypes.byref(h))

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._h and _lib.is_loaded():
                self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "" if self._h else ", closed"
        return (f"Model({self.path!r}, exits={self.num_exits}, classes={self.num_classes}, "
                f"input_shape={self.input_shape}, full_cost={int(self.exit_costs[-1]):,} MACs{state})")

    def kernels(self) -> list[LayerKernel]:
        """The kernel each conv2d and linear layer runs, chosen at load from its shape.

        One row per layer, stages then heads in graph order (for debugging and
        profiles: e.g. ``direct 3x3 ... avx2+fma`` for the register-blocked
        convolution, ``im2col+gemm``, ``depthwise ...``, ``dense ...`` for linear).
        """
        if not self._h:
            raise InvalidStateError("kernels: the model is closed")
        h = self._h
        n = ctypes.c_int64()
        _lib.call("exitnet_model_num_layers", ctypes.byref(n), h)
        rows = []
        block, shape, needed = (ctypes.c_int32 * 2)(), (ctypes.c_int64 * 6)(), (ctypes.c_size_t * 3)()
        for i in range(n.value):
            _lib.call("exitnet_model_layer_kernel", h, i, block, shape, None, 0, None, 0, None, 0, needed)
            bufs = [ctypes.create_string_buffer(int(k)) for k in needed]
            _lib.call("exitnet_model_layer_kernel", h, i, block, shape, bufs[0], len(bufs[0]),
                      bufs[1], len(bufs[1]), bufs[2], len(bufs[2]), needed)
            node, op, kernel = (b.value.decode("utf-8", "replace") for b in bufs)
            rows.append(LayerKernel("head" if block[0] else "stage", block[1], node, op, kernel,
                                    (shape[0], shape[1], shape[2]), (shape[3], shape[4], shape[5])))
        return rows

    # -- inference --------------------------------------------------------
    def _numpy_input(self, x: Any) -> Optional[np.ndarray]:
        """(N, C, H, W) float32 C-contiguous view of a numpy array / torch CPU tensor, or None
        for Arrow inputs."""
        if isinstance(x, (pa.Array, pa.ChunkedArray)):
            return None
        if hasattr(x, "__arrow_c_array__") and not isinstance(x, np.ndarray) and not _is_torch(x):
            return None
        a = float32_numpy(x, "x")
        C, H, W = self.input_shape
        if a.ndim == 3 and C == 1 and a.shape[1:] == (H, W):
            a = a[:, None]
        if a.ndim == 2 and a.shape[1] == C * H * W:
            a = a.reshape(-1, C, H, W)
        if a.ndim != 4:
            raise InvalidArgumentError(f"x: expected (N, C, H, W) = (N, {C}, {H}, {W}), got shape {a.shape}")
        if a.shape[1:] != (C, H, W):
            raise InvalidArgumentError(
                f"x: samples of shape {a.shape[1:]} ({a.shape[1]} channels), the model expects (C, H, W) = {(C, H, W)}"
            )
        return np.ascontiguousarray(a)

    def _input(self, x: Any) -> pa.Array:
        if isinstance(x, pa.ChunkedArray):
            x = x.combine_chunks()
        if isinstance(x, pa.Array):
            return x
        if hasattr(x, "__arrow_c_array__") and not isinstance(x, np.ndarray) and not _is_torch(x):
            return pa.array(x)
        a = self._numpy_input(x)
        C, H, W = self.input_shape
        storage = pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1), type=pa.float32()), C * H * W)
        return pa.ExtensionArray.from_storage(pa.fixed_shape_tensor(pa.float32(), [C, H, W]), storage)

    def predict(
        self,
        x: Any,
        thresholds: Union[None, float, Sequence[float], np.ndarray] = None,
        measure: Literal["max_softmax", "entropy", "margin", "patience"] = "max_softmax",
        return_logits: bool = False,
        temperature: float = 1.0,
        output: Literal["table", "numpy"] = "table",
        raw: bool = False,
    ) -> Union[pa.Table, dict]:
        """Classify a batch with early exits.

        Parameters
        ----------
        x : numpy array, torch CPU tensor or pyarrow array
            float32 (N, C, H, W) (also (N, H, W) when C = 1, or (N, C·H·W)); pyarrow:
            ``arrow.fixed_shape_tensor`` [C, H, W] or ``fixed_size_list<float32>[C·H·W]``.
            Not copied (a non-contiguous array is packed first). numpy and torch inputs go
            through ``exitnet_model_predict_raw`` (plain pointers, the lowest per-call cost);
            pyarrow inputs through ``exitnet_model_predict`` (Arrow C Data).
        thresholds : None, float or sequence
            None: no early exit (every sample runs the full network). A float: one τ for
            every exit. A sequence: K−1 values (τ_0..τ_{K−2}) or K (the last is ignored).
        measure : str
            Confidence measure (see :mod:`exitnet.policy`).
        return_logits : bool
            Add columns ``logits_0 .. logits_{K−1}`` (rows of samples that left
            earlier are NaN).
        temperature : float
            Divides the logits before the softmax: finite and > 0 as a float32 (0, and
            values such as 1e-50 that become 0 in float32, are refused).
        output : "table" or "numpy"
            A pyarrow Table (columns prediction, exit, confidence[, logits_k]) or a
            dict of numpy arrays (logits as one (K, N, C) array).
        raw : bool
            ``x`` is raw input: the model's stored normalisation (:attr:`preprocess`) is
            applied first. Refused when the model stores none.

        Returns
        -------
        pyarrow.Table or dict
            Per sample: predicted class, exit taken (0-based), confidence at that exit.
            The MACs this call executed: ``result["macs"]`` (numpy) or
            ``int(table.schema.metadata[exitnet.runtime.MACS_KEY])`` (table).
        """
        if not self._h:
            raise InvalidStateError("predict: the model is closed")
        if measure not in MEASURES:
            raise InvalidArgumentError(f"measure: {measure!r} is not one of {', '.join(MEASURES)}")
        if output not in ("table", "numpy"):
            raise InvalidArgumentError(f"output: {output!r} is not 'table' or 'numpy'")
        params = _Params(MEASURES[measure], None, 0, float(temperature), int(bool(return_logits)), int(bool(raw)))
        tau = None
        if thresholds is not None:
            tau = np.ascontiguousarray(np.atleast_1d(np.asarray(thresholds, dtype=np.float32)).reshape(-1))
            if tau.size == 0:
                raise InvalidArgumentError("thresholds: empty (pass None for no early exit)")
            params.thresholds = tau.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            params.n_thresholds = tau.size
        a = self._numpy_input(x)
        if a is not None:
            # numpy / torch: plain pointers (exitnet_model_predict_raw), no Arrow structs
            n = a.shape[0]
            pred = np.empty(n, np.int32)
            ex = np.empty(n, np.int32)
            conf = np.empty(n, np.float32)
            logits = np.empty((self.num_exits, n, self.num_classes), np.float32) if return_logits else None
            macs = ctypes.c_int64()
            _lib.call("exitnet_model_predict_raw", pred.ctypes.data, ex.ctypes.data, conf.ctypes.data,
                      logits.ctypes.data if logits is not None else None, ctypes.byref(macs), self._h,
                      a.ctypes.data, n, ctypes.byref(params))
            if output == "numpy":
                res = {"prediction": pred, "exit": ex, "confidence": conf, "macs": int(macs.value)}
                if logits is not None:
                    res["logits"] = logits
                return res
            arrays = [pa.array(pred), pa.array(ex), pa.array(conf)]
            names = ["prediction", "exit", "confidence"]
            if logits is not None:
                for k in range(self.num_exits):
                    arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(logits[k].reshape(-1)), self.num_classes))
                    names.append(f"logits_{k}")
            # the same schema as the Arrow path (exitnet_model_predict): non-nullable columns
            schema = pa.schema([pa.field(nm, a.type, nullable=False) for nm, a in zip(names, arrays)],
                               metadata={MACS_KEY: str(macs.value).encode()})
            return pa.Table.from_arrays(arrays, schema=schema)
        arr = self._input(x)
        ins = ArrowIn(arr)
        out = ArrowOut()
        macs = ctypes.c_int64()
        _lib.call("exitnet_model_predict", out.array, out.schema, ctypes.byref(macs), self._h,
                  ins.array, ins.schema, ctypes.byref(params))
        batch = out.to_batch()
        if output == "table":
            t = pa.Table.from_batches([batch])
            return t.replace_schema_metadata({MACS_KEY: str(macs.value).encode()})
        res: dict = {
            "prediction": batch.column("prediction").to_numpy(),
            "exit": batch.column("exit").to_numpy(),
            "confidence": batch.column("confidence").to_numpy(),
            "macs": int(macs.value),
        }
        if return_logits:
            n = batch.num_rows
            res["logits"] = np.stack([
                batch.column(f"logits_{k}").flatten().to_numpy().reshape(n, self.num_classes)
                for k in range(self.num_exits)
            ])
        return res
