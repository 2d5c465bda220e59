"""Fisher state files of :mod:`exitnet.fisher`: Fishers, anchors and metadata in
one Arrow IPC file (save atomically, load with validation)."""

from __future__ import annotations

import ctypes
import json
import os
from typing import Any, Mapping

import numpy as np
import pyarrow as pa

from . import _lib
from ._arrow import ArrowInMany, ArrowOut, to_numpy
from ._errors import InvalidArgumentError
from ._fisher_args import _f32, _layout_arrays
from ._fisher_ewc import _keys_of


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
