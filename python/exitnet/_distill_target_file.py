"""The pure-Python reader of LwF target files for :mod:`exitnet.distill`:
:class:`TargetFile` (pyarrow and numpy only, safe in forked workers) and
:func:`read_targets`."""

from __future__ import annotations

import mmap
import os
import stat
from typing import Any

import numpy as np
import pyarrow as pa

from . import _io
from ._arrow import matrix_to_numpy, to_numpy
from ._distill_targets import TARGETS_FORMAT_VERSION, TARGETS_KIND
from ._errors import ExitnetIOError, InvalidArgumentError, InvalidStateError, NotFoundError


# ---------------------------------------------------------------------- pure-Python reader


class TargetFile:
    """A recorded target file read with pyarrow and numpy only (no native calls).

    Safe in forked processes (PyTorch DataLoader workers): nothing here enters the
    Go library. The file is memory-mapped; :attr:`ids` (sorted int64) and
    :attr:`exits` (a list of E (N, C) float32 arrays) are zero-copy views. Pickling
    a TargetFile pickles its path (workers reopen the file).

    Everything is validated at open with the rules of the library's reader
    (docs/file-format.md): regular file only, whole-file checksum, container
    version, kind, schema, sortedness, nulls, finite logits; a compressed body is
    refused (pyarrow would inflate it without bound). A bad file raises
    :class:`~exitnet.ExitnetIOError`.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._open()

    def _open(self) -> None:
        p = self.path
        self._mm = None
        try:
            st = os.stat(p)
            if not stat.S_ISREG(st.st_mode):  # a FIFO would block, /dev/zero never ends
                raise ExitnetIOError(f"{p}: not a regular file; target files are read from regular files only")
            if st.st_size < 12:
                raise ExitnetIOError(f"{p}: truncated ({st.st_size} bytes; not an Arrow IPC file)")
            fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise ExitnetIOError(f"{p}: not a regular file; target files are read from regular files only")
                self._mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            finally:
                os.close(fd)
            # The container rules of golib/internal/fsx, before pyarrow parses anything:
            # whole-file checksum, footer bounds, no compressed body (exitnet never writes
            # one; pyarrow would inflate it without bound).
            checksum = _io.verify(self._mm)
            blocks = _io.record_batch_blocks(self._mm)
            if len(blocks) != 1:
                raise ExitnetIOError(f"{p}: {len(blocks)} record batches, want exactly 1")
            if _io.body_is_compressed(self._mm, blocks[0]):
                raise ExitnetIOError(f"{p}: compressed record batch body; the pure-Python reader reads "
                                     "uncompressed files only (exitnet writes those; TargetStore reads both)")
            reader = pa.ipc.open_file(pa.BufferReader(pa.py_buffer(self._mm)))
            schema = reader.schema
            if reader.num_record_batches != 1:
                raise ExitnetIOError(f"{p}: {reader.num_record_batches} record batches, want exactly 1")
            batch = reader.get_batch(0)
            batch.validate(full=True)  # buffer sizes and offsets, before numpy views touch them
        except ExitnetIOError:
            self._close_map()
            raise
        except (OSError, ValueError, pa.ArrowException) as e:
            self._close_map()
            raise ExitnetIOError(f"{p}: cannot read the target file ({e})") from e
        try:
            self._validate(schema, batch, checksum)
        except ExitnetIOError:
            self._close_map()
            raise
        except (ValueError, TypeError, KeyError, IndexError, pa.ArrowException) as e:  # untrusted bytes
            self._close_map()
            raise ExitnetIOError(f"{p}: corrupted target file ({type(e).__name__}: {e})") from e

    def _validate(self, schema: pa.Schema, batch: pa.RecordBatch, checksum: str) -> None:
        p = self.path
        md = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in (schema.metadata or {}).items()}
        try:
            _io.check_header(md, TARGETS_KIND, checksum)
        except ValueError as e:
            raise ExitnetIOError(f"{p}: {e}") from None
        if md.get("exitnet.format_version") != str(TARGETS_FORMAT_VERSION):
            raise ExitnetIOError(f"{p}: unsupported format version {md.get('exitnet.format_version')!r}")
        if md.get("exitnet.logits") != "raw":
            raise ExitnetIOError(f"{p}: metadata exitnet.logits = {md.get('exitnet.logits')!r}, want 'raw'")
        try:
            E, C = _count(md["exitnet.num_exits"]), _count(md["exitnet.num_classes"])
        except (KeyError, ValueError):
            E = C = 0
        if not (1 <= E <= 1 << 16 and 1 <= C <= 1 << 30):
            raise ExitnetIOError(f"{p}: metadata lacks valid exitnet.num_exits / exitnet.num_classes")
        names = ["sample_id"] + [f"exit_{j}" for j in range(E)]
        if schema.names != names or batch.num_columns != E + 1:
            raise ExitnetIOError(f"{p}: columns {schema.names}, want {names}")
        idc = batch.column(0)
        if idc.type != pa.int64() or idc.null_count:
            raise ExitnetIOError(f"{p}: sample_id must be non-null int64")
        ids = idc.to_numpy(zero_copy_only=True)
        if ids.size > 1 and not np.all(ids[1:] > ids[:-1]):
            raise ExitnetIOError(f"{p}: sample_id is not strictly increasing")
        exits = []
        for j in range(E):
            col = batch.column(j + 1)
            if (not pa.types.is_fixed_size_list(col.type) or col.type.list_size != C
                    or col.type.value_type != pa.float32() or col.null_count or col.values.null_count):
                raise ExitnetIOError(f"{p}: exit_{j} must be non-null fixed_size_list<float32>[{C}]")
            m = matrix_to_numpy(col)
            if m.shape != (len(ids), C):
                raise ExitnetIOError(f"{p}: exit_{j} has shape {m.shape}, want {(len(ids), C)}")
            if not np.isfinite(m).all():
                raise ExitnetIOError(f"{p}: exit_{j} holds non-finite logits")
            exits.append(m)
        self.ids: np.ndarray = ids
        self.exits: list[np.ndarray] = exits
        self.num_rows, self.num_exits, self.num_classes = len(ids), E, C
        self._dense = len(ids) == 0 or int(ids[-1]) - int(ids[0]) == len(ids) - 1

    def _close_map(self) -> None:
        mm = getattr(self, "_mm", None)
        self._mm = None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # a caller still holds a view of exits: unmapped when it is dropped

    def _check_open(self) -> None:
        if self._mm is None:
            raise InvalidStateError("TargetFile: closed")

    def rows(self, ids: Any) -> np.ndarray:
        """Row index of each sample id (``np.searchsorted``); unknown ids raise NotFoundError."""
        self._check_open()
        q = np.asarray(to_numpy(ids, "ids"))
        if q.ndim != 1 or (q.size and not np.issubdtype(q.dtype, np.integer)):
            raise InvalidArgumentError(f"ids: expected a 1-D integer array, got {q.dtype} of shape {q.shape}")
        q = q.astype(np.int64, copy=False)
        if self.num_rows == 0:
            if q.size:
                raise NotFoundError(f"ids: sample id {int(q[0])} (position 0) is not in the target file")
            return q
        if self._dense:
            r = q - self.ids[0]
            ok = (r >= 0) & (r < self.num_rows)
        else:
            r = np.searchsorted(self.ids, q)
            ok = r < self.num_rows
            ok[ok] = self.ids[r[ok]] == q[ok]
        if not ok.all():
            i = int(np.argmin(ok))
            raise NotFoundError(f"ids: sample id {int(q[i])} (position {i}) is not in the target file")
        return r

    def gather(self, ids: Any, exit: int = 0) -> np.ndarray:
        """Recorded logits (n, C) float32 of ``exit`` for sample ``ids`` (a new array)."""
        self._check_open()
        if not 0 <= int(exit) < self.num_exits:
            raise InvalidArgumentError(f"exit: {exit} (the file has exits 0..{self.num_exits - 1})")
        return self.exits[int(exit)][self.rows(ids)]

    def lookup(self, ids: Any) -> list[np.ndarray]:
        """Every exit's recorded logits for ``ids``: a list of E arrays (n, C)."""
        self._check_open()
        r = self.rows(ids)
        return [e[r] for e in self.exits]

    def close(self) -> None:
        """Drop the views and unmap the file. Idempotent."""
        self.ids = np.empty(0, np.int64)
        self.exits = []
        self._close_map()

    def __enter__(self) -> "TargetFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __len__(self) -> int:
        return self.num_rows

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.path = state["path"]
        self._open()

    def __repr__(self) -> str:
        state = "" if self._mm is not None else ", closed"
        return (f"TargetFile({self.path!r}, rows={self.num_rows}, exits={self.num_exits}, "
                f"classes={self.num_classes}{state})")


def _count(v: str) -> int:
    """A metadata count as Go's strconv.Atoi reads it (digits only, optional sign)."""
    v = v.strip() if v == v.strip() else "x"
    return int(v) if v.isascii() and v.lstrip("+-").isdigit() else -1


def read_targets(path: str | os.PathLike) -> TargetFile:
    """Open a recorded target file with pyarrow + numpy only (see :class:`TargetFile`)."""
    return TargetFile(path)
