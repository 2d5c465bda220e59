"""File helpers shared by the Python side (the Go side has golib/internal/fsx).

The container of every exitnet file is specified in docs/file-format.md: the
schema metadata carries ``exitnet.kind``, ``exitnet.version`` (the container
version, 2) and ``exitnet.file_crc32``, a CRC-32 (``zlib.crc32``) of the whole
file computed with the checksum's 8 hex digits (stored twice: stream header and
footer) set to ``"00000000"``.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile
import time
import zlib
from typing import IO, Any, Callable, Iterator, Optional

__all__ = ["atomic_write", "seal", "verify", "file_crc32", "CONTAINER_VERSION", "CHECKSUM_KEY",
           "CHECKSUM_PLACEHOLDER", "container_metadata"]

CONTAINER_VERSION = 2
CHECKSUM_KEY = "exitnet.file_crc32"
CHECKSUM_MARKER = b"EXITNET-CRC32-"
CHECKSUM_PLACEHOLDER = CHECKSUM_MARKER.decode() + "00000000"
_LEGACY_CRC32C_MARKER = b"EXITNET-CRC32C-"
_LEGACY_STALE_AGE = 3600.0  # seconds; temp files of earlier naming schemes (no pid)


def container_metadata(kind: str) -> dict[str, str]:
    """The container keys a writer puts first in the schema metadata (then :func:`seal`)."""
    return {"exitnet.kind": kind, "exitnet.version": str(CONTAINER_VERSION), CHECKSUM_KEY: CHECKSUM_PLACEHOLDER}


def _slots(buf: Any, marker: bytes) -> list[int]:
    out, i = [], 0
    while True:
        j = buf.find(marker, i)
        if j < 0:
            return out
        i = j + len(marker)
        out.append(i)


def _crc(buf: Any, slots: list[int]) -> int:
    mv, crc, prev = memoryview(buf), 0, 0
    for s in slots:
        crc = zlib.crc32(mv[prev:s], crc)
        crc = zlib.crc32(b"00000000", crc)
        prev = s + 8
    crc = zlib.crc32(mv[prev:], crc)
    mv.release()
    return crc


def seal(buf: Any) -> None:
    """Fill the two checksum slots of an encoded file (a writable buffer: bytearray, mmap)."""
    slots = _slots(buf, CHECKSUM_MARKER)
    if len(slots) != 2 or slots[1] + 8 > len(buf):
        raise ValueError(f"the data contains the reserved checksum marker {CHECKSUM_MARKER!r}; it cannot be written")
    digits = b"%08x" % _crc(buf, slots)
    for s in slots:
        buf[s:s + 8] = digits


def verify(buf: Any) -> str:
    """Check the whole-file checksum of an exitnet file held in ``buf`` (bytes, mmap).

    Returns ``"crc32"`` when verified, ``"crc32c"`` for a legacy Fisher file (not
    verified here: only the library reads those), ``"none"`` when the file carries
    no checksum (container version 1). Raises ``ValueError`` on a mismatch.
    """
    slots = _slots(buf, CHECKSUM_MARKER)
    if not slots:
        return "crc32c" if buf.find(_LEGACY_CRC32C_MARKER) >= 0 else "none"
    if len(slots) != 2 or slots[1] + 8 > len(buf):
        raise ValueError(f"corrupted or truncated file: {len(slots)} checksum slots, want 2")
    a, b = bytes(buf[slots[0]:slots[0] + 8]), bytes(buf[slots[1]:slots[1] + 8])
    want = b"%08x" % _crc(buf, slots)
    if a != b or a != want:
        raise ValueError(f"corrupted or truncated file (checksum mismatch: stored {a.decode(errors='replace')}/"
                         f"{b.decode(errors='replace')}, computed {want.decode()})")
    return "crc32"


def file_crc32(buf: Any) -> int:
    """CRC-32 of the whole buffer (identifies the exact bytes a reader validated)."""
    return zlib.crc32(memoryview(buf))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: it runs as another user
    return True


def _clean_stale(d: str, base: str) -> None:
    """Remove temp files of earlier, crashed writes to ``d/base`` (same rule as fsx.cleanStale)."""
    pre, legacy = "." + base + ".tmp-", "." + base + "."
    try:
        names = os.listdir(d)
    except OSError:
        return
    now = time.time()
    for name in names:
        full = os.path.join(d, name)
        stale = False
        if name.startswith(pre):
            pid_s, sep, _ = name[len(pre):].partition("-")
            if sep and pid_s.isdigit() and int(pid_s) > 0:
                stale = int(pid_s) != os.getpid() and not _alive(int(pid_s))
            else:
                with contextlib.suppress(OSError):
                    stale = now - os.lstat(full).st_mtime > _LEGACY_STALE_AGE
        elif name.startswith(legacy) and name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                stale = now - os.lstat(full).st_mtime > _LEGACY_STALE_AGE
        if stale and os.path.isfile(full) and not os.path.islink(full):
            with contextlib.suppress(OSError):
                os.unlink(full)


def _seal_fd(fd: int) -> None:
    size = os.fstat(fd).st_size
    with mmap.mmap(fd, size, access=mmap.ACCESS_WRITE) as mm:
        seal(mm)
        mm.flush()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, sealed: bool = False,
                 check: Optional[Callable[[str], None]] = None) -> Iterator[IO[Any]]:
    """Write ``path`` atomically: yield a temporary file in the same directory, and
    when the block succeeds fsync it, make it 0644 and rename it over ``path``.
    If the block (or the rename) fails, the temporary file is removed and any
    previous file at ``path`` is left as it was: readers never see a partial file.
    Temporary files are named ``.<base>.tmp-<pid>-<random>``; those of earlier
    writes whose process is gone are removed first. ``sealed=True`` fills the
    checksum slots of an exitnet file (:func:`seal`) before the rename. ``check``
    is called with the temporary file's path once it is complete (sealed, synced);
    if it raises, the file is removed and nothing appears at ``path``.
    """
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    _clean_stale(d, base)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{base}.tmp-{os.getpid()}-")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            if sealed:
                _seal_fd(f.fileno())
            os.fsync(f.fileno())
        if check is not None:
            check(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ------------------------------------------------------------------ pure-Python container checks
# The same rules as golib/internal/fsx (Open, checkHeader), for the readers that must not
# enter the library (exitnet.distill.TargetFile in forked DataLoader workers).


def _u32(b: Any, pos: int) -> int:
    if pos < 0 or pos + 4 > len(b):
        raise ValueError(f"offset {pos} out of range")
    return int.from_bytes(b[pos:pos + 4], "little")


def _table(b: Any, pos: int) -> Any:
    """A flatbuffer table at pos: returns field(i) -> absolute position or 0 (bounds-checked)."""
    if pos < 0 or pos + 4 > len(b):
        raise ValueError(f"table at {pos} out of range")
    vt = pos - int.from_bytes(b[pos:pos + 4], "little", signed=True)
    if vt < 0 or vt + 4 > len(b):
        raise ValueError(f"vtable at {vt} out of range")
    vsize, tsize = int.from_bytes(b[vt:vt + 2], "little"), int.from_bytes(b[vt + 2:vt + 4], "little")
    if vsize < 4 or vsize % 2 or vt + vsize > len(b) or pos + tsize > len(b):
        raise ValueError(f"vtable at {vt} inconsistent")

    def field(i: int) -> int:
        slot = 4 + 2 * i
        if slot + 2 > vsize:
            return 0
        fo = int.from_bytes(b[vt + slot:vt + slot + 2], "little")
        if fo and fo >= tsize:
            raise ValueError(f"field {i} outside its table")
        return pos + fo if fo else 0
    return field


def record_batch_blocks(buf: Any) -> list[tuple[int, int, int]]:
    """(offset, metadata length, body length) of each record batch, from the file footer."""
    if len(buf) < 18 or bytes(buf[:6]) != b"ARROW1" or bytes(buf[-6:]) != b"ARROW1":
        raise ValueError("not an Arrow IPC file (bad magic bytes or truncated)")
    size = _u32(buf, len(buf) - 10)
    if size <= 0 or size > len(buf) - 18:
        raise ValueError(f"footer size {size} inconsistent with the file size {len(buf)}")
    fb = memoryview(buf)[len(buf) - 10 - size:len(buf) - 10]
    footer = _table(fb, _u32(fb, 0))
    p = footer(3)
    if not p:
        return []
    v = p + _u32(fb, p)
    n = _u32(fb, v)
    if n > (len(fb) - v - 4) // 24:
        raise ValueError("record batch block vector exceeds the footer")
    out = []
    for k in range(n):
        e = v + 4 + 24 * k
        off = int.from_bytes(fb[e:e + 8], "little", signed=True)
        mlen = int.from_bytes(fb[e + 8:e + 12], "little", signed=True)
        blen = int.from_bytes(fb[e + 16:e + 24], "little", signed=True)
        if off < 8 or mlen < 8 or blen < 0 or off + mlen + blen > len(buf) - 10 - size:
            raise ValueError(f"record batch block {k} lies outside the file")
        out.append((off, mlen, blen))
    return out


def body_is_compressed(buf: Any, block: tuple[int, int, int]) -> bool:
    """Whether the record batch message at block declares a compressed body
    (Message.header → RecordBatch.compression, Arrow's Message.fbs)."""
    off, mlen, _ = block
    m = memoryview(buf)[off:off + mlen]
    start = 8 if _u32(m, 0) == 0xFFFFFFFF else 4
    meta = m[start:]
    msg = _table(meta, _u32(meta, 0))
    hp = msg(2)
    if not hp:
        raise ValueError("record batch message without a header")
    rb = _table(meta, hp + _u32(meta, hp))
    return rb(3) != 0


def check_header(md: dict[str, str], kind: str, checksum: str) -> int:
    """The metadata convention (same rules as fsx.checkHeader); returns the container version."""
    got = md.get("exitnet.kind")
    if got != kind:
        raise ValueError(f"not an exitnet {kind} file (metadata exitnet.kind = {got!r})")
    v = md.get("exitnet.version")
    if v is None:
        if checksum == "crc32":
            raise ValueError("metadata exitnet.version missing although the file carries a container-2 checksum (damaged file)")
        return 1
    try:
        n = int(v)
    except ValueError:
        n = 0
    if n < 1 or str(n) != v.strip():
        raise ValueError(f"metadata exitnet.version = {v!r} is not a container version")
    if n > CONTAINER_VERSION:
        raise ValueError(f"file written by a newer exitnet (exitnet.version = {n}; this build reads container versions 1 and {CONTAINER_VERSION})")
    if n == CONTAINER_VERSION and checksum != "crc32":
        raise ValueError(f"container version {n} requires the {CHECKSUM_KEY} checksum, which is missing (damaged file)")
    return n
