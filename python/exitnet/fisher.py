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
import json
import math
import operator
import os
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pyarrow as pa

from . import _abi, _lib
from ._arrow import (
    ArrowIn,
    ArrowInMany,
    ArrowOut,
    as_floats,
    float32_numpy,
    as_matrix,
    as_tensor,
    is_arrow,
    matrix_numpy,
    matrix_to_numpy,
    to_numpy,
)
from ._errors import ExitnetMemoryError, InvalidArgumentError, InvalidStateError

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




def _dim(d: Any, name: str) -> int:
    """One shape entry: an integer (4.5 or "4" is an error, never truncated)."""
    if isinstance(d, (bool, np.bool_)):
        raise InvalidArgumentError(f"layout: parameter {name!r} has a bool dimension {d!r}")
    try:
        v = operator.index(d)
    except TypeError:
        raise InvalidArgumentError(f"layout: parameter {name!r} has a non-integer dimension {d!r}") from None
    if not -(2**63) <= v < 2**63:
        raise ExitnetMemoryError(f"layout: parameter {name!r} has dimension {v}, beyond a 64-bit size")
    return v


def _layout_arrays(layout: Mapping[str, Sequence[int]]) -> tuple[Any, Any, Any, int, list]:
    names = list(layout)
    shapes = []
    for n in names:
        if not isinstance(n, str):
            raise InvalidArgumentError(f"layout: parameter names must be str, got {n!r}")
        shp = layout[n]
        if isinstance(shp, (str, bytes)) or not hasattr(shp, "__iter__"):
            shp = (shp,)
        shapes.append(tuple(_dim(d, n) for d in shp))
    enc = [n.encode() for n in names]
    c_names = (ctypes.c_char_p * max(len(enc), 1))(*enc)
    c_ndims = (ctypes.c_int64 * max(len(shapes), 1))(*[len(s) for s in shapes])
    flat = [d for s in shapes for d in s]
    c_dims = (ctypes.c_int64 * max(len(flat), 1))(*flat)
    return c_names, c_ndims, c_dims, len(names), shapes


def _layout_of(h: Any) -> dict[str, tuple[int, ...]]:
    """The layout of a native accumulator (from the library, not from a file)."""
    n = ctypes.c_int64()
    _lib.call("exitnet_fisher_num_params", ctypes.byref(n), h)
    out: dict[str, tuple[int, ...]] = {}
    need, ndim, dims = ctypes.c_size_t(), ctypes.c_int64(), (ctypes.c_int64 * 16)()
    buf = ctypes.create_string_buffer(256)
    for i in range(n.value):
        try:
            _lib.call("exitnet_fisher_param", h, i, buf, len(buf), ctypes.byref(need), ctypes.byref(ndim), dims)
        except InvalidArgumentError:
            if need.value <= len(buf):
                raise
            buf = ctypes.create_string_buffer(need.value)
            _lib.call("exitnet_fisher_param", h, i, buf, len(buf), ctypes.byref(need), ctypes.byref(ndim), dims)
        out[buf.value.decode()] = tuple(int(d) for d in dims[: ndim.value])
    return out


def _label_mode_of(h: Any) -> str:
    buf = ctypes.create_string_buffer(32)
    _lib.call("exitnet_fisher_label_mode", buf, len(buf), h)
    return buf.value.decode()


_f32 = float32_numpy


def _pair(v: Any, name: str) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    t = tuple(int(x) for x in v)
    if len(t) != 2:
        raise InvalidArgumentError(f"{name}: expected an int or a pair, got {v!r}")
    return t  # type: ignore[return-value]


def _weights_in(weights: Any) -> ArrowIn | None:
    if weights is None:
        return None
    return ArrowIn(as_floats(_f32(weights, "weights").reshape(-1), "weights"))


def _raw_weights(weights: Any, n: int) -> np.ndarray | None:
    """Row weights for a raw-pointer update: None or n contiguous float32 values (the
    C side cannot check a raw pointer's length, so the count is checked here)."""
    if weights is None:
        return None
    w = _f32(weights, "weights").reshape(-1)
    if w.size != n:
        raise InvalidArgumentError(f"weights: {w.size} values for {n} rows")
    return w


def _addr(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


def _rows_2d(rows: Any) -> np.ndarray:
    """(N, P') float32 view of per-sample rows: a 1-D array is one sample, more
    dimensions are flattened per row (explicit width: reshape(0, -1) is ambiguous)."""
    r = _f32(rows, "rows")
    if r.ndim == 1:  # one sample
        r = r.reshape(1, -1)
    p = math.prod(r.shape[1:])
    if p == 0:
        raise InvalidArgumentError(f"rows: rows must have at least one value, got shape {r.shape}")
    return r.reshape(r.shape[0], p)


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
        s = ArrowIn(as_floats(_f32(sq_sum, "sq_sum").reshape(-1), "sq_sum"))
        _lib.call("exitnet_fisher_update_squared", h, param.encode(), s.array, s.schema, int(n))

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


# -- free functions --------------------------------------------------------------

def sample_labels(logits: Any, seed: int, *, row_offset: int = 0) -> np.ndarray:
    """One label per row drawn from ``softmax(logits)`` (label mode ``"sampled"``).

    Deterministic: row r uses ``splitmix64(splitmix64(seed) ^ (r + row_offset))``, so
    the labels depend only on the seed, the global row index and the logits (pass
    ``row_offset`` = index of the batch's first row to make batches agree with one
    call). Returns int32 (N,).
    """
    a = ArrowIn(as_matrix(_f32(logits, "logits"), "logits"))
    out = ArrowOut()
    _lib.call("exitnet_fisher_sample_labels", out.array, out.schema, a.array, a.schema,
              int(seed) & (2**64 - 1), int(row_offset))
    return out.to_array().to_numpy(zero_copy_only=True)


def class_probs(logits: Any) -> np.ndarray:
    """``p(c|x) = softmax(logits)`` per row, computed in float64 (N, C) float32."""
    a = ArrowIn(as_matrix(_f32(logits, "logits"), "logits"))
    out = ArrowOut()
    _lib.call("exitnet_fisher_class_probs", out.array, out.schema, a.array, a.schema)
    return matrix_to_numpy(out.to_array())


def _keys_of(ds: Sequence[Mapping[str, Any]], what: str) -> list[str]:
    keys = list(ds[0])
    for k, d in enumerate(ds):
        if set(d) != set(keys):
            raise InvalidArgumentError(f"{what}: entry {k} has parameters {sorted(d)}, entry 0 has {sorted(keys)}")
    return keys


def consolidate(fishers: Sequence[Mapping[str, Any]], mode: Literal["separate", "sum", "weighted", "online"] = "sum",
                weights: Sequence[float] | None = None, gamma: float = 1.0) -> Any:
    """Combine the Fishers of several exits (oldest first).

    * ``"separate"``: the list itself (copies), for one penalty term per exit;
    * ``"sum"``: ``Σ_k F_k``;  ``"weighted"``: ``Σ_k c_k F_k`` with ``weights``;
    * ``"online"``: ``F ← F_0``, then ``F ← γ·F + F_k``, ``γ ∈ (0, 1]``.

    Returns a list of dicts for ``"separate"``, else one dict ``name -> float32 array``.
    """
    fishers = list(fishers)
    if not fishers:
        raise InvalidArgumentError("fishers: empty list")
    keys = _keys_of(fishers, "fishers")
    if mode == "separate":
        if weights is not None:
            raise InvalidArgumentError('weights: only used by mode "weighted"')
        return [{n: np.array(_f32(f[n], "fishers"), copy=True) for n in keys} for f in fishers]
    c_w = None
    if weights is not None:
        w = [float(x) for x in weights]
        if len(w) != len(fishers):
            raise InvalidArgumentError(f"weights: {len(w)} weights for {len(fishers)} Fishers")
        c_w = (ctypes.c_double * len(w))(*w)
    out: dict[str, np.ndarray] = {}
    for n in keys:
        arrs = [_f32(f[n], "fishers") for f in fishers]
        shape = arrs[0].shape
        ins = ArrowInMany([pa.array(a.reshape(-1), type=pa.float32()) for a in arrs])
        o = ArrowOut()
        _lib.call("exitnet_fisher_consolidate", o.array, o.schema, ins.array, ins.schema, len(arrs),
                  str(mode).encode(), c_w, float(gamma))
        out[n] = o.to_array().to_numpy(zero_copy_only=True).reshape(shape)
    return out


def _as_list(x: Any) -> list[Mapping[str, Any]]:
    if isinstance(x, Mapping):
        return [x]
    return list(x)


def ewc_penalty(params: Mapping[str, Any], fishers: Any, anchors: Any, lam: float, *,
                out: Mapping[str, np.ndarray] | None = None) -> tuple[float, dict[str, np.ndarray]]:
    """EWC penalty value and gradient over numpy buffers (Go SIMD kernel, one fused pass).

    ``value = λ/2 · Σ_k Σ_i F_{k,i} (θ_i − θ*_{k,i})²`` and ``grad = λ · Σ_k F_k (θ − θ*_k)``.
    ``fishers`` and ``anchors`` are one mapping each or equal-length sequences of
    mappings (one (F, θ*) pair per earlier stage; the same argument order as
    :func:`exitnet.torch.ewc_penalty`); every mapping must hold every
    parameter of ``params``. ``lam ≥ 0``. Returns ``(value, {name: grad})``. ``out``:
    preallocated float32 C-contiguous gradient arrays per name, written in place and
    returned (saves the allocation and page faults of a new array on repeated calls).
    For a training step use :func:`exitnet.torch.ewc_penalty` (autograd, any device).
    """
    anchors, fishers = _as_list(anchors), _as_list(fishers)
    if len(anchors) != len(fishers):
        raise InvalidArgumentError(f"anchors: {len(anchors)} anchors for {len(fishers)} Fishers")
    total = 0.0
    grads: dict[str, np.ndarray] = {}
    if not params:
        if not (float(lam) >= 0 and math.isfinite(float(lam))):
            raise InvalidArgumentError(f"lambda: {lam} must be finite and >= 0")
        return 0.0, grads
    for n, p in params.items():
        theta = _f32(p, "params")
        for what, lst in (("anchors", anchors), ("fishers", fishers)):
            for k, d in enumerate(lst):
                if n not in d:
                    raise InvalidArgumentError(f"{what}: entry {k} lacks parameter {n!r}")
        t_in = ArrowIn(pa.array(theta.reshape(-1), type=pa.float32()))
        a_in = ArrowInMany([pa.array(_f32(d[n], "anchors").reshape(-1), type=pa.float32()) for d in anchors])
        f_in = ArrowInMany([pa.array(_f32(d[n], "fishers").reshape(-1), type=pa.float32()) for d in fishers])
        if out is not None and n in out:
            g = out[n]
            if not (isinstance(g, np.ndarray) and g.dtype == np.float32 and g.flags.c_contiguous
                    and g.flags.writeable and g.shape == theta.shape):
                raise InvalidArgumentError(
                    f"out: {n!r} must be a writable C-contiguous float32 array of shape {theta.shape}")
        else:
            g = np.empty(theta.shape, np.float32)
        v = ctypes.c_double()
        _lib.call("exitnet_ewc_penalty_into", ctypes.byref(v), g.ctypes.data if g.size else None, g.size,
                  t_in.array, t_in.schema, a_in.array, a_in.schema, f_in.array, f_in.schema, len(fishers), float(lam))
        total += v.value
        grads[n] = g
    return total, grads


def save_state(path: str | os.PathLike, fishers: list[Mapping[str, Any]], anchors: list[Mapping[str, Any]],
               meta: Mapping[str, Any] | None = None) -> None:
    """Save Fishers (one per exit, or consolidated), anchors (one per stage) and
    metadata as one Arrow IPC file, atomically (temp file, fsync, rename: a failed
    save leaves the previous file intact).

    Every mapping must have the same parameters and shapes (the layout is taken from
    the first). ``meta`` values are stored as JSON (e.g. ``n_samples``, ``label_mode``,
    ``granularity``, ``normalisation``, ``lam``). The file is plain Arrow: readable
    with ``pyarrow.ipc.open_file``; columns ``fisher/k`` and ``anchor/k``.
    """
    fishers, anchors = list(fishers), list(anchors)
    both = fishers + anchors
    if not both:
        raise InvalidArgumentError("fishers/anchors: nothing to save")
    keys = _keys_of(both, "fishers/anchors")
    layout = {n: tuple(np.shape(to_numpy(both[0][n], "fishers"))) for n in keys}
    names, ndims, dims, npar, _ = _layout_arrays(layout)

    def flat(d: Mapping[str, Any], what: str) -> pa.Array:
        parts = []
        for n in keys:
            a = _f32(d[n], what)
            if a.shape != layout[n]:
                raise InvalidArgumentError(f"{what}: parameter {n!r} has shape {a.shape}, expected {layout[n]}")
            parts.append(a.reshape(-1))
        return pa.array(np.concatenate(parts) if parts else np.empty(0, np.float32), type=pa.float32())

    f_in = ArrowInMany([flat(f, "fishers") for f in fishers])
    a_in = ArrowInMany([flat(a, "anchors") for a in anchors])
    meta = dict(meta or {})
    mk = [str(k).encode() for k in meta]
    mv = [json.dumps(v).encode() for v in meta.values()]
    c_mk = (ctypes.c_char_p * max(len(mk), 1))(*mk)
    c_mv = (ctypes.c_char_p * max(len(mv), 1))(*mv)
    _lib.call("exitnet_fisher_state_save", os.fsencode(os.fspath(path)), names, ndims, dims, npar,
              f_in.array, f_in.schema, len(fishers), a_in.array, a_in.schema, len(anchors), c_mk, c_mv, len(mk))


def load_state(path: str | os.PathLike) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]], dict[str, Any]]:
    """Load and validate a file written by :func:`save_state` (checksum, structure,
    values). Returns ``(fishers, anchors, meta)``. A truncated or corrupted file
    raises :class:`exitnet.ExitnetIOError`."""
    out = ArrowOut()
    _lib.call("exitnet_fisher_state_load", out.array, out.schema, os.fsencode(os.fspath(path)))
    batch = out.to_batch()
    md = {k.decode(): v.decode() for k, v in (batch.schema.metadata or {}).items()}
    layout = [(p["name"], tuple(p["shape"])) for p in json.loads(md["exitnet.layout"])]
    meta = {k: json.loads(v) for k, v in json.loads(md["exitnet.meta"]).items()}
    offsets = np.concatenate([[0], np.cumsum([int(np.prod(s, dtype=np.int64)) for _, s in layout])]).tolist()

    def split(col: pa.Array) -> dict[str, np.ndarray]:
        flat = col.to_numpy(zero_copy_only=True)
        return {n: flat[offsets[i]:offsets[i + 1]].reshape(s) for i, (n, s) in enumerate(layout)}

    fishers = [split(batch.column(i)) for i, f in enumerate(batch.schema) if f.name.startswith("fisher/")]
    anchors = [split(batch.column(i)) for i, f in enumerate(batch.schema) if f.name.startswith("anchor/")]
    return fishers, anchors, meta
