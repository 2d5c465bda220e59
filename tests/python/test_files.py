"""Hostile files and extreme inputs (issue 12): one regression test per finding.

Every test forges its input with pyarrow/numpy and checks the library's answer
against what the file layer promises (docs/file-format.md): regular files only,
a whole-file checksum, bounded decoding, a clear error of the right kind, and a
library that keeps working afterwards.
"""

from __future__ import annotations

import os
import random
import struct
import threading

import numpy as np
import pyarrow as pa
import pytest

import exitnet
from exitnet import _io, distill, fisher, policy, runtime
from exitnet._errors import (
    ExitnetIOError,
    ExitnetMemoryError,
    InvalidArgumentError,
    InvalidStateError,
)

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _loaders(path):
    """Every reader of an exitnet file, as (name, callable)."""
    return [
        ("model", lambda: runtime.Model(path)),
        ("state", lambda: fisher.load_state(path)),
        ("accumulator", lambda: fisher.FisherAccumulator.load(path)),
        ("targets", lambda: distill.TargetStore(path)),
        ("target_file", lambda: distill.TargetFile(path)),
    ]


def _finishes(fn, seconds=20.0):
    """Run fn in a daemon thread; return (finished, exception)."""
    box = {}

    def body():
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - reported to the caller
            box["e"] = e

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(seconds)
    return not t.is_alive(), box.get("e")


def _rewrite(path, out, *, compression=None, edit_batch=None):
    """Re-encode an exitnet file with pyarrow (optionally compressed), keep its
    metadata with a fresh checksum slot, and seal it (a forger recomputes the CRC)."""
    with pa.memory_map(path) as src:
        r = pa.ipc.open_file(src)
        schema = r.schema
        batches = [r.get_batch(i) for i in range(r.num_record_batches)]
    md = dict(schema.metadata or {})
    md[b"exitnet.file_crc32"] = _io.CHECKSUM_PLACEHOLDER.encode()
    schema = schema.with_metadata(md)
    opts = pa.ipc.IpcWriteOptions(compression=compression)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, schema, options=opts) as w:
        for b in batches:
            w.write_batch(edit_batch(b) if edit_batch else b.replace_schema_metadata(md))
    data = bytearray(sink.getvalue().to_pybytes())
    _io.seal(data)
    with open(out, "wb") as f:
        f.write(data)
    return data


def _state(path, p=1000):
    fisher.save_state(path, [{"w": np.full(p, 0.5, np.float32)}], [{"w": np.ones(p, np.float32)}], {"n": 3})


def _targets(path, n=50, E=2, C=4, seed=0):
    rng = np.random.default_rng(seed)
    logits = [rng.standard_normal((n, C)).astype(np.float32) for _ in range(E)]
    with distill.TargetWriter(path, num_exits=E, num_classes=C) as w:
        w.write(np.arange(n, dtype=np.int64), logits)
    return logits


def _model(path):
    torch = pytest.importorskip("torch")
    from exitnet.torch import EarlyExitNet, export

    torch.manual_seed(0)
    nn = torch.nn
    net = EarlyExitNet([nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())],
                       [nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 3))])
    return export(net, path, (1, 8, 8))


# ---------------------------------------------------------------- 1. forged compressed Fisher files


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
@pytest.mark.parametrize("what", ["state", "accumulator"])
def test_forged_compressed_fisher_file_declaring_2_40_bytes_is_refused(tmp_path, codec, what):
    src, bad = str(tmp_path / "s.arrow"), str(tmp_path / "bomb.arrow")
    p = 1000
    if what == "state":
        _state(src, p)
    else:
        a = fisher.FisherAccumulator({"w": (p,)})
        a.update_rows(np.ones((2, p), np.float32))
        a.add_samples(2)
        a.save(src)
    data = _rewrite(src, bad, compression=codec)
    # every compressed buffer starts with its uncompressed length (int64): claim 2^40
    n = 0
    for width in (4 * p, 8 * p):
        needle = struct.pack("<q", width)
        i = data.find(needle)
        while i >= 0:
            data[i:i + 8] = struct.pack("<q", 1 << 40)
            n += 1
            i = data.find(needle, i + 8)
    assert n >= 1
    for s in _io._slots(data, _io.CHECKSUM_MARKER):
        data[s:s + 8] = b"00000000"
    _io.seal(data)
    with open(bad, "wb") as f:
        f.write(data)
    load = fisher.load_state if what == "state" else fisher.FisherAccumulator.load
    with pytest.raises((ExitnetIOError, ExitnetMemoryError), match="more than"):
        load(bad)
    # a compressed file within bounds still loads (and the library still works)
    _rewrite(src, bad, compression=codec)
    load(bad)


# ---------------------------------------------------------------- 2. large layouts


@pytest.mark.parametrize("shape", [(2**33,), (2**49,), (2**40, 2**20), (2**62, 4)])
def test_large_layout_is_out_of_memory_and_the_library_keeps_working(shape):
    with pytest.raises(ExitnetMemoryError, match="layout"):
        fisher.FisherAccumulator({"w": shape})
    a = fisher.FisherAccumulator({"w": (3,)})  # not poisoned
    a.update_rows(np.ones((2, 3), np.float32))
    a.add_samples(2)
    np.testing.assert_array_equal(a.compute()["w"], np.ones(3, np.float32))


def test_memory_limit_bounds_input_driven_allocations():
    try:
        exitnet.set_memory_limit(64 << 20)
        with pytest.raises(ExitnetMemoryError, match="memory limit"):
            fisher.FisherAccumulator({"w": (16 << 20,)})  # 128 MiB of float64 sums
        fisher.FisherAccumulator({"w": (1 << 20,)})  # 8 MiB is fine
    finally:
        exitnet.set_memory_limit(0)


# ---------------------------------------------------------------- 3. non-regular paths


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs mkfifo")
def test_fifo_dev_zero_and_directories_are_refused_without_blocking(tmp_path):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero", str(tmp_path)):
        if not os.path.exists(path):
            continue
        for name, load in _loaders(path):
            done, err = _finishes(load)
            assert done, f"{name} blocked on {path}"
            assert isinstance(err, ExitnetIOError), f"{name} on {path}: {err!r}"
            assert "regular file" in str(err) or "directory" in str(err), f"{name}: {err}"


# ---------------------------------------------------------------- 4. decompression bomb


def test_zstd_target_file_bomb_is_bounded(tmp_path):
    n, C = 100_000, 32  # 12.8 MB of zero logits, a few KB compressed
    src, bomb = str(tmp_path / "t.arrow"), str(tmp_path / "bomb.arrow")
    with distill.TargetWriter(src, num_exits=1, num_classes=C) as w:
        w.write(np.arange(n, dtype=np.int64), [np.zeros((n, C), np.float32)])
    _rewrite(src, bomb, compression="zstd")
    assert os.path.getsize(bomb) * 16 + (1 << 20) < n * C * 4
    with pytest.raises(ExitnetIOError, match="decompression bomb"):
        distill.TargetStore(bomb)
    with pytest.raises(ExitnetIOError, match="compressed"):
        distill.TargetFile(bomb)
    # a modestly compressed file within the bound loads in the library
    small = str(tmp_path / "small.arrow")
    logits = _targets(src, n=200, E=1, C=4)
    _rewrite(src, small, compression="zstd")
    with distill.TargetStore(small) as st:
        np.testing.assert_array_equal(st.gather(np.arange(200), 0), logits[0])


# ---------------------------------------------------------------- 5. integrity of model and target files


def _flips(path, count, seed):
    data = open(path, "rb").read()
    rng = random.Random(seed)
    for _ in range(count):
        i = rng.randrange(len(data))
        b = bytearray(data)
        b[i] ^= 1 << rng.randrange(8)
        yield i, bytes(b)


def test_every_single_byte_flip_in_a_model_file_is_detected(tmp_path):
    path = _model(str(tmp_path / "m.exitnet"))
    assert _io.verify(open(path, "rb").read()) == "crc32"
    bad = str(tmp_path / "bad.exitnet")
    for i, b in _flips(path, 300, 1):
        open(bad, "wb").write(b)
        with pytest.raises(ExitnetIOError):
            runtime.Model(bad)
            pytest.fail(f"flip at byte {i} loaded")


def test_every_single_byte_flip_in_a_target_file_is_detected_by_both_readers(tmp_path):
    path = str(tmp_path / "t.arrow")
    _targets(path)
    bad = str(tmp_path / "bad.arrow")
    for i, b in _flips(path, 300, 2):
        open(bad, "wb").write(b)
        for name, load in _loaders(bad)[3:]:
            with pytest.raises(ExitnetIOError):
                load()
                pytest.fail(f"{name}: flip at byte {i} loaded")


def test_target_readers_agree_on_damaged_files(tmp_path):
    """TargetFile (pure Python) never accepts a file TargetStore refuses."""
    path = str(tmp_path / "t.arrow")
    _targets(path, n=20, E=1, C=3)
    data = open(path, "rb").read()
    bad = str(tmp_path / "bad.arrow")
    rng = random.Random(3)
    for k in range(200):
        b = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        if k % 2:  # a forger who recomputes the checksum reaches the parsers
            for s in _io._slots(b, _io.CHECKSUM_MARKER):
                b[s:s + 8] = b"00000000"
            try:
                _io.seal(b)
            except ValueError:
                pass
        if k % 5 == 0:
            b = b[: rng.randrange(len(b))]
        open(bad, "wb").write(bytes(b))
        try:
            distill.TargetStore(bad).close()
            store_ok = True
        except ExitnetIOError:
            store_ok = False
        try:
            distill.TargetFile(bad).close()
            file_ok = True
        except ExitnetIOError:
            file_ok = False
        assert store_ok or not file_ok, f"case {k}: TargetFile accepted a file TargetStore refused"


# ---------------------------------------------------------------- 6. silent wrong values


def test_non_integer_layout_dimension_is_refused():
    for shape in [(4.5,), ("4",), (np.float32(4),)]:
        with pytest.raises(InvalidArgumentError, match="non-integer"):
            fisher.FisherAccumulator({"w": shape})
    assert fisher.FisherAccumulator({"w": (np.int64(4),)}).size == 4


def test_negative_consolidation_weight_is_refused():
    f = [{"w": np.ones(3, np.float32)}, {"w": np.ones(3, np.float32)}]
    with pytest.raises(InvalidArgumentError, match="weight 1"):
        fisher.consolidate(f, "weighted", weights=[1, -5])
    np.testing.assert_allclose(fisher.consolidate(f, "weighted", weights=[1, 2])["w"], np.full(3, 3.0))


def test_batched_update_squared_with_huge_n_is_refused_not_inf():
    a = fisher.FisherAccumulator({"w": (3,)}, label_mode="batched")
    a.update_squared("w", np.full(3, 1e30, np.float32), 2**63 - 1)
    a.add_samples(1)
    with pytest.raises(InvalidArgumentError, match="beyond float32"):
        a.compute()


def test_cost_overflow_is_refused():
    with pytest.raises(InvalidArgumentError, match="overflows"):
        policy.CostModel([1e308], [1e308])


def test_duplicate_metadata_keys_are_refused(tmp_path):
    import ctypes

    from exitnet import _lib

    keys = (ctypes.c_char_p * 2)(b"n", b"n")
    vals = (ctypes.c_char_p * 2)(b"1", b"2")
    names = (ctypes.c_char_p * 1)(b"w")
    ndims = (ctypes.c_int64 * 1)(1)
    dims = (ctypes.c_int64 * 1)(3)
    with pytest.raises(InvalidArgumentError, match="appears twice"):
        _lib.call("exitnet_fisher_state_save", os.fsencode(str(tmp_path / "s.arrow")), names, ndims, dims, 1,
                  None, None, 0, None, None, 0, keys, vals, 2)


# ---------------------------------------------------------------- 8. stale temp files


def test_stale_temp_files_are_cleaned_by_the_next_save(tmp_path):
    dead = 4194305  # above Linux's default pid_max: no such process
    for name, save in [("t.arrow", lambda p: _targets(p)), ("s.arrow", lambda p: _state(p)),
                       ("m.exitnet", lambda p: _model(p))]:
        path = str(tmp_path / name)
        stale = str(tmp_path / f".{name}.tmp-{dead}-abc")
        live = str(tmp_path / f".{name}.tmp-{os.getpid()}-def")
        for p in (stale, live):
            open(p, "wb").write(b"x" * 1000)
        save(path)
        assert not os.path.exists(stale), name
        assert os.path.exists(live), name
        os.unlink(live)


# ---------------------------------------------------------------- 9. errors of the right kind


def test_update_rows_with_zero_rows_is_a_no_op():
    a = fisher.FisherAccumulator({"w": (2, 3)})
    a.update_rows(np.zeros((0, 6), np.float32))
    a.update_rows(np.zeros((0, 2, 3), np.float32), param="w")
    a.add_samples(1)
    np.testing.assert_array_equal(a.compute()["w"], np.zeros((2, 3), np.float32))


def test_target_file_after_close_is_invalid_state(tmp_path):
    path = str(tmp_path / "t.arrow")
    _targets(path)
    f = distill.TargetFile(path)
    f.close()
    for call in (lambda: f.gather([0]), lambda: f.lookup([0]), lambda: f.rows([0])):
        with pytest.raises(InvalidStateError, match="closed"):
            call()


def test_accumulator_load_reads_the_file_once(tmp_path, monkeypatch):
    path = str(tmp_path / "a.arrow")
    a = fisher.FisherAccumulator({"w": (3, 4), "b": (4,)}, label_mode="sampled")
    a.update_rows(np.ones((1, 16), np.float32))
    a.add_samples(1)
    a.save(path)

    def no_pyarrow(*_a, **_k):
        raise AssertionError("the file was opened again with pyarrow")

    monkeypatch.setattr(pa.ipc, "open_file", no_pyarrow)
    b = fisher.FisherAccumulator.load(path)
    assert b.layout == {"w": (3, 4), "b": (4,)} and b.label_mode == "sampled"
    np.testing.assert_array_equal(b.compute()["w"], np.ones((3, 4), np.float32))
    # a forged file (valid CRC, garbage layout JSON) is an IO error from the library
    data = bytearray(open(path, "rb").read().replace(b'"name"', b'"n\xffme"'))  # both schema copies
    for s in _io._slots(data, _io.CHECKSUM_MARKER):
        data[s:s + 8] = b"00000000"
    _io.seal(data)
    open(path, "wb").write(data)
    with pytest.raises(ExitnetIOError):
        fisher.FisherAccumulator.load(path)


def test_gather_raw_with_overflowing_n_times_c_is_out_of_memory(tmp_path):
    import ctypes

    from exitnet import _lib

    path = str(tmp_path / "t.arrow")
    _targets(path, C=4)
    with distill.TargetStore(path) as st:
        n = 2**62  # n·C wraps to 0 in 64 bits
        with pytest.raises(ExitnetMemoryError, match="overflow"):
            _lib.call("exitnet_targets_gather_raw", ctypes.c_void_p(8), 0, st._handle(), ctypes.c_void_p(8), n, 0)


def test_thresholds_aliasing_an_output_buffer_do_not_change_decisions(tmp_path):
    """exitnet_model_predict_raw reads the thresholds once, before it writes outputs."""
    import ctypes

    torch = pytest.importorskip("torch")
    from exitnet import _lib
    from exitnet.runtime import _Params
    from exitnet.torch import EarlyExitNet, export

    torch.manual_seed(1)
    nn = torch.nn
    net = EarlyExitNet([nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), nn.Sequential(nn.Conv2d(2, 2, 3), nn.ReLU())],
                       [nn.Sequential(nn.Flatten(), nn.Linear(2 * 6 * 6, 3)), nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 3))])
    path = export(net, str(tmp_path / "m.exitnet"), (1, 8, 8))
    x = np.random.default_rng(0).standard_normal((64, 1, 8, 8)).astype(np.float32)
    with runtime.Model(path) as m:
        tau = float(np.median(m.predict(x, thresholds=[0.0], output="numpy")["confidence"]))
        ref = m.predict(x, thresholds=[tau], output="numpy")
        n = len(x)
        pred, ex = np.empty(n, np.int32), np.empty(n, np.int32)
        conf = np.full(n, tau, np.float32)  # the thresholds live in the confidence output
        params = _Params(0, conf.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), 1, 1.0, 0, 0)
        _lib.call("exitnet_model_predict_raw", pred.ctypes.data, ex.ctypes.data, conf.ctypes.data, None, None,
                  m._h, x.ctypes.data, n, ctypes.byref(params))
    np.testing.assert_array_equal(ex, ref["exit"])
    np.testing.assert_array_equal(pred, ref["prediction"])
    assert 0 < (ex == 0).sum() < n  # the threshold splits the batch
