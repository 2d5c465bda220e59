"""Free functions of :mod:`exitnet.fisher`: label sampling and class probabilities
for the label modes, consolidation of several exits' Fishers, the EWC penalty."""

from __future__ import annotations

import ctypes
import math
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pyarrow as pa

from . import _lib
from ._arrow import ArrowIn, ArrowInMany, ArrowOut, as_matrix, matrix_to_numpy
from ._errors import InvalidArgumentError
from ._fisher_args import _f32


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
        ths = [_f32(d[n], "anchors") for d in anchors]
        fhs = [_f32(d[n], "fishers") for d in fishers]
        if out is not None and n in out:
            g = out[n]
            if not (isinstance(g, np.ndarray) and g.dtype == np.float32 and g.flags.c_contiguous
                    and g.flags.writeable and g.shape == theta.shape):
                raise InvalidArgumentError(
                    f"out: {n!r} must be a writable C-contiguous float32 array of shape {theta.shape}")
        else:
            g = np.empty(theta.shape, np.float32)
        v = ctypes.c_double()
        if fishers:
            # plain pointers (exitnet_ewc_penalty_raw): no Arrow structs per call and parameter; the
            # C side cannot see the lengths, so they are checked here, with the Arrow path's messages
            for what, arrs, one in (("anchors", ths, "anchor"), ("fishers", fhs, "Fisher")):
                for k, a in enumerate(arrs):
                    if a.size != theta.size:
                        raise InvalidArgumentError(
                            f"{what}: {one} {k} has {a.size} elements, params have {theta.size}")
            ptrs = ctypes.c_void_p * len(fishers)
            _lib.call("exitnet_ewc_penalty_raw", ctypes.byref(v), g.ctypes.data if g.size else None,
                      theta.ctypes.data if theta.size else None,
                      ptrs(*[a.ctypes.data if a.size else None for a in ths]),
                      ptrs(*[f.ctypes.data if f.size else None for f in fhs]),
                      theta.size, len(fishers), float(lam))
        else:
            t_in = ArrowIn(pa.array(theta.reshape(-1), type=pa.float32()))
            _lib.call("exitnet_ewc_penalty_into", ctypes.byref(v), g.ctypes.data if g.size else None, g.size,
                      t_in.array, t_in.schema, None, None, None, None, 0, float(lam))
        total += v.value
        grads[n] = g
    return total, grads
