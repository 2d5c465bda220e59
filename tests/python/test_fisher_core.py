"""exitnet.fisher against independent references: numpy float64 loops, per-sample
torch.autograd loops in float64, closed-form formulas and finite differences."""

import ctypes
import gc
import os

import numpy as np
import pyarrow as pa
import pytest
import torch
import torch.nn.functional as F

from exitnet import _lib, fisher
from exitnet._errors import (
    ExitnetIOError,
    InvalidArgumentError,
    InvalidStateError,
    NotFoundError,
)


def _counter(name):
    out = ctypes.c_int64()
    _lib.call(name, ctypes.byref(out))
    return out.value


@pytest.fixture
def no_leaks():
    """Every C-heap result and every handle created inside the test is released."""
    gc.collect()
    fisher.class_probs(np.zeros((1, 2), np.float32))  # load the library
    gc.collect()
    b0, h0 = _counter("exitnet_allocated_bytes"), _counter("exitnet_live_handles")
    yield
    gc.collect()
    assert _counter("exitnet_allocated_bytes") == b0
    assert _counter("exitnet_live_handles") == h0


def rng(seed=0):
    return np.random.default_rng(seed)


# ---- rows ---------------------------------------------------------------------

@pytest.mark.parametrize("n,p", [(1, 1), (3, 7), (17, 2051), (64, 4099)])
@pytest.mark.parametrize("weighted", [False, True])
def test_rows_vs_numpy_float64(n, p, weighted, no_leaks):
    r = rng(n * p)
    rows = r.standard_normal((n, p)).astype(np.float32)
    w = r.random(n).astype(np.float32) if weighted else None
    with fisher.FisherAccumulator({"x": (p,)}, label_mode="empirical") as acc:
        acc.update_rows(rows, weights=w)
        acc.add_samples(n)
        sums, count = acc.state()
        F_ = acc.compute()["x"]
    ww = np.ones(n) if w is None else w.astype(np.float64)
    ref = (ww[:, None] * rows.astype(np.float64) ** 2).sum(0)
    assert count == n
    np.testing.assert_allclose(sums["x"], ref, rtol=1e-12)
    np.testing.assert_allclose(F_, ref / n, rtol=1e-6)


def test_rows_per_param_and_torch_input(no_leaks):
    r = rng(1)
    layout = {"a.weight": (3, 4), "a.bias": (3,), "b": (5,)}
    with fisher.FisherAccumulator(layout) as acc:
        g = r.standard_normal((6, 3, 4)).astype(np.float32)
        acc.update_rows(torch.from_numpy(g), param="a.weight")
        full = r.standard_normal((6, 20)).astype(np.float32)
        acc.update_rows(full)
        acc.add_samples(6)
        out = acc.compute()
    ref = (full.astype(np.float64) ** 2).sum(0) / 6
    ref[:12] += (g.reshape(6, 12).astype(np.float64) ** 2).sum(0) / 6
    np.testing.assert_allclose(out["a.weight"].ravel(), ref[:12], rtol=1e-6)
    np.testing.assert_allclose(out["a.bias"], ref[12:15], rtol=1e-6)
    np.testing.assert_allclose(out["b"], ref[15:], rtol=1e-6)
    assert out["a.weight"].shape == (3, 4)


def test_million_samples_precision():
    r = rng(2)
    p = 16
    scale = np.linspace(1e-3, 1e3, p)
    ref = np.zeros(p)
    with fisher.FisherAccumulator({"x": (p,)}, label_mode="sampled") as acc:
        for _ in range(10):
            rows = (r.standard_normal((100_000, p)) * scale).astype(np.float32)
            ref += (rows.astype(np.float64) ** 2).sum(0)
            acc.update_rows(rows)
            acc.add_samples(rows.shape[0])
        sums, count = acc.state()
        out = acc.compute()["x"]
    assert count == 1_000_000
    np.testing.assert_allclose(sums["x"], ref, rtol=1e-12)
    np.testing.assert_allclose(out, ref / 1e6, rtol=1e-7)


# ---- Linear -------------------------------------------------------------------

def per_sample_linear_ref(W, b, X, y, weights=None, label_rows=None):
    """Σ_n w_n (∇_W ℓ_n)², (∇_b ℓ_n)² by an explicit loop of torch.autograd in float64."""
    W = torch.tensor(W, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    sw, sb = torch.zeros_like(W), torch.zeros_like(b)
    for n in range(X.shape[0]):
        z = torch.tensor(X[n], dtype=torch.float64) @ W.T + b
        loss = F.cross_entropy(z[None], torch.tensor([int(y[n])]), reduction="sum")
        gw, gb = torch.autograd.grad(loss, (W, b))
        wn = 1.0 if weights is None else float(weights[n])
        sw += wn * gw**2
        sb += wn * gb**2
    return sw.numpy(), sb.numpy()


def linear_factors(W, b, X, y):
    """A = X and G = ∂ℓ_n/∂z_n for a float32 Linear + cross entropy (sum-reduced)."""
    lin = torch.nn.Linear(W.shape[1], W.shape[0])
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(W))
        lin.bias.copy_(torch.from_numpy(b))
    x = torch.from_numpy(X)
    z = lin(x)
    z.retain_grad()
    F.cross_entropy(z, torch.from_numpy(y).long(), reduction="sum").backward()
    return X, z.grad.numpy().astype(np.float32)


@pytest.mark.parametrize("n,i,o", [(1, 1, 2), (8, 5, 3), (64, 33, 10)])
def test_linear_vs_per_sample_autograd(n, i, o, no_leaks):
    r = rng(n + i + o)
    W = r.standard_normal((o, i)).astype(np.float32)
    b = r.standard_normal(o).astype(np.float32)
    X = r.standard_normal((n, i)).astype(np.float32)
    y = r.integers(0, o, n)
    A, G = linear_factors(W, b, X, y)
    with fisher.FisherAccumulator({"fc.weight": (o, i), "fc.bias": (o,)}, label_mode="empirical") as acc:
        acc.update_linear("fc.weight", "fc.bias", A, G)
        acc.add_samples(n)
        out = acc.compute()
    rw, rb = per_sample_linear_ref(W, b, X, y)
    np.testing.assert_allclose(out["fc.weight"], rw / n, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(out["fc.bias"], rb / n, rtol=1e-4, atol=1e-7)


def test_linear_exact_label_mode_weights(no_leaks):
    """exact: Σ_n Σ_c p(c|x_n) (∇ℓ(x_n, c))², rows = (sample, class) pairs weighted by p."""
    r = rng(5)
    n, i, o = 6, 4, 3
    W = r.standard_normal((o, i)).astype(np.float32)
    b = r.standard_normal(o).astype(np.float32)
    X = r.standard_normal((n, i)).astype(np.float32)
    logits = X @ W.T + b
    p = fisher.class_probs(logits)
    Xr = np.repeat(X, o, axis=0)
    yr = np.tile(np.arange(o), n)
    A, G = linear_factors(W, b, Xr, yr)
    with fisher.FisherAccumulator({"w": (o, i), "b": (o,)}, label_mode="exact") as acc:
        acc.update_linear("w", "b", A, G, weights=p.reshape(-1))
        acc.add_samples(n)
        out = acc.compute()
    rw, rb = per_sample_linear_ref(W, b, Xr, yr, weights=p.reshape(-1).astype(np.float64))
    np.testing.assert_allclose(out["w"], rw / n, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(out["b"], rb / n, rtol=1e-4, atol=1e-7)


# ---- Conv2d -------------------------------------------------------------------

CONV_CASES = [
    dict(cin=2, cout=3, k=(3, 3), stride=1, padding=0, dilation=1, groups=1, hw=(6, 5)),
    dict(cin=3, cout=4, k=(3, 2), stride=(2, 1), padding=(1, 2), dilation=1, groups=1, hw=(7, 8)),
    dict(cin=2, cout=2, k=(3, 3), stride=(1, 2), padding=2, dilation=(2, 3), groups=1, hw=(9, 9)),
    dict(cin=4, cout=6, k=(3, 3), stride=1, padding=1, dilation=1, groups=2, hw=(6, 6)),
    dict(cin=4, cout=8, k=(3, 3), stride=2, padding=1, dilation=1, groups=4, hw=(5, 7)),  # depthwise ×2
    dict(cin=3, cout=3, k=(1, 1), stride=1, padding=0, dilation=1, groups=3, hw=(4, 4)),  # depthwise 1x1
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"g{c['groups']}s{c['stride']}p{c['padding']}d{c['dilation']}")
def test_conv2d_vs_per_sample_autograd(case, no_leaks):
    r = rng(7)
    n = 5
    cin, cout, (kh, kw) = case["cin"], case["cout"], case["k"]
    conv = torch.nn.Conv2d(cin, cout, (kh, kw), stride=case["stride"], padding=case["padding"],
                           dilation=case["dilation"], groups=case["groups"]).double()
    x = torch.from_numpy(r.standard_normal((n, cin) + case["hw"]))
    with torch.no_grad():
        yshape = conv(x).shape
    gout = torch.from_numpy(r.standard_normal(yshape))
    wts = r.random(n) + 0.5
    # reference: per-sample autograd loop in float64, ℓ_n = <conv(x_n), gout_n>
    sw = torch.zeros_like(conv.weight)
    sb = torch.zeros_like(conv.bias)
    for s in range(n):
        loss = (conv(x[s:s + 1]) * gout[s:s + 1]).sum()
        gw, gb = torch.autograd.grad(loss, (conv.weight, conv.bias))
        sw += wts[s] * gw**2
        sb += wts[s] * gb**2
    layout = {"c.weight": tuple(conv.weight.shape), "c.bias": (cout,)}
    with fisher.FisherAccumulator(layout, label_mode="sampled") as acc:
        acc.update_conv2d("c.weight", "c.bias", x.float(), gout.float(), stride=case["stride"],
                          padding=case["padding"], dilation=case["dilation"], groups=case["groups"],
                          weights=wts.astype(np.float32))
        acc.add_samples(n)
        out = acc.compute()
    np.testing.assert_allclose(out["c.weight"], sw.numpy() / n, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["c.bias"], sb.numpy() / n, rtol=1e-4, atol=1e-6)


def test_conv2d_bad_geometry(no_leaks):
    with fisher.FisherAccumulator({"w": (4, 2, 3, 3), "b": (4,)}) as acc:
        x = np.zeros((2, 2, 6, 6), np.float32)
        g = np.zeros((2, 4, 4, 4), np.float32)
        acc.update_conv2d("w", "b", x, g)  # valid
        with pytest.raises(InvalidArgumentError, match="height"):
            acc.update_conv2d("w", "b", x, np.zeros((2, 4, 3, 4), np.float32))
        with pytest.raises(InvalidArgumentError, match="stride"):
            acc.update_conv2d("w", "b", x, g, stride=0)
        with pytest.raises(InvalidArgumentError, match="groups"):
            acc.update_conv2d("w", "b", x, g, groups=3)
        with pytest.raises(InvalidArgumentError, match="weight"):
            acc.update_conv2d("w", "b", x, g, groups=2)  # weight would be (4, 1, 3, 3)
        with pytest.raises(InvalidArgumentError, match="samples"):
            acc.update_conv2d("w", "b", x, g[:1])
        with pytest.raises(InvalidArgumentError, match="4-D"):
            acc.update_conv2d("w", "b", x[0], g)
        bad = x.copy()
        bad[1, 0, 2, 2] = np.inf
        with pytest.raises(InvalidArgumentError, match="'w'|\"w\""):
            acc.update_conv2d("w", "b", bad, g)


# ---- squared, batched, merge, state ---------------------------------------------

def test_update_squared_and_batched_scaling(no_leaks):
    r = rng(8)
    with fisher.FisherAccumulator({"bn.weight": (4,)}, label_mode="argmax") as acc:
        sq = r.random(4).astype(np.float32)
        acc.update_squared("bn.weight", sq, 10)
        acc.add_samples(10)
        np.testing.assert_allclose(acc.compute()["bn.weight"], sq.astype(np.float64) / 10, rtol=1e-6)
        with pytest.raises(InvalidArgumentError, match="bn.weight"):
            acc.update_squared("bn.weight", -sq, 10)
    # batched: squared mean minibatch gradients; F = Σ_b B_b m_b² / Σ_b B_b
    g = r.standard_normal((12, 4))
    sizes = [4, 4, 4]
    with fisher.FisherAccumulator({"bn.weight": (4,)}, label_mode="batched") as acc:
        assert acc.granularity == "batched"
        ref = 0
        for k, B in enumerate(sizes):
            m = g[4 * k:4 * k + B].mean(0)
            acc.update_squared("bn.weight", (m**2).astype(np.float32), B)
            acc.add_samples(B)
            ref = ref + m**2
        np.testing.assert_allclose(acc.compute()["bn.weight"], ref / len(sizes), rtol=1e-6)
        with pytest.raises(InvalidStateError, match="batched"):
            acc.update_rows(np.zeros((1, 4), np.float32))


def test_merge_equals_one_pass(no_leaks):
    r = rng(9)
    layout = {"w": (5, 3), "b": (5,)}
    A = r.standard_normal((40, 3)).astype(np.float32)
    G = r.standard_normal((40, 5)).astype(np.float32)
    with fisher.FisherAccumulator(layout) as one, fisher.FisherAccumulator(layout) as x, \
            fisher.FisherAccumulator(layout) as y:
        one.update_linear("w", "b", A, G)
        one.add_samples(40)
        x.update_linear("w", "b", A[:15], G[:15])
        x.add_samples(15)
        y.update_linear("w", "b", A[15:], G[15:])
        y.add_samples(25)
        x.merge(y)
        assert x.n_samples == 40
        for k, v in one.compute().items():
            np.testing.assert_allclose(x.compute()[k], v, rtol=1e-6)
        # state -> load_state round trip (the all-reduce path)
        sums, cnt = x.state()
        with fisher.FisherAccumulator(layout) as z:
            z.load_state(sums, cnt)
            np.testing.assert_array_equal(z.compute()["w"], x.compute()["w"])
        with fisher.FisherAccumulator(layout, label_mode="sampled") as other:
            with pytest.raises(InvalidArgumentError, match="label mode"):
                x.merge(other)
        with fisher.FisherAccumulator({"w": (3, 5), "b": (5,)}) as other:
            with pytest.raises(InvalidArgumentError, match="layout"):
                x.merge(other)
        x.reset()
        assert x.n_samples == 0
        with pytest.raises(InvalidStateError, match="no samples"):
            x.compute()


def test_bad_inputs_python(no_leaks):
    with pytest.raises(InvalidArgumentError, match="label_mode"):
        fisher.FisherAccumulator({"w": (2,)}, label_mode="fancy")
    with pytest.raises(InvalidArgumentError, match="negative"):
        fisher.FisherAccumulator({"w": (2, -1)})
    acc = fisher.FisherAccumulator({"w": (2, 3), "b": (2,)})
    with pytest.raises(InvalidArgumentError, match="8"):
        acc.update_rows(np.zeros((2, 7), np.float32))
    with pytest.raises(NotFoundError, match="nope"):
        acc.update_rows(np.zeros((2, 2), np.float32), param="nope")
    with pytest.raises(InvalidArgumentError, match="float32"):
        acc.update_rows(np.zeros((2, 8), np.float64))
    with pytest.raises(InvalidArgumentError, match="weights"):
        acc.update_rows(np.zeros((2, 8), np.float32), weights=np.ones(3, np.float32))
    with pytest.raises(InvalidArgumentError, match="weights"):
        acc.update_rows(np.zeros((2, 8), np.float32), weights=-np.ones(2, np.float32))
    with pytest.raises(InvalidArgumentError, match="weight"):
        acc.update_linear("w", "b", np.zeros((4, 2), np.float32), np.zeros((4, 3), np.float32))
    with pytest.raises(InvalidArgumentError, match="rows"):
        acc.update_linear("w", "b", np.zeros((4, 3), np.float32), np.zeros((5, 2), np.float32))
    with pytest.raises(InvalidArgumentError, match="'w'|\"w\""):
        acc.update_linear("w", "b", np.zeros((4, 3), np.float32), np.full((4, 2), np.nan, np.float32))
    bad = np.zeros((2, 8), np.float32)
    bad[1, 6] = np.nan
    with pytest.raises(InvalidArgumentError, match='"b"'):
        acc.update_rows(bad)
    with pytest.raises(InvalidStateError, match="Reset"):
        acc.add_samples(1)
    acc.reset()
    with pytest.raises(InvalidArgumentError, match="n"):
        acc.add_samples(-1)
    with pytest.raises(InvalidArgumentError, match="n"):
        acc.update_squared("b", np.ones(2, np.float32), 0)
    with pytest.raises(InvalidStateError, match="no samples"):
        acc.compute()
    acc.close()
    acc.close()
    with pytest.raises(InvalidStateError, match="close"):
        acc.add_samples(1)
    assert "closed" in repr(acc)


# ---- labels ---------------------------------------------------------------------

def test_sample_labels_and_class_probs(no_leaks):
    r = rng(10)
    logits = r.standard_normal((4, 5)).astype(np.float32) * 3
    z = logits.astype(np.float64)
    p_ref = np.exp(z - z.max(1, keepdims=True))
    p_ref /= p_ref.sum(1, keepdims=True)
    np.testing.assert_allclose(fisher.class_probs(logits), p_ref, rtol=1e-6, atol=1e-7)
    big = np.repeat(logits[:1], 40_000, axis=0)
    lab = fisher.sample_labels(big, seed=3)
    assert lab.dtype == np.int32 and lab.shape == (40_000,)
    freq = np.bincount(lab, minlength=5) / 40_000
    sd = np.sqrt(p_ref[0] * (1 - p_ref[0]) / 40_000)
    assert np.all(np.abs(freq - p_ref[0]) < 5 * sd + 1e-12)
    # deterministic, and batching with row_offset agrees with one call
    np.testing.assert_array_equal(lab, fisher.sample_labels(big, seed=3))
    parts = np.concatenate([fisher.sample_labels(big[:1000], 3), fisher.sample_labels(big[1000:], 3, row_offset=1000)])
    np.testing.assert_array_equal(lab, parts)
    assert not np.array_equal(lab, fisher.sample_labels(big, seed=4))
    with pytest.raises(InvalidArgumentError, match="logits"):
        fisher.sample_labels(np.full((2, 3), np.nan, np.float32), 1)


# ---- consolidation and penalty ---------------------------------------------------

def test_consolidate_formulas(no_leaks):
    r = rng(11)
    fs = [{"a": r.random((2, 3)).astype(np.float32), "b": r.random(4).astype(np.float32)} for _ in range(3)]
    f64 = [{k: v.astype(np.float64) for k, v in f.items()} for f in fs]
    out = fisher.consolidate(fs, mode="sum")
    np.testing.assert_allclose(out["a"], f64[0]["a"] + f64[1]["a"] + f64[2]["a"], rtol=1e-6)
    out = fisher.consolidate(fs, mode="weighted", weights=[0.5, 2, 1])
    np.testing.assert_allclose(out["b"], 0.5 * f64[0]["b"] + 2 * f64[1]["b"] + f64[2]["b"], rtol=1e-6)
    g = 0.7
    out = fisher.consolidate(fs, mode="online", gamma=g)
    ref = f64[0]["a"]
    for f in f64[1:]:
        ref = g * ref + f["a"]
    np.testing.assert_allclose(out["a"], ref, rtol=1e-6)
    sep = fisher.consolidate(fs, mode="separate")
    assert len(sep) == 3 and np.array_equal(sep[1]["a"], fs[1]["a"])
    for bad in (0.0, -1.0, 1.5, float("nan")):
        with pytest.raises(InvalidArgumentError, match="gamma"):
            fisher.consolidate(fs, mode="online", gamma=bad)
    with pytest.raises(InvalidArgumentError, match="mode"):
        fisher.consolidate(fs, mode="max")
    with pytest.raises(InvalidArgumentError, match="weights"):
        fisher.consolidate(fs, mode="weighted", weights=[1.0])
    with pytest.raises(InvalidArgumentError, match="fishers"):
        fisher.consolidate([fs[0], {"a": fs[1]["a"]}], mode="sum")


def test_penalty_value_and_finite_differences(no_leaks):
    r = rng(12)
    shapes = {"w": (7, 9), "b": (13,)}
    params = {k: r.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    anchors = [{k: r.standard_normal(s).astype(np.float32) for k, s in shapes.items()} for _ in range(2)]
    fishers = [{k: r.random(s).astype(np.float32) for k, s in shapes.items()} for _ in range(2)]
    lam = 2.5

    def f64(theta):
        return lam / 2 * sum(float((fk[k].astype(np.float64) * (theta[k].astype(np.float64) - ak[k]) ** 2).sum())
                             for ak, fk in zip(anchors, fishers) for k in shapes)

    val, grad = fisher.ewc_penalty(params, fishers, anchors, lam)
    assert val == pytest.approx(f64(params), rel=1e-6)
    h = 1e-3
    for k, idx in (("w", (3, 4)), ("b", (12,)), ("w", (0, 0))):
        tp = {n: v.astype(np.float64) for n, v in params.items()}
        tm = {n: v.astype(np.float64) for n, v in params.items()}
        tp[k][idx] += h
        tm[k][idx] -= h
        fd = (f64(tp) - f64(tm)) / (2 * h)
        assert grad[k][idx] == pytest.approx(fd, rel=1e-4, abs=1e-5)
    # out=: written in place, same result
    out = {k: np.full(s, 7, np.float32) for k, s in shapes.items()}
    val2, grad2 = fisher.ewc_penalty(params, fishers, anchors, lam, out=out)
    assert val2 == val and grad2["w"] is out["w"]
    np.testing.assert_array_equal(out["b"], grad["b"])
    with pytest.raises(InvalidArgumentError, match="out"):
        fisher.ewc_penalty(params, fishers, anchors, lam, out={"w": np.zeros((9, 7), np.float32)})
    # a single (anchor, fisher) pair as plain mappings
    v1, _ = fisher.ewc_penalty(params, fishers[0], anchors[0], lam)
    assert v1 < val
    with pytest.raises(InvalidArgumentError, match="lambda"):
        fisher.ewc_penalty(params, fishers, anchors, -1.0)
    with pytest.raises(InvalidArgumentError, match="anchors"):
        fisher.ewc_penalty(params, fishers, anchors[:1], 1.0)
    with pytest.raises(InvalidArgumentError, match="lacks"):
        fisher.ewc_penalty(params, [fishers[0]], [{"w": anchors[0]["w"]}], 1.0)


# ---- state file ------------------------------------------------------------------

def _state_args(r):
    shapes = {"conv.weight": (4, 2, 3, 3), "conv.bias": (4,), "fc.weight": (3, 8)}
    fishers = [{k: r.random(s).astype(np.float32) for k, s in shapes.items()} for _ in range(2)]
    anchors = [{k: r.standard_normal(s).astype(np.float32) for k, s in shapes.items()}]
    meta = {"n_samples": [500, 300], "label_mode": "exact", "granularity": "per_sample",
            "normalisation": "mean_over_samples", "lam": 100.0}
    return fishers, anchors, meta


def test_state_round_trip_and_pyarrow(tmp_path, no_leaks):
    fishers, anchors, meta = _state_args(rng(13))
    path = tmp_path / "ewc.arrow"
    fisher.save_state(path, fishers, anchors, meta)
    f2, a2, m2 = fisher.load_state(path)
    assert m2 == meta
    assert len(f2) == 2 and len(a2) == 1
    for got, want in zip(f2 + a2, fishers + anchors):
        assert list(got) == list(want)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    t = pa.ipc.open_file(str(path)).read_all()  # plain Arrow, readable without exitnet
    assert t.column_names == ["fisher/0", "fisher/1", "anchor/0"]


def test_state_corruption_and_atomic_save(tmp_path, no_leaks):
    fishers, anchors, meta = _state_args(rng(14))
    path = tmp_path / "ewc.arrow"
    fisher.save_state(path, fishers, anchors, meta)
    data = path.read_bytes()
    bad = tmp_path / "bad.arrow"
    for cut in (0, 7, len(data) // 3, len(data) - 1):
        bad.write_bytes(data[:cut])
        with pytest.raises(ExitnetIOError):
            fisher.load_state(bad)
    for pos in (10, len(data) // 2, len(data) - 20):
        c = bytearray(data)
        c[pos] ^= 0xFF
        bad.write_bytes(bytes(c))
        with pytest.raises(ExitnetIOError):
            fisher.load_state(bad)
    with pytest.raises(ExitnetIOError):
        fisher.load_state(tmp_path / "missing.arrow")
    # a failed save (NaN Fisher, or unwritable place) leaves the previous file intact
    f_bad = [dict(fishers[0])]
    f_bad[0]["fc.weight"] = np.full((3, 8), np.nan, np.float32)
    with pytest.raises(InvalidArgumentError, match="fishers"):
        fisher.save_state(path, f_bad, anchors, meta)
    with pytest.raises(ExitnetIOError):
        fisher.save_state(tmp_path / "no" / "dir.arrow", fishers, anchors, meta)
    assert path.read_bytes() == data
    assert sorted(os.listdir(tmp_path)) == ["bad.arrow", "ewc.arrow"]
    with pytest.raises(InvalidArgumentError, match="shape"):
        fisher.save_state(path, [fishers[0], {k: v.ravel() for k, v in fishers[1].items()}], anchors, meta)


def test_accumulator_checkpoint(tmp_path, no_leaks):
    r = rng(15)
    layout = {"w": (4, 3), "b": (4,)}
    with fisher.FisherAccumulator(layout, label_mode="sampled") as acc:
        acc.update_linear("w", "b", r.standard_normal((9, 3)).astype(np.float32),
                          r.standard_normal((9, 4)).astype(np.float32))
        acc.add_samples(9)
        acc.save(tmp_path / "acc.arrow")
        with fisher.FisherAccumulator.load(tmp_path / "acc.arrow") as back:
            assert back.n_samples == 9 and back.label_mode == "sampled" and back.layout == layout
            s1, s2 = acc.state()[0], back.state()[0]
            for k in s1:
                np.testing.assert_array_equal(s1[k], s2[k])
            back.merge(acc)  # same layout and label mode
            assert back.n_samples == 18
        f, a, meta = fisher.load_state(tmp_path / "acc.arrow")
        assert meta["n_samples"] == 9 and meta["label_mode"] == "sampled" and len(f) == 1 and not a
        np.testing.assert_allclose(f[0]["w"], acc.compute()["w"])
    fisher.save_state(tmp_path / "plain.arrow", [f[0]], [], {})
    with pytest.raises(ExitnetIOError, match="sums"):
        fisher.FisherAccumulator.load(tmp_path / "plain.arrow")
    (tmp_path / "cut.arrow").write_bytes((tmp_path / "acc.arrow").read_bytes()[:100])
    with pytest.raises(ExitnetIOError):
        fisher.FisherAccumulator.load(tmp_path / "cut.arrow")


def test_docstring_examples():
    import doctest

    assert doctest.testmod(fisher, raise_on_error=False).failed == 0
