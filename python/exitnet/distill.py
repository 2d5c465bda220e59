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
import mmap
import os
import stat
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pyarrow as pa

from . import _io, _lib
from ._arrow import ArrowIn, ArrowOut, as_ints, as_matrix, float32_numpy, matrix_to_numpy, to_numpy
from ._errors import ExitnetIOError, InvalidArgumentError, InvalidStateError, NotFoundError

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

TARGETS_KIND = "lwf_targets"
TARGETS_FORMAT_VERSION = 1

_fp = ctypes.POINTER(ctypes.c_float)
_i64p = ctypes.POINTER(ctypes.c_int64)


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


# ---------------------------------------------------------------------- writer


class TargetWriter:
    """Records exits' raw logits keyed by int64 sample ids and saves an Arrow IPC file.

    Parameters
    ----------
    path : str or os.PathLike, optional
        Where :meth:`save` writes by default; a ``with`` block that ends without an
        exception saves there.
    num_exits : int
        E, the number of exits recorded (exit indices 0..E−1).
    num_classes : int, optional
        C; inferred from the first chunk when omitted.

    Chunks arrive in any order (:meth:`add` one exit, :meth:`write` all exits of a
    batch). An id recorded twice for one exit is an error; at save, every exit must
    cover the same ids. Saving is atomic (temporary file + fsync + rename).

    Example
    -------
    >>> import numpy as np, tempfile, os
    >>> from exitnet.distill import TargetWriter, read_targets
    >>> path = os.path.join(tempfile.mkdtemp(), "targets.arrow")
    >>> with TargetWriter(path, num_exits=2, num_classes=3) as w:
    ...     w.write([10, 11], [np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)])
    >>> read_targets(path).gather([11], exit=0)
    array([[1., 1., 1.]], dtype=float32)
    """

    def __init__(self, path: str | os.PathLike | None = None, num_exits: int = 1, num_classes: int | None = None) -> None:
        self.path = None if path is None else os.fspath(path)
        self.num_exits = int(num_exits)
        self.num_classes = None if num_classes is None else int(num_classes)
        self._h = ctypes.c_void_p()
        if self.num_classes is not None:
            self._create()

    def _create(self) -> None:
        _lib.call("exitnet_targets_writer_new", ctypes.byref(self._h), self.num_exits, self.num_classes)

    def _handle(self) -> ctypes.c_void_p:
        if not self._h:
            if self.num_classes is None and not getattr(self, "_closed", False):
                raise InvalidStateError("TargetWriter: nothing recorded yet (num_classes unknown)")
            raise InvalidStateError("TargetWriter: closed")
        return self._h

    def add(self, exit: int, ids: Any, logits: Any) -> None:
        """Record ``logits`` (n, C) of exit ``exit`` for sample ``ids`` (n integers)."""
        if getattr(self, "_closed", False):
            raise InvalidStateError("TargetWriter: closed")
        lg = as_matrix(logits, "logits")
        if not self._h and self.num_classes is None:
            self.num_classes = int(lg.type.list_size) if pa.types.is_fixed_size_list(lg.type) else int(lg.type.storage_type.list_size)
            self._create()
        i = ArrowIn(as_ints(ids, "ids", dtype=np.int64))
        x = ArrowIn(lg)
        _lib.call("exitnet_targets_writer_add", self._handle(), int(exit), i.array, i.schema, x.array, x.schema)

    def write(self, ids: Any, logits_per_exit: Sequence[Any]) -> None:
        """Record one batch for every exit: ``logits_per_exit[j]`` is exit j's (n, C) logits."""
        if len(logits_per_exit) != self.num_exits:
            raise InvalidArgumentError(
                f"logits_per_exit: {len(logits_per_exit)} arrays, the writer has {self.num_exits} exits")
        ids = np.ascontiguousarray(to_numpy(ids, "ids")).astype(np.int64, copy=False)
        for j, z in enumerate(logits_per_exit):
            self.add(j, ids, z)

    def num_rows(self, exit: int = 0) -> int:
        """Samples recorded so far for ``exit``."""
        if not self._h:
            return 0
        out = ctypes.c_int64()
        _lib.call("exitnet_targets_writer_num_rows", ctypes.byref(out), self._handle(), int(exit))
        return out.value

    def save(self, path: str | os.PathLike | None = None) -> str:
        """Write the file (atomically) to ``path`` (default: the constructor's) and return the path."""
        p = self.path if path is None else os.fspath(path)
        if p is None:
            raise InvalidArgumentError("path: no path given (pass one here or to the constructor)")
        if not self._h and self.num_classes is None and not getattr(self, "_closed", False):
            raise InvalidStateError("TargetWriter: nothing recorded yet (num_classes unknown)")
        _lib.call("exitnet_targets_writer_save", self._handle(), os.fsencode(p))
        return p

    def close(self) -> None:
        """Free the native writer (unsaved data is dropped). Idempotent."""
        self._closed = True
        if self._h:
            _lib.call("exitnet_targets_writer_free", ctypes.byref(self._h))

    def __enter__(self) -> "TargetWriter":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        try:
            if exc_type is None and self.path is not None:
                self.save()
        finally:
            self.close()

    def __del__(self) -> None:
        try:
            if self._h and _lib.is_loaded():
                _lib.fn("exitnet_targets_writer_free")(ctypes.byref(self._h))
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if getattr(self, "_closed", False) else f"{self.num_rows(0) if self._h else 0} rows"
        return f"TargetWriter(path={self.path!r}, num_exits={self.num_exits}, num_classes={self.num_classes}, {state})"


# ---------------------------------------------------------------------- native reader


class TargetStore:
    """A recorded target file opened by the native library (memory-mapped, validated).

    Thread-safe: :meth:`gather` may run from several threads at once. For forked
    DataLoader workers use :class:`TargetFile` instead (pure Python).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._h = ctypes.c_void_p()
        _lib.call("exitnet_targets_open", ctypes.byref(self._h), os.fsencode(self.path))
        rows, exits, classes = ctypes.c_int64(), ctypes.c_int(), ctypes.c_int()
        _lib.call("exitnet_targets_shape", ctypes.byref(rows), ctypes.byref(exits), ctypes.byref(classes), self._h)
        self.num_rows, self.num_exits, self.num_classes = rows.value, exits.value, classes.value

    def _handle(self) -> ctypes.c_void_p:
        if not self._h:
            raise InvalidStateError("TargetStore: closed")
        return self._h

    def gather(self, ids: Any, exit: int = 0, *, out: np.ndarray | None = None) -> np.ndarray:
        """Recorded logits (n, C) float32 of ``exit`` for sample ``ids``.

        ``out`` (optional) is a C-contiguous (n, C) float32 array written in place.
        An unknown id raises :class:`~exitnet.NotFoundError` naming it.
        """
        h = self._handle()
        idv = np.ascontiguousarray(to_numpy(ids, "ids"))
        if idv.ndim != 1:
            raise InvalidArgumentError(f"ids: expected a 1-D integer array, got shape {idv.shape}")
        if idv.dtype != np.int64:
            if idv.size and not np.issubdtype(idv.dtype, np.integer):
                raise InvalidArgumentError(f"ids: expected integers, got {idv.dtype}")
            idv = idv.astype(np.int64)
        n, C = idv.shape[0], self.num_classes
        if out is None:
            out = np.empty((n, C), dtype=np.float32)
        elif out.dtype != np.float32 or out.shape != (n, C) or not out.flags.c_contiguous or not out.flags.writeable:
            raise InvalidArgumentError(f"out: need a writable C-contiguous float32 array of shape {(n, C)}")
        _lib.call("exitnet_targets_gather_raw", out.ctypes.data_as(_fp), out.size, h,
                  idv.ctypes.data_as(_i64p), n, int(exit))
        return out

    def gather_arrow(self, ids: Any, exit: int = 0) -> pa.Array:
        """Like :meth:`gather`, through the Arrow ABI: a ``fixed_size_list<float32>[C]`` array."""
        h = self._handle()
        i = ArrowIn(as_ints(ids, "ids", dtype=np.int64))
        out = ArrowOut()
        _lib.call("exitnet_targets_gather", out.array, out.schema, h, i.array, i.schema, int(exit))
        return out.to_array()

    def lookup(self, ids: Any) -> list[np.ndarray]:
        """Every exit's recorded logits for ``ids``: a list of E arrays (n, C)."""
        return [self.gather(ids, j) for j in range(self.num_exits)]

    def close(self) -> None:
        """Unmap the file. Idempotent."""
        if self._h:
            _lib.call("exitnet_targets_free", ctypes.byref(self._h))

    def __enter__(self) -> "TargetStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._h and _lib.is_loaded():
                _lib.fn("exitnet_targets_free")(ctypes.byref(self._h))
        except Exception:
            pass

    def __len__(self) -> int:
        return self.num_rows

    def __repr__(self) -> str:
        state = "" if self._h else ", closed"
        return (f"TargetStore({self.path!r}, rows={self.num_rows}, exits={self.num_exits}, "
                f"classes={self.num_classes}{state})")


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
