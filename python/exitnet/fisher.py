"""EWC: exact per-sample diagonal Fisher, consolidation across exits, the penalty.

Definitions
-----------
For parameters θ laid out as named tensors (a *layout*: ``{name: shape}`` in
order) and per-sample gradients ``g_n = ∇_θ ℓ(x_n, y_n)`` of a **sum-reduced**
loss (a mean-reduced loss scales them by 1/B), the accumulator keeps float64
sums and a sample count::

    S_i = Σ_n w_n · g_{n,i}²            (updates; w_n = 1 without weights)
    F_i = S_i / N                        (compute; normalisation "mean_over_samples")

**Counting is explicit.** Updates never count samples; call :meth:`add_samples`
once per batch, however many layers of that batch you fed. (With label mode
``"exact"`` a batch of B samples and C classes has B·C weighted rows but counts B.)

Input modes, all exact (nothing is approximated, no N×P matrix is built unless
you pass one):

* rows: per-sample gradient rows N×P (torch.func, BackPACK, JAX…);
* Linear factors: inputs A (N×in) and output gradients G (N×out):
  ``S_W += (w∘G∘G)ᵀ(A∘A)``, one GEMM; ``S_b += Σ_n w_n G_n∘G_n``;
* Conv2d factors: inputs N×Cin×H×W and output gradients N×Cout×Ho×Wo plus the
  geometry (stride, padding, dilation, groups incl. depthwise): per sample and
  group ``(G_n U_nᵀ)²`` with ``U_n`` the unfolded input, memory bounded by one
  sample per worker;
* squared: ``Σ_n g_n²`` summed by you (e.g. norm layers' γ/β).

Label modes (metadata; the sampling of labels is yours): ``"empirical"``,
``"sampled"`` (see :func:`sample_labels`), ``"argmax"``, ``"exact"`` (every
class, rows weighted by ``p(c|x)`` from :func:`class_probs`) and ``"batched"``.
``"batched"`` reproduces the squared-minibatch-gradient shortcut of several
continual-learning libraries, for comparison only: ``update_squared(name,
m_b**2, B)`` with ``m_b`` the minibatch gradient of the mean-reduced loss stores
``B·m_b²``, so with ``add_samples(B)`` per batch ``F = Σ_b B_b m_b² / Σ_b B_b``,
the mean over minibatches of ``m_b²`` for equal batch sizes (about F/B near
convergence). The other update modes are refused in that mode.

EWC penalty, with the **½ convention** (λ values from papers using
``λ·Σ F(θ−θ*)²`` must be doubled)::

    value  = λ/2 · Σ_k Σ_i F_{k,i} (θ_i − θ*_{k,i})²
    grad_i = λ · Σ_k F_{k,i} (θ_i − θ*_{k,i})

Example
-------
>>> import numpy as np
>>> from exitnet import fisher
>>> acc = fisher.FisherAccumulator({"w": (2, 3), "b": (2,)}, label_mode="empirical")
>>> A = np.ones((4, 3), np.float32); G = np.full((4, 2), 0.5, np.float32)
>>> acc.update_linear("w", "b", A, G)
>>> acc.add_samples(4)
>>> acc.compute()["b"]
array([0.25, 0.25], dtype=float32)
>>> acc.close()
"""

from __future__ import annotations

import ctypes
import os
from typing import Any, Literal, Mapping

import numpy as np
import pyarrow as pa

from . import _reexport
from . import _abi, _lib
from ._arrow import ArrowIn, ArrowOut, as_floats, as_matrix, as_tensor, is_arrow, matrix_numpy, to_numpy
from ._errors import InvalidArgumentError, InvalidStateError
# Argument helpers, the free functions and the state files live in their own modules;
# they are re-exported here, where they have always been imported from.
from ._fisher_args import (  # noqa: F401
    _addr,
    _dim,
    _f32,
    _label_mode_of,
    _layout_arrays,
    _layout_of,
    _pair,
    _raw_weights,
    _rows_2d,
    _weights_in,
)
from ._fisher_ewc import _as_list, _keys_of, class_probs, consolidate, ewc_penalty, sample_labels  # noqa: F401
from ._fisher_state import load_state, save_state

__all__ = [
    "LABEL_MODES",
    "FisherAccumulator",
    "sample_labels",
    "class_probs",
    "consolidate",
    "ewc_penalty",
    "save_state",
    "load_state",
]

LABEL_MODES = ("empirical", "sampled", "argmax", "exact", "batched")
LabelMode = Literal["empirical", "sampled", "argmax", "exact", "batched"]

_h = ctypes.c_void_p
_Geometry = _abi.exitnet_conv2d_geometry


class FisherAccumulator:
    """Sums of squared per-sample gradients over a layout; see the module docstring.

    Parameters
    ----------
    layout : mapping ``name -> shape`` (ordered; PyTorch shapes).
    label_mode : ``"empirical"``, ``"sampled"``, ``"argmax"``, ``"exact"`` (default) or
        ``"batched"``; stored with the result, and ``"batched"`` switches granularity.

    Counting: updates only add to the sums; :meth:`add_samples` counts samples (once
    per batch). :meth:`compute` divides by that count.

    Thread-safety: calls on one accumulator are serialised by the library. Not
    usable in a forked child (see :mod:`exitnet._lib`).
    """

    def __init__(self, layout: Mapping[str, tuple[int, ...]], label_mode: LabelMode = "exact") -> None:
        self._h = _h()
        names, ndims, dims, n, shapes = _layout_arrays(layout)
        self._names = list(layout)
        self._shapes = shapes
        self._sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
        self._offsets = np.concatenate([[0], np.cumsum(self._sizes, dtype=np.int64)]).tolist()
        self.label_mode: str = str(label_mode)
        _lib.call("exitnet_fisher_new", ctypes.byref(self._h), names, ndims, dims, n, self.label_mode.encode())

    # -- lifecycle ---------------------------------------------------------------
    def close(self) -> None:
        """Free the native accumulator (idempotent)."""
        if getattr(self, "_h", None) and self._h.value:
            _lib.call("exitnet_fisher_free", ctypes.byref(self._h))

    def __enter__(self) -> "FisherAccumulator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if _lib.is_loaded():
                self.close()
        except Exception:
            pass

    def _handle(self) -> Any:
        if not self._h.value:
            raise InvalidStateError("FisherAccumulator: used after close()")
        return self._h

    def __repr__(self) -> str:
        state = "closed" if not self._h.value else f"n_samples={self.n_samples}"
        return (f"FisherAccumulator({len(self._names)} params, {self.size} elements, "
                f"label_mode={self.label_mode!r}, {state})")

    # -- properties --------------------------------------------------------------
    @property
    def layout(self) -> dict[str, tuple[int, ...]]:
        return dict(zip(self._names, self._shapes))

    @property
    def size(self) -> int:
        """Total number of elements P."""
        return int(self._offsets[-1])

    @property
    def granularity(self) -> str:
        return "batched" if self.label_mode == "batched" else "per_sample"

    @property
    def normalisation(self) -> str:
        return "mean_over_samples"

    @property
    def n_samples(self) -> int:
        out = ctypes.c_int64()
        _lib.call("exitnet_fisher_num_samples", ctypes.byref(out), self._handle())
        return int(out.value)

    # -- updates -----------------------------------------------------------------
    def update_rows(self, rows: Any, *, param: str | None = None, weights: Any = None) -> None:
        """Add ``Σ_n w_n g_n²`` from per-sample gradient rows.

        ``rows`` is (N, P) over the whole layout, or (N, *shape) / (N, size) of one
        parameter when ``param`` is given (a 1-D array is one sample); float32
        numpy, torch CPU or pyarrow ``fixed_size_list<float32>``. numpy and torch
        inputs (and weights) cross as plain pointers (``exitnet_fisher_update_rows_raw``,
        no Arrow structs: about 20 µs less per call); pyarrow ones as Arrow C Data.
        A NaN/Inf gradient raises ``InvalidArgumentError`` naming the parameter and
        leaves the accumulator unusable until :meth:`reset` (it is found after the
        single pass over the data).
        """
        h = self._handle()
        pname = None if param is None else param.encode()
        if is_arrow(rows) or is_arrow(weights):
            a = ArrowIn(as_matrix(rows if is_arrow(rows) else _rows_2d(rows), "rows"))
            w = _weights_in(weights)
            _lib.call("exitnet_fisher_update_rows", h, pname, a.array, a.schema,
                      w.array if w else None, w.schema if w else None)
            return
        # numpy / torch: plain pointers (exitnet_fisher_update_rows_raw), no Arrow structs
        r = _rows_2d(rows)
        wr = _raw_weights(weights, r.shape[0])
        _lib.call("exitnet_fisher_update_rows_raw", h, pname, r.ctypes.data, r.shape[0], r.shape[1], _addr(wr))

    def update_linear(self, weight: str, bias: str | None, inputs: Any, grad_outputs: Any, *,
                      weights: Any = None) -> None:
        """Add the exact squared per-sample gradients of ``y = W a + b`` from its factors.

        ``inputs`` A is (N, in), ``grad_outputs`` G is (N, out) (per-sample output
        gradients of a sum-reduced loss); ``S_W += (w∘G∘G)ᵀ(A∘A)`` as one GEMM and
        ``S_b += Σ_n w_n G_n²``. ``weights``: N values ≥ 0 (label mode ``"exact"``:
        ``p(c|x)`` of each (sample, class) row). numpy / torch CPU inputs go through
        ``exitnet_fisher_update_linear_raw`` (plain pointers); if any argument is
        pyarrow, all go through Arrow C Data.
        """
        h = self._handle()
        bname = None if bias is None else bias.encode()
        if is_arrow(inputs) or is_arrow(grad_outputs) or is_arrow(weights):
            a = ArrowIn(as_matrix(inputs, "inputs"))
            g = ArrowIn(as_matrix(grad_outputs, "grad_outputs"))
            w = _weights_in(weights)
            _lib.call("exitnet_fisher_update_linear", h, weight.encode(), bname,
                      a.array, a.schema, g.array, g.schema, w.array if w else None, w.schema if w else None)
            return
        # numpy / torch: plain pointers (exitnet_fisher_update_linear_raw), no Arrow structs
        an = matrix_numpy(inputs, "inputs")
        gn = matrix_numpy(grad_outputs, "grad_outputs")
        n = an.shape[0]
        if gn.shape[0] != n:
            raise InvalidArgumentError(f"grad_outputs: {gn.shape[0]} rows, inputs have {n}")
        wr = _raw_weights(weights, n)
        _lib.call("exitnet_fisher_update_linear_raw", h, weight.encode(), bname, an.ctypes.data, gn.ctypes.data,
                  n, an.shape[1], gn.shape[1], _addr(wr))

    def update_conv2d(self, weight: str, bias: str | None, inputs: Any, grad_outputs: Any, *,
                      stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1,
                      weights: Any = None) -> None:
        """Add the exact squared per-sample gradients of an ``nn.Conv2d``.

        ``inputs`` (N, Cin, H, W) and ``grad_outputs`` (N, Cout, Ho, Wo), float32;
        ``stride``/``padding``/``dilation`` ints or pairs (zero padding only), ``groups``
        as in ``nn.Conv2d`` (``groups == Cin`` is depthwise). The kernel size comes
        from the weight's 4-D shape in the layout.
        """
        h = self._handle()
        x = _f32(inputs, "inputs")
        gr = _f32(grad_outputs, "grad_outputs")
        if x.ndim != 4 or gr.ndim != 4:
            raise InvalidArgumentError(
                f"inputs/grad_outputs: expected 4-D (N, C, H, W) arrays, got {x.shape} and {gr.shape}")
        geo = _Geometry()
        geo.stride[:] = _pair(stride, "stride")
        geo.padding[:] = _pair(padding, "padding")
        geo.dilation[:] = _pair(dilation, "dilation")
        geo.groups = int(groups)
        a = ArrowIn(as_tensor(x, "inputs"))
        g = ArrowIn(as_tensor(gr, "grad_outputs"))
        w = _weights_in(weights)
        _lib.call("exitnet_fisher_update_conv2d", h, weight.encode(), None if bias is None else bias.encode(),
                  a.array, a.schema, g.array, g.schema, ctypes.byref(geo),
                  w.array if w else None, w.schema if w else None)

    def update_squared(self, param: str, sq_sum: Any, n: int) -> None:
        """Add already-squared gradients of one parameter.

        Per-sample granularity: ``sq_sum = Σ_n g_n²`` over ``n`` samples (``n ≥ 1`` is
        only checked; counting is :meth:`add_samples`'s job). Batched granularity:
        ``sq_sum = m_b²`` of a minibatch of ``n`` samples, stored as ``n·m_b²``.
        """
        h = self._handle()
        if is_arrow(sq_sum):
            s = ArrowIn(as_floats(_f32(sq_sum, "sq_sum").reshape(-1), "sq_sum"))
            _lib.call("exitnet_fisher_update_squared", h, param.encode(), s.array, s.schema, int(n))
            return
        # numpy / CPU tensors: a plain pointer (exitnet_fisher_update_squared_raw)
        sq = _f32(sq_sum, "sq_sum")
        _lib.call("exitnet_fisher_update_squared_raw", h, param.encode(), sq.ctypes.data if sq.size else None,
                  sq.size, int(n))

    def add_samples(self, n: int) -> None:
        """Count ``n ≥ 0`` samples (once per batch, whatever the number of updates)."""
        _lib.call("exitnet_fisher_add_samples", self._handle(), int(n))

    # -- results -----------------------------------------------------------------
    def _split(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        return {n: flat[self._offsets[i]:self._offsets[i + 1]].reshape(self._shapes[i])
                for i, n in enumerate(self._names)}

    def compute(self) -> dict[str, np.ndarray]:
        """``F = S / N`` per parameter (float32, shaped per layout; views of one buffer).

        Raises ``InvalidStateError`` if no samples were counted."""
        out = ArrowOut()
        _lib.call("exitnet_fisher_compute", out.array, out.schema, self._handle())
        flat = out.to_array().to_numpy(zero_copy_only=True)
        return self._split(flat)

    def state(self) -> tuple[dict[str, np.ndarray], int]:
        """Raw float64 sums per parameter and the sample count (for all-reduce)."""
        out = ArrowOut()
        cnt = ctypes.c_int64()
        _lib.call("exitnet_fisher_state", out.array, out.schema, ctypes.byref(cnt), self._handle())
        flat = out.to_array().to_numpy(zero_copy_only=True)
        return self._split(flat), int(cnt.value)

    def load_state(self, sums: Mapping[str, Any], count: int) -> None:
        """Replace the sums (float64 or float32 per parameter, finite, ≥ 0) and the count."""
        h = self._handle()
        missing = [n for n in self._names if n not in sums]
        extra = [n for n in sums if n not in self._names]
        if missing or extra:
            raise InvalidArgumentError(f"sums: missing parameters {missing}, unknown {extra}")
        flat = np.empty(self.size, np.float64)
        for i, n in enumerate(self._names):
            v = to_numpy(sums[n], "sums").astype(np.float64, copy=False).reshape(-1)
            if v.size != self._sizes[i]:
                raise InvalidArgumentError(f"sums: parameter {n!r} has {v.size} values, layout says {self._sizes[i]}")
            flat[self._offsets[i]:self._offsets[i + 1]] = v
        s = ArrowIn(pa.array(flat, type=pa.float64()))
        _lib.call("exitnet_fisher_set_state", h, s.array, s.schema, int(count))

    def save(self, path: str | os.PathLike) -> None:
        """Checkpoint the sums, count, layout and label mode to an Arrow IPC file
        (atomic); :meth:`load` restores them exactly. The file also holds the Fisher
        (``fisher/0``) and is readable by :func:`load_state`."""
        _lib.call("exitnet_fisher_save", self._handle(), os.fsencode(os.fspath(path)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FisherAccumulator":
        """Restore an accumulator written by :meth:`save` (validated: a truncated or
        corrupted file raises :class:`exitnet.ExitnetIOError`). The layout and label
        mode come from the library, which validated the file: it is read once."""
        h = _h()
        _lib.call("exitnet_fisher_load", ctypes.byref(h), os.fsencode(os.fspath(path)))
        try:
            layout, mode = _layout_of(h), _label_mode_of(h)
        except BaseException:
            _lib.call("exitnet_fisher_free", ctypes.byref(h))
            raise
        self = cls.__new__(cls)
        self._h = h
        self._names = list(layout)
        self._shapes = list(layout.values())
        self._sizes = [int(np.prod(s, dtype=np.int64)) for s in self._shapes]
        self._offsets = np.concatenate([[0], np.cumsum(self._sizes, dtype=np.int64)]).tolist()
        self.label_mode = mode
        return self

    def merge(self, other: "FisherAccumulator") -> None:
        """Add ``other``'s sums and count (same layout and label mode)."""
        if not isinstance(other, FisherAccumulator):
            raise InvalidArgumentError(f"other: expected a FisherAccumulator, got {type(other).__name__}")
        _lib.call("exitnet_fisher_merge", self._handle(), other._handle())

    def reset(self) -> None:
        """Zero the sums and the count."""
        _lib.call("exitnet_fisher_reset", self._handle())

_reexport.own(globals())  # public names report this module (help, repr, pickles)
