"""exitnet.distill against torch float64 references, finite differences and brute force.

References: torch float64 ``F.kl_div(F.log_softmax(s/T), F.log_softmax(t/T),
reduction="batchmean", log_target=True) * T**2`` and its autograd gradient;
central finite differences of the library's own loss; numpy fancy indexing for
target gathers. Bad inputs from every entry point (Python API and raw ctypes calls).
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pytest
import torch
import torch.nn.functional as F

import exitnet
from exitnet import _core, _lib, distill
from exitnet._arrow import ArrowIn, ArrowOut, as_matrix
from exitnet._errors import (
    ExitnetIOError,
    InvalidArgumentError,
    InvalidStateError,
    NotFoundError,
)


def torch_ref(s, t, T):
    """float64 torch loss and gradient wrt the student."""
    S = torch.tensor(np.asarray(s, np.float64), requires_grad=True)
    Tt = torch.tensor(np.asarray(t, np.float64))
    loss = F.kl_div(F.log_softmax(S / T, 1), F.log_softmax(Tt / T, 1), reduction="batchmean", log_target=True) * T * T
    loss.backward()
    return loss.item(), S.grad.numpy()


def logits(seed, n, c, scale=3.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, c)) * scale).astype(np.float32), (rng.standard_normal((n, c)) * scale).astype(np.float32)


def leak_state():
    a, h = ctypes.c_int64(), ctypes.c_int64()
    _lib.call("exitnet_allocated_bytes", ctypes.byref(a))
    _lib.call("exitnet_live_handles", ctypes.byref(h))
    return a.value, h.value


@pytest.fixture(autouse=True)
def no_leaks():
    before = leak_state()
    yield
    import gc

    gc.collect()
    assert leak_state() == before


# ------------------------------------------------------------------ loss and soft targets


@pytest.mark.parametrize(
    "n,c,T,scale",
    [(1, 1, 2.0, 1.0), (1, 2, 1.0, 1.0), (7, 10, 2.0, 3.0), (64, 100, 2.0, 4.0), (65, 101, 4.0, 4.0),
     (300, 9, 1.0, 2.0), (3, 1000, 2.0, 10.0), (5, 13, 0.1, 1.0), (5, 13, 50.0, 1.0)],
)
def test_kd_loss_vs_torch_float64(n, c, T, scale):
    s, t = logits(n * 1000 + c, n, c, scale)
    loss, grad = distill.kd_loss(s, t, T)
    want, wgrad = torch_ref(s, t, T)
    # float32 conditioning: per-row terms carry ~1e-7 relative error, scaled by T²
    assert abs(loss - want) <= 1e-5 * want + 2e-7 * T * T * (1 + 4 * scale / T)
    assert grad.shape == (n, c) and grad.dtype == np.float32
    np.testing.assert_allclose(grad, wgrad, rtol=0, atol=1e-5 * np.abs(wgrad).max() + 1e-9)
    l2, g2 = distill.kd_loss(s, t, T, grad=False)
    assert l2 == loss and g2 is None
    buf = np.empty_like(s)
    l3, g3 = distill.kd_loss(s, t, T, out=buf)
    assert l3 == loss and g3 is buf
    np.testing.assert_array_equal(buf, grad)
    l4, g4 = distill.kd_loss(as_matrix(s, "s"), as_matrix(t, "t"), T)
    assert l4 == loss
    np.testing.assert_array_equal(g4, grad)


def test_kd_loss_error_comparable_to_torch_float32():
    # The library's float32 loss is no worse than torch's own float32 computation.
    s, t = logits(3, 512, 100, 4.0)
    for T in (1.0, 2.0, 8.0):
        want, _ = torch_ref(s, t, T)
        ours, _ = distill.kd_loss(s, t, T)
        S, Tt = torch.tensor(s), torch.tensor(t)
        t32 = (F.kl_div(F.log_softmax(S / T, 1), F.log_softmax(Tt / T, 1), reduction="batchmean", log_target=True) * T * T).item()
        assert abs(ours - want) <= max(4 * abs(t32 - want), 1e-6 * want)


def test_kd_loss_finite_differences():
    s, t = logits(11, 3, 6, 2.0)
    s64 = s.astype(np.float64)
    _, grad = distill.kd_loss(s, t, 2.0)
    h = 1e-2
    for i in range(3):
        for j in range(6):
            sp, sm = s64.copy(), s64.copy()
            sp[i, j] += h
            sm[i, j] -= h
            fd = (torch_ref(sp, t, 2.0)[0] - torch_ref(sm, t, 2.0)[0]) / (2 * h)
            assert abs(fd - grad[i, j]) < 1e-4
    # and of the library's own float32 loss (consistency of loss and gradient)
    sp, sm = s.copy(), s.copy()
    sp[1, 2] += 0.05
    sm[1, 2] -= 0.05
    fd = (distill.kd_loss(sp, t, 2.0)[0] - distill.kd_loss(sm, t, 2.0)[0]) / (float(sp[1, 2]) - float(sm[1, 2]))
    assert abs(fd - grad[1, 2]) < 1e-3


def test_identical_logits_give_zero():
    s, _ = logits(2, 20, 30)
    loss, grad = distill.kd_loss(s, s, 2.0)
    assert 0 <= loss < 1e-6
    assert np.abs(grad).max() < 1e-7


@pytest.mark.parametrize("T", [0.5, 1.0, 2.0, 7.0])
def test_soft_targets_vs_torch(T):
    s, _ = logits(4, 33, 17, 5.0)
    p = distill.soft_targets(s, T)
    want = torch.softmax(torch.tensor(s, dtype=torch.float64) / T, 1).numpy()
    assert p.dtype == np.float32 and p.shape == s.shape
    # float32 arguments (z - max)/T carry 6e-8·|z| relative error into exp (as in torch float32)
    zmax = float((s.max(1) - s.min(1)).max()) / T
    np.testing.assert_allclose(p, want, rtol=3e-7 + 1.2e-7 * zmax, atol=1e-30)
    huge = np.array([[1e30, -1e30, 0.0]], np.float32)
    np.testing.assert_allclose(distill.soft_targets(huge, 2.0), [[1, 0, 0]])
    assert distill.soft_targets(np.zeros((0, 4), np.float32), 2.0).shape == (0, 4)
    assert distill.soft_targets(as_matrix(np.zeros((0, 4), np.float32), "z"), 2.0).shape == (0, 4)
    # in place, and into a given buffer, and through Arrow: the same bits
    inplace = s.copy()
    assert distill.soft_targets(inplace, T, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, p)
    np.testing.assert_array_equal(distill.soft_targets(as_matrix(s, "s"), T), p)
    with pytest.raises(InvalidArgumentError, match="out"):
        distill.soft_targets(s, T, out=np.empty((2, 2), np.float32))


def test_kd_loss_torch_matches_and_trains():
    s, t = logits(5, 16, 10)
    S = torch.tensor(s, requires_grad=True)
    Tt = torch.tensor(t, requires_grad=True)
    loss = distill.kd_loss_torch(S, Tt, 2.0)
    loss.backward()
    ours, grad = distill.kd_loss(s, t, 2.0)
    assert abs(loss.item() - ours) < 1e-5 * ours + 1e-6
    np.testing.assert_allclose(S.grad.numpy(), grad, atol=1e-6)
    assert Tt.grad is None, "the teacher must be detached"
    # float64 and any trailing shape
    S64 = torch.tensor(s, dtype=torch.float64).reshape(16, 2, 5)
    want, _ = torch_ref(s, t, 2.0)
    got = distill.kd_loss_torch(S64, torch.tensor(t, dtype=torch.float64).reshape(16, 2, 5), 2.0)
    assert abs(got.item() - want) < 1e-12
    for bad in (dict(temperature=0.0), dict(temperature=float("nan"))):
        with pytest.raises(InvalidArgumentError, match="temperature"):
            distill.kd_loss_torch(S, Tt, **bad)
    with pytest.raises(InvalidArgumentError, match="shape"):
        distill.kd_loss_torch(S, Tt[:3], 2.0)
    with pytest.raises(InvalidArgumentError, match="student"):
        distill.kd_loss_torch(S[:0], Tt[:0], 2.0)


# ------------------------------------------------------------------ input forms


def test_numpy_torch_pyarrow_agree_without_copy():
    s, t = logits(6, 40, 12)
    base = distill.kd_loss(s, t, 2.0)
    ts, tt = torch.from_numpy(s), torch.from_numpy(t)
    ps, pt = as_matrix(s, "s"), as_matrix(t, "t")
    for a, b in ((ts, tt), (ps, pt), (s, tt)):
        got = distill.kd_loss(a, b, 2.0)
        assert got[0] == base[0]
        np.testing.assert_array_equal(got[1], base[1])
    # mixed forms take the Arrow path and agree too
    got = distill.kd_loss(s, pt, 2.0)
    assert got[0] == base[0]
    np.testing.assert_array_equal(got[1], base[1])
    # zero copy: what the library reads is the caller's memory (raw path: the
    # pointers handed over are the arrays' own; Arrow path: the library sees the address)
    assert distill._dense(s, "s").ctypes.data == s.ctypes.data
    assert distill._dense(ts, "s").ctypes.data == ts.data_ptr()
    assert _core.data_address(s) == s.ctypes.data
    assert _core.data_address(ts) == ts.data_ptr()
    assert ps.values.buffers()[1].address == s.ctypes.data
    # extension type input
    ext = pa.ExtensionArray.from_storage(pa.fixed_shape_tensor(pa.float32(), [3, 4]), ps)
    np.testing.assert_array_equal(distill.soft_targets(ext, 2.0), distill.soft_targets(s, 2.0))


def test_sliced_arrays_give_the_same_result():
    s, t = logits(7, 50, 8)
    ps, pt = as_matrix(s, "s"), as_matrix(t, "t")
    sl_s, sl_t = ps.slice(10, 20), pt.slice(10, 20)
    assert sl_s.offset == 10
    got = distill.kd_loss(sl_s, sl_t, 2.0)
    want = distill.kd_loss(s[10:30].copy(), t[10:30].copy(), 2.0)
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(distill.soft_targets(sl_s, 3.0), distill.soft_targets(s[10:30].copy(), 3.0))
    # a sliced child under the list
    child = pa.array(np.concatenate([np.zeros(8, np.float32), s.reshape(-1)])).slice(8)
    np.testing.assert_array_equal(distill.soft_targets(pa.FixedSizeListArray.from_arrays(child, 8), 2.0),
                                  distill.soft_targets(s, 2.0))


def test_threads_agree_with_single_thread():
    s, t = logits(8, 2000, 100)
    old = exitnet.get_num_threads()
    try:
        exitnet.set_num_threads(1)
        want = distill.kd_loss(s, t, 2.0)
        exitnet.set_num_threads(4)
        with ThreadPoolExecutor(8) as ex:
            results = list(ex.map(lambda _: distill.kd_loss(s, t, 2.0), range(16)))
    finally:
        exitnet.set_num_threads(old)
    for loss, grad in results:
        assert loss == want[0]
        np.testing.assert_array_equal(grad, want[1])


# ------------------------------------------------------------------ bad input


def arrow_form(x):
    return as_matrix(x, "x") if isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 2 else x


@pytest.mark.parametrize("form", ["numpy", "arrow"])
def test_bad_inputs(form):
    # numpy/torch inputs take the raw-pointer path, pyarrow inputs the Arrow C Data path:
    # both must give the same clear errors.
    wrap = (lambda x: x) if form == "numpy" else arrow_form
    orig_kd, orig_st = distill.kd_loss, distill.soft_targets

    class D:
        @staticmethod
        def kd_loss(a, b, *args, **kw):
            return orig_kd(wrap(a), wrap(b), *args, **kw)

        @staticmethod
        def soft_targets(a, *args, **kw):
            return orig_st(wrap(a), *args, **kw)

    distill_ = D
    s, t = logits(9, 4, 5)
    with pytest.raises(InvalidArgumentError, match="float32"):
        distill_.kd_loss(s.astype(np.float64), t)
    with pytest.raises(InvalidArgumentError, match="teacher"):
        distill_.kd_loss(s, t[:3])
    with pytest.raises(InvalidArgumentError, match="teacher"):
        distill_.kd_loss(s, t[:, :4].copy())
    for T in (0.0, -1.0, float("nan"), float("inf"), 1e-300):
        with pytest.raises(InvalidArgumentError, match="temperature"):
            distill_.kd_loss(s, t, T)
        with pytest.raises(InvalidArgumentError, match="temperature"):
            distill_.soft_targets(s, T)
    with pytest.raises(InvalidArgumentError, match="temperature"):
        distill_.kd_loss(s, t, "hot")
    for v in (np.nan, np.inf, -np.inf):
        b = s.copy()
        b[2, 3] = v
        with pytest.raises(InvalidArgumentError, match=r"student: row 2, column 3"):
            distill_.kd_loss(b, t)
        with pytest.raises(InvalidArgumentError, match=r"teacher: row 2, column 3"):
            distill_.kd_loss(t, b)
        with pytest.raises(InvalidArgumentError, match=r"logits: row 2, column 3"):
            distill_.soft_targets(b)
    with pytest.raises(InvalidArgumentError, match="empty batch"):
        distill_.kd_loss(np.zeros((0, 5), np.float32), np.zeros((0, 5), np.float32))
    nulls = pa.FixedSizeListArray.from_arrays(pa.array([1.0, None, 3.0, 4.0], type=pa.float32()), 2)
    with pytest.raises(InvalidArgumentError, match="null"):
        distill_.kd_loss(nulls, nulls)
    with pytest.raises(InvalidArgumentError, match="expected fixed_size_list"):
        distill_.soft_targets(pa.array([1.0, 2.0], type=pa.float32()))
    with pytest.raises(InvalidArgumentError, match="float32"):
        distill_.soft_targets(pa.FixedSizeListArray.from_arrays(pa.array([1.0, 2.0]), 2))


def test_raw_abi_misuse():
    s, t = logits(10, 3, 4)
    loss = ctypes.c_double()
    # NULL struct pointers
    b = ArrowIn(as_matrix(t, "t"))
    with pytest.raises(InvalidArgumentError, match="student: NULL"):
        _lib.call("exitnet_distill_kd_loss", ctypes.byref(loss), None, None, None, None, b.array, b.schema, 2.0)
    assert not b._a.release, "teacher moved in even though student was NULL"
    # released ArrowArray
    a, b = ArrowIn(as_matrix(s, "s")), ArrowIn(as_matrix(t, "t"))
    a.release()
    with pytest.raises(InvalidArgumentError, match="student: the ArrowArray was already released"):
        _lib.call("exitnet_distill_kd_loss", ctypes.byref(loss), None, None, a.array, a.schema, b.array, b.schema, 2.0)
    assert not b._a.release and not b._s.release
    # NULL out_loss; only one of the two gradient outputs
    a, b = ArrowIn(as_matrix(s, "s")), ArrowIn(as_matrix(t, "t"))
    with pytest.raises(InvalidArgumentError, match="out_loss"):
        _lib.call("exitnet_distill_kd_loss", None, None, None, a.array, a.schema, b.array, b.schema, 2.0)
    a, b, o = ArrowIn(as_matrix(s, "s")), ArrowIn(as_matrix(t, "t")), ArrowOut()
    with pytest.raises(InvalidArgumentError, match="out_grad"):
        _lib.call("exitnet_distill_kd_loss", ctypes.byref(loss), o.array, None, a.array, a.schema, b.array, b.schema, 2.0)
    a, o = ArrowIn(as_matrix(s, "s")), ArrowOut()
    with pytest.raises(InvalidArgumentError, match="out"):
        _lib.call("exitnet_distill_soft_targets", None, None, a.array, a.schema, 2.0)
    # the raw-buffer entry point
    g = np.empty_like(s)
    _lib.call("exitnet_distill_kd_loss_raw", ctypes.byref(loss), g.ctypes.data, s.ctypes.data, t.ctypes.data, 3, 4, 2.0)
    want = distill.kd_loss(s, t, 2.0)
    assert loss.value == want[0]
    np.testing.assert_array_equal(g, want[1])
    with pytest.raises(InvalidArgumentError, match="NULL"):
        _lib.call("exitnet_distill_kd_loss_raw", ctypes.byref(loss), None, None, None, 3, 4, 2.0)
    with pytest.raises(InvalidArgumentError, match="empty batch"):
        _lib.call("exitnet_distill_kd_loss_raw", ctypes.byref(loss), None, None, None, 0, 4, 2.0)
    with pytest.raises(InvalidArgumentError, match="shape"):
        _lib.call("exitnet_distill_kd_loss_raw", ctypes.byref(loss), None, s.ctypes.data, t.ctypes.data, 3, 0, 2.0)


# ------------------------------------------------------------------ recorded targets


def fixture(j, ids, C):
    ids = np.asarray(ids, np.int64)
    return (j * 1000 + (ids[:, None] % 9973) * 0.5 - np.arange(C)[None, :] * 0.25).astype(np.float32)


def write_store(path, ids, E, C, seed=0, chunk=37):
    rng = np.random.default_rng(seed)
    with distill.TargetWriter(path, num_exits=E, num_classes=C) as w:
        for j in range(E):
            order = rng.permutation(len(ids))
            for lo in range(0, len(ids), chunk):
                sel = np.asarray(ids)[order[lo:lo + chunk]]
                w.add(j, sel, fixture(j, sel, C))
    return path


@pytest.mark.parametrize("ids", [np.arange(500), np.array([-5, 7, 3, 1 << 40, -(1 << 50), 99, 100, 12])])
def test_targets_round_trip(tmp_path, ids):
    path = write_store(str(tmp_path / "t.arrow"), ids, 3, 10)
    q = np.random.default_rng(1).choice(ids, 2 * len(ids))
    # pyarrow alone
    tab = pa.ipc.open_file(pa.memory_map(path)).read_all()
    assert tab.schema.metadata[b"exitnet.kind"] == b"lwf_targets"
    assert tab.column("sample_id").to_pylist() == sorted(ids.tolist())
    with distill.read_targets(path) as f, distill.TargetStore(path) as st:
        assert (len(f), f.num_exits, f.num_classes) == (len(ids), 3, 10)
        assert (len(st), st.num_exits, st.num_classes) == (len(ids), 3, 10)
        for j in range(3):
            want = fixture(j, q, 10)
            np.testing.assert_array_equal(f.gather(q, j), want)
            np.testing.assert_array_equal(st.gather(q, j), want)
            np.testing.assert_array_equal(st.gather(torch.from_numpy(q), j), want)
            np.testing.assert_array_equal(np.asarray(st.gather_arrow(q, j).flatten()).reshape(-1, 10), want)
        for a, b in zip(f.lookup(q[:5]), st.lookup(q[:5])):
            np.testing.assert_array_equal(a, b)
        out = np.empty((4, 10), np.float32)
        assert st.gather(q[:4], 1, out=out) is out
        for bad in (123456789, -1, 6):
            if bad in set(ids.tolist()):
                continue
            with pytest.raises(NotFoundError, match=f"sample id {bad} "):
                st.gather([ids[0], bad], 0)
            with pytest.raises(NotFoundError, match=f"sample id {bad} .position 1"):
                f.gather([ids[0], bad], 0)
            with pytest.raises(NotFoundError, match=f"sample id {bad}"):
                st.gather_arrow([bad], 0)
        with pytest.raises(InvalidArgumentError, match="exit"):
            st.gather(q[:2], 3)
        with pytest.raises(InvalidArgumentError, match="exit"):
            f.gather(q[:2], 3)
        with pytest.raises(InvalidArgumentError, match="ids"):
            st.gather(np.array([1.5]), 0)


def test_trainer_style_write_and_lookup(tmp_path):
    # The shape the sequential trainer uses: write(ids, [per-exit tensors]) and lookup(ids).
    path = str(tmp_path / "t.arrow")
    with distill.TargetWriter(path, num_exits=2) as w:  # num_classes inferred
        for lo in range(0, 100, 32):
            ids = torch.arange(lo, min(lo + 32, 100))
            w.write(ids, [torch.from_numpy(fixture(j, ids.numpy(), 4)) for j in range(2)])
    f = distill.read_targets(path)
    got = f.lookup(np.array([99, 0, 50]))
    for j in range(2):
        np.testing.assert_array_equal(got[j], fixture(j, [99, 0, 50], 4))
    f2 = pickle.loads(pickle.dumps(f))
    np.testing.assert_array_equal(f2.gather([7], 1), f.gather([7], 1))
    f.close(), f2.close()


def test_writer_errors_and_atomic_save(tmp_path):
    path = str(tmp_path / "t.arrow")
    write_store(path, np.arange(10), 1, 3)
    before = open(path, "rb").read()
    w = distill.TargetWriter(num_exits=2, num_classes=3)
    w.add(0, [1, 2], np.zeros((2, 3), np.float32))
    with pytest.raises(InvalidArgumentError, match="sample id 2 .*already recorded for exit 0"):
        w.add(0, [3, 2], np.zeros((2, 3), np.float32))
    assert w.num_rows(0) == 2, "a rejected chunk records nothing"
    with pytest.raises(InvalidArgumentError, match="sample id 5 appears twice"):
        w.add(1, [5, 5], np.zeros((2, 3), np.float32))
    with pytest.raises(InvalidArgumentError, match="exit"):
        w.add(2, [1], np.zeros((1, 3), np.float32))
    with pytest.raises(InvalidArgumentError, match="3 classes"):
        w.add(1, [1], np.zeros((1, 4), np.float32))
    with pytest.raises(InvalidArgumentError, match="rows"):
        w.add(1, [1, 2, 3], np.zeros((2, 3), np.float32))
    with pytest.raises(InvalidArgumentError, match="logits: row 1, column 0"):
        w.add(1, [1, 2], np.array([[0, 0, 0], [np.nan, 0, 0]], np.float32))
    with pytest.raises(InvalidArgumentError, match="float32"):
        w.add(1, [1], np.zeros((1, 3)))
    with pytest.raises(InvalidArgumentError, match="ids"):
        w.add(1, pa.array([1, None], pa.int64()), np.zeros((2, 3), np.float32))
    # coverage: exit 1 lacks ids 1 and 2; the previous file stays untouched
    with pytest.raises(InvalidStateError, match="exit 1: sample id 1"):
        w.save(path)
    assert open(path, "rb").read() == before
    w.add(1, [2, 1], np.ones((2, 3), np.float32))
    with pytest.raises(ExitnetIOError, match="path"):
        w.save(str(tmp_path / "missing" / "t.arrow"))
    w.save(path)
    assert sorted(os.listdir(tmp_path)) == ["t.arrow"], "no temporary file left behind"
    np.testing.assert_array_equal(distill.read_targets(path).gather([2], 1), np.ones((1, 3), np.float32))
    w.close()
    w.close()
    with pytest.raises(InvalidStateError, match="closed"):
        w.add(0, [9], np.zeros((1, 3), np.float32))
    with pytest.raises(InvalidArgumentError, match="num_exits"):
        distill.TargetWriter(num_exits=0, num_classes=3)
    # an exception inside the with block does not save
    p2 = str(tmp_path / "never.arrow")
    with pytest.raises(RuntimeError):
        with distill.TargetWriter(p2, num_exits=1, num_classes=2) as w2:
            w2.add(0, [1], np.zeros((1, 2), np.float32))
            raise RuntimeError("boom")
    assert not os.path.exists(p2)


def test_handle_misuse():
    st_h = ctypes.c_void_p()
    # freed handle, double free, foreign handle, NULL
    w = distill.TargetWriter(num_exits=1, num_classes=2)
    h = ctypes.c_void_p(w._h.value)
    w.close()
    assert not w._h
    with pytest.raises(InvalidStateError, match="not a live exitnet handle"):
        _lib.call("exitnet_targets_writer_free", ctypes.byref(h))
    with pytest.raises(InvalidStateError, match="not a live exitnet handle"):
        _lib.call("exitnet_targets_writer_save", h, b"/tmp/x.arrow")
    ids = ArrowIn(pa.array([1], pa.int64()))
    lg = ArrowIn(as_matrix(np.zeros((1, 2), np.float32), "l"))
    with pytest.raises(InvalidStateError):
        _lib.call("exitnet_targets_writer_add", h, 0, ids.array, ids.schema, lg.array, lg.schema)
    assert not ids._a.release and not lg._a.release, "inputs moved in even for a dead handle"
    foreign = ctypes.c_void_p(0xDEADBEE0)
    with pytest.raises(InvalidStateError):
        _lib.call("exitnet_targets_gather_raw", None, 0, foreign, None, 0, 0)
    with pytest.raises(InvalidArgumentError, match="NULL handle"):
        _lib.call("exitnet_targets_shape", None, None, None, None)
    _lib.call("exitnet_targets_free", None)
    _lib.call("exitnet_targets_free", ctypes.byref(st_h))  # pointer to NULL
    with pytest.raises(InvalidArgumentError, match="path"):
        _lib.call("exitnet_targets_open", ctypes.byref(st_h), None)
    with pytest.raises(InvalidArgumentError, match="out"):
        _lib.call("exitnet_targets_open", None, b"/tmp/x")


def test_wrong_handle_type(tmp_path):
    path = write_store(str(tmp_path / "t.arrow"), np.arange(5), 1, 2)
    st = distill.TargetStore(path)
    with pytest.raises(InvalidStateError, match="wrong type"):
        _lib.call("exitnet_targets_writer_save", st._h, path.encode())
    st.close()
    with pytest.raises(InvalidStateError, match="closed"):
        st.gather([1], 0)
    st.close()


def test_truncated_and_corrupted_files(tmp_path):
    path = write_store(str(tmp_path / "t.arrow"), np.arange(30), 2, 5)
    good = open(path, "rb").read()
    bad = str(tmp_path / "bad.arrow")
    for n in list(range(0, len(good), max(1, len(good) // 60))) + [len(good) - 1]:
        open(bad, "wb").write(good[:n])
        with pytest.raises(ExitnetIOError):
            distill.TargetStore(bad)
        with pytest.raises(ExitnetIOError):
            distill.read_targets(bad)
    rng = np.random.default_rng(0)
    for _ in range(200):
        b = bytearray(good)
        b[rng.integers(len(b))] ^= int(rng.integers(1, 256))
        open(bad, "wb").write(bytes(b))
        try:
            st = distill.TargetStore(bad)
        except ExitnetIOError:
            continue
        st.gather(st.num_rows and [0] or [], 0) if st.num_rows else None
        st.close()
    for _ in range(200):  # the pure-Python reader too: an IO error or a valid file, never a crash
        b = bytearray(good)
        b[rng.integers(len(b))] ^= int(rng.integers(1, 256))
        open(bad, "wb").write(bytes(b))
        try:
            f = distill.read_targets(bad)
        except ExitnetIOError:
            continue
        if f.num_rows:
            f.gather(f.ids[:3], 0)
        f.close()
    with pytest.raises(ExitnetIOError):
        distill.TargetStore(str(tmp_path / "missing.arrow"))
    with pytest.raises(ExitnetIOError):
        distill.read_targets(str(tmp_path / "missing.arrow"))
    # a valid Arrow file of another kind
    other = str(tmp_path / "other.arrow")
    with pa.OSFile(other, "wb") as fh, pa.ipc.new_file(fh, pa.schema([("x", pa.int64())])) as wr:
        wr.write_table(pa.table({"x": [1, 2]}))
    with pytest.raises(ExitnetIOError, match="lwf_targets"):
        distill.TargetStore(other)
    with pytest.raises(ExitnetIOError, match="lwf_targets"):
        distill.read_targets(other)


def test_concurrent_gathers(tmp_path):
    ids = np.arange(0, 9000, 3)
    path = write_store(str(tmp_path / "t.arrow"), ids, 2, 16)
    q = np.random.default_rng(2).choice(ids, 256)
    want = fixture(1, q, 16)
    with distill.TargetStore(path) as st, ThreadPoolExecutor(8) as ex:
        for got in ex.map(lambda _: st.gather(q, 1), range(64)):
            np.testing.assert_array_equal(got, want)


def _child_reads(path, q):
    f = distill.read_targets(path)
    return f.gather(q, 1).tolist()


def test_pure_python_reader_in_forked_worker(tmp_path):
    path = write_store(str(tmp_path / "t.arrow"), np.arange(100), 2, 4)
    assert _lib.is_loaded()  # the parent has loaded the Go library
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply(_child_reads, (path, [5, 7]))
    np.testing.assert_array_equal(np.array(got, np.float32), fixture(1, [5, 7], 4))


def test_import_and_pure_python_reader_do_not_load_the_library(tmp_path):
    path = write_store(str(tmp_path / "t.arrow"), np.arange(10), 1, 3)
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        from exitnet import _lib, distill
        f = distill.read_targets({path!r})
        assert f.gather([3], 0).shape == (1, 3)
        import torch
        distill.kd_loss_torch(torch.zeros(2, 3), torch.ones(2, 3), 2.0)
        print(_lib.is_loaded())
    """)
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), "..", "..", "python"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
