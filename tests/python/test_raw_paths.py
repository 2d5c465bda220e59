"""The raw-pointer default paths (numpy / torch CPU inputs) against the Arrow paths
(pyarrow inputs) and independent float64 / brute-force references, on ragged sizes
and non-finite inputs; which path a call takes is checked, not assumed."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from exitnet import _lib, fisher, policy
from exitnet._arrow import ArrowOut
from exitnet._errors import InvalidArgumentError, InvalidStateError


@pytest.fixture
def calls(monkeypatch):
    """The names of the C functions the wrappers call."""
    seen = []
    real = _lib.call

    def spy(name, *args):
        seen.append(name)
        return real(name, *args)

    monkeypatch.setattr(_lib, "call", spy)
    return seen


def arrow_matrix(a):
    a = np.ascontiguousarray(a, np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), a.shape[1])


def linear_ref(A, G, w):
    """S_W[o, i] = Σ_n w_n G[n,o]² A[n,i]², S_b[o] = Σ_n w_n G[n,o]², in float64."""
    A, G = A.astype(np.float64), G.astype(np.float64)
    w = np.ones(len(A)) if w is None else w.astype(np.float64)
    return (w[:, None] * G**2).T @ (A**2), (w[:, None] * G**2).sum(0)


def sums(acc):
    acc.add_samples(1)
    return acc.compute()


@pytest.mark.parametrize("n,din,dout", [(0, 3, 2), (1, 1, 1), (7, 9, 5), (33, 17, 8), (130, 65, 9)])
@pytest.mark.parametrize("weighted", [False, True])
def test_update_linear_raw_equals_arrow_and_reference(calls, n, din, dout, weighted):
    rng = np.random.default_rng(n * 100 + din)
    A = (rng.normal(size=(n, din)) * 3).astype(np.float32)
    G = rng.normal(size=(n, dout)).astype(np.float32)
    w = rng.random(n).astype(np.float32) if weighted else None
    lay = {"w": (dout, din), "b": (dout,)}
    with fisher.FisherAccumulator(lay) as raw, fisher.FisherAccumulator(lay) as arw, \
            fisher.FisherAccumulator(lay) as tch:
        calls.clear()
        raw.update_linear("w", "b", A, G, weights=w)
        assert calls == ["exitnet_fisher_update_linear_raw"]
        tch.update_linear("w", "b", torch.from_numpy(A), torch.from_numpy(G),
                          weights=None if w is None else torch.from_numpy(w))
        calls.clear()
        arw.update_linear("w", "b", arrow_matrix(A) if n else A, arrow_matrix(G) if n else G,
                          weights=None if w is None else pa.array(w))
        if n:
            assert calls == ["exitnet_fisher_update_linear"]
        fr, fa, ft = sums(raw), sums(arw), sums(tch)
    sw, sb = linear_ref(A, G, w)
    np.testing.assert_allclose(fr["w"], sw, rtol=2e-6, atol=1e-30)
    np.testing.assert_allclose(fr["b"], sb, rtol=2e-6, atol=1e-30)
    for k in ("w", "b"):
        assert np.array_equal(fr[k], fa[k]) and np.array_equal(fr[k], ft[k])


def test_update_linear_raw_packs_strided_and_flattens(calls):
    rng = np.random.default_rng(1)
    big = rng.normal(size=(10, 2, 6)).astype(np.float32)
    G = rng.normal(size=(10, 4)).astype(np.float32)
    A = big[:, :, ::2]  # strided (10, 2, 3): packed, flattened per row to (10, 6)
    lay = {"w": (4, 6)}
    with fisher.FisherAccumulator(lay) as acc:
        calls.clear()
        acc.update_linear("w", None, A, G)
        assert calls == ["exitnet_fisher_update_linear_raw"]
        np.testing.assert_allclose(sums(acc)["w"], linear_ref(A.reshape(10, 6), G, None)[0], rtol=2e-6)


@pytest.mark.parametrize("n,p", [(1, 13), (5, 13), (64, 13), (129, 13)])
def test_update_rows_raw_equals_arrow_and_reference(calls, n, p):
    rng = np.random.default_rng(n)
    R = rng.normal(size=(n, p)).astype(np.float32)
    w = rng.random(n).astype(np.float32)
    lay = {"u": (3,), "v": (2, 5)}
    with fisher.FisherAccumulator(lay) as raw, fisher.FisherAccumulator(lay) as arw:
        calls.clear()
        raw.update_rows(R, weights=w)
        raw.update_rows(R[:, 3:].reshape(n, 2, 5), param="v")  # strided, per-parameter
        assert calls == ["exitnet_fisher_update_rows_raw"] * 2
        calls.clear()
        arw.update_rows(arrow_matrix(R), weights=pa.array(w))
        arw.update_rows(arrow_matrix(R[:, 3:]), param="v")
        assert calls == ["exitnet_fisher_update_rows"] * 2
        fr, fa = sums(raw), sums(arw)
    R64 = R.astype(np.float64)
    ref = (w[:, None].astype(np.float64) * R64**2).sum(0)
    ref[3:] += (R64[:, 3:] ** 2).sum(0)
    got = np.concatenate([fr["u"], fr["v"].reshape(-1)])
    np.testing.assert_allclose(got, ref, rtol=2e-6)
    for k in fr:
        assert np.array_equal(fr[k], fa[k])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_same_error_both_paths(bad):
    rng = np.random.default_rng(2)
    A = rng.normal(size=(9, 5)).astype(np.float32)
    G = rng.normal(size=(9, 3)).astype(np.float32)
    G[4, 2] = bad
    lay = {"w": (3, 5)}
    msgs = []
    for a, g in ((A, G), (arrow_matrix(A), arrow_matrix(G))):
        with fisher.FisherAccumulator(lay) as acc:
            with pytest.raises(InvalidArgumentError) as e:
                acc.update_linear("w", None, a, g)
            msgs.append(str(e.value).split(": ", 1)[1])
            assert not sums(acc)["w"].any()  # nothing was added
    assert msgs[0] == msgs[1] and "grad_outputs" in msgs[0]

    R = rng.normal(size=(6, 15)).astype(np.float32)
    R[3, 7] = bad
    for r in (R, arrow_matrix(R)):
        with fisher.FisherAccumulator(lay) as acc:
            with pytest.raises(InvalidArgumentError, match='"w"'):
                acc.update_rows(r)
            with pytest.raises(InvalidStateError):
                acc.add_samples(1)


def test_raw_bad_inputs_name_the_argument():
    lay = {"w": (3, 5)}
    A = np.ones((4, 5), np.float32)
    with fisher.FisherAccumulator(lay) as acc:
        with pytest.raises(InvalidArgumentError, match="grad_outputs: 2 rows, inputs have 4"):
            acc.update_linear("w", None, A, np.ones((2, 3), np.float32))
        with pytest.raises(InvalidArgumentError, match="weights: 3 values for 4 rows"):
            acc.update_linear("w", None, A, np.ones((4, 3), np.float32), weights=np.ones(3, np.float32))
        with pytest.raises(InvalidArgumentError, match="inputs: expected float32"):
            acc.update_linear("w", None, A.astype(np.float64), np.ones((4, 3), np.float32))
        with pytest.raises(InvalidArgumentError, match="weights: row 1"):
            acc.update_rows(np.ones((2, 15), np.float32), weights=np.array([1, -1], np.float32))
        with pytest.raises(InvalidArgumentError, match="rows: 7 columns"):
            acc.update_rows(np.ones((2, 7), np.float32))
        # the C entry point itself: NULL with rows, negative and overflowing sizes
        h = acc._handle()
        for args, match in [((None, 2, 15), "rows: NULL"), ((A.ctypes.data, -2, 15), "n_rows: -2"),
                            ((A.ctypes.data, 2**62, 2**20), "n_rows, n_cols")]:
            with pytest.raises(InvalidArgumentError, match=match):
                _lib.call("exitnet_fisher_update_rows_raw", h, None, *args, None)


def brute_curve(conf, pred, y, costs):
    """{tau: (correct, hist)} by evaluating every candidate threshold directly."""
    K, N = conf.shape
    out = {}
    for t in np.unique(np.concatenate([conf[:-1].reshape(-1), [np.inf]])):
        ex = np.full(N, K - 1)
        for i in range(N):
            for k in range(K - 1):
                if conf[k, i] >= t:
                    ex[i] = k
                    break
        out[float(t)] = (int((pred[ex, np.arange(N)] == y).sum()), np.bincount(ex, minlength=K))
    return out


@pytest.mark.parametrize("K,N", [(2, 1), (3, 17), (4, 200), (6, 63)])
def test_curve_raw_equals_arrow_and_brute_force(calls, K, N):
    rng = np.random.default_rng(K * N)
    C = 5
    conf = (rng.integers(0, 6, size=(K, N)) / 5).astype(np.float32)  # ties
    conf[0, 0] = np.inf
    conf[-2, N // 2] = -np.inf
    pred = rng.integers(0, C, size=(K, N)).astype(np.int32)
    y = rng.integers(0, C, N)
    s = policy.Scores.from_arrays(conf, pred, C)
    costs = np.cumsum(rng.random(K) + 0.1)
    calls.clear()
    raw = policy.exact_curve(s, y, costs)
    assert "exitnet_policy_curve_raw" in calls
    raw32 = policy.exact_curve(s, torch.from_numpy(y.astype(np.int32)), costs)
    calls.clear()
    arw = policy.exact_curve(s, pa.array(y), costs)
    assert "exitnet_policy_curve" in calls and "exitnet_policy_curve_raw" not in calls
    assert raw.equals(arw) and raw.equals(raw32)
    ref = brute_curve(conf, pred, y, costs)
    tau = raw.column("tau").to_numpy()
    corr = raw.column("correct").to_numpy()
    hist = np.stack(raw.column("exit_histogram").to_numpy(zero_copy_only=False))
    for t, (c, h) in ref.items():
        p = np.nonzero(tau >= t)[0][-1]  # the point whose interval holds t
        assert corr[p] == c and np.array_equal(hist[p], h), t
    np.testing.assert_allclose(raw.column("mean_cost").to_numpy(), hist @ costs / N, rtol=1e-12)


def test_curve_raw_bad_inputs():
    conf = np.array([[0.2, 0.9, 0.5], [0.1, 0.3, 0.8]], np.float32)
    pred = np.zeros((2, 3), np.int32)
    s = policy.Scores.from_arrays(conf, pred, 3)
    with pytest.raises(InvalidArgumentError, match="labels: value 4294967296 at index 1 does not fit in int32"):
        policy.exact_curve(s, np.array([0, 2**32, 1]))
    with pytest.raises(InvalidArgumentError, match="labels: 2 values, the scores have 3 samples"):
        policy.exact_curve(s, np.array([0, 1]))
    with pytest.raises(InvalidArgumentError, match="labels"):
        policy.exact_curve(s, np.array([0, 3, 1]))
    bad = conf.copy()
    bad[1, 2] = np.nan
    with pytest.raises(InvalidArgumentError, match="NaN at exit 1, row 2"):
        policy.exact_curve(policy.Scores.from_arrays(bad, pred, 3), np.array([0, 1, 2]))
    with pytest.raises(InvalidArgumentError, match="predictions: value 4294967297 at index 0"):
        policy.exact_curve(policy.Scores(conf, np.full((2, 3), 2**32 + 1, np.int64), 3), np.array([0, 1, 2]))
    # the C entry point itself
    out = ArrowOut()
    c = np.ones(2, np.float64)
    for args, match in [((None, pred.ctypes.data, np.zeros(3, np.int64).ctypes.data, 2, 3), "conf: NULL"),
                        ((conf.ctypes.data, pred.ctypes.data, None, 2, 3), "labels: NULL"),
                        ((conf.ctypes.data, pred.ctypes.data, None, 70000, 3), "n_exits: 70000"),
                        ((conf.ctypes.data, pred.ctypes.data, None, 2, 2**60), "n_exits, n_samples")]:
        with pytest.raises(InvalidArgumentError, match=match):
            _lib.call("exitnet_policy_curve_raw", out.array, out.schema, *args, 3, c.ctypes.data)


@pytest.mark.parametrize("P,K", [(1, 1), (37, 2), (1037, 3)])
def test_ewc_penalty_raw_equals_reference(calls, P, K):
    """The numpy penalty goes through exitnet_ewc_penalty_raw and equals a float64 loop."""
    rng = np.random.default_rng(P + K)
    th = rng.normal(size=(P,)).astype(np.float32)
    an = [rng.normal(size=(P,)).astype(np.float32) for _ in range(K)]
    fi = [rng.random(P).astype(np.float32) for _ in range(K)]
    lam = 2.5
    v, g = fisher.ewc_penalty({"w": th}, [{"w": f} for f in fi], [{"w": a} for a in an], lam)
    d = [th.astype(np.float64) - a for a in an]
    want_v = lam / 2 * sum((f.astype(np.float64) * dk * dk).sum() for f, dk in zip(fi, d))
    want_g = lam * sum(f.astype(np.float64) * dk for f, dk in zip(fi, d))
    assert abs(v - want_v) <= 1e-6 * abs(want_v)
    np.testing.assert_allclose(g["w"], want_g, rtol=2e-5, atol=1e-6)
    assert "exitnet_ewc_penalty_raw" in calls and "exitnet_ewc_penalty_into" not in calls


def test_ewc_penalty_raw_bad_inputs():
    x = np.ones(10, np.float32)
    with pytest.raises(InvalidArgumentError, match="out_grad: overlaps params"):
        fisher.ewc_penalty({"a": x}, {"a": x * 2}, {"a": x * 0}, 1.0, out={"a": x})
    with pytest.raises(InvalidArgumentError, match="fishers: Fisher 0 has 9 elements, params have 10"):
        fisher.ewc_penalty({"a": x}, {"a": x[:9]}, {"a": x * 0}, 1.0)
    with pytest.raises(InvalidArgumentError, match="anchors: anchor 1 has 3 elements"):
        fisher.ewc_penalty({"a": x}, [{"a": x}, {"a": x}], [{"a": x}, {"a": x[:3]}], 1.0)
    with pytest.raises(InvalidArgumentError, match="lambda"):
        fisher.ewc_penalty({"a": x}, {"a": x}, {"a": x * 0}, -1.0)


def test_update_squared_raw_equals_arrow(calls):
    """numpy squares take exitnet_fisher_update_squared_raw; pyarrow ones the Arrow path; same sums."""
    rng = np.random.default_rng(5)
    sq = rng.random((3, 7)).astype(np.float32)
    accs = [fisher.FisherAccumulator({"w": (3, 7), "b": (3,)}) for _ in range(2)]
    accs[0].update_squared("w", sq, 4)
    accs[1].update_squared("w", pa.array(sq.reshape(-1)), 4)
    upd = [c for c in calls if c.startswith("exitnet_fisher_update_squared")]
    assert upd == ["exitnet_fisher_update_squared_raw", "exitnet_fisher_update_squared"]
    for a in accs:
        a.add_samples(4)
    s0, s1 = accs[0].compute(), accs[1].compute()
    np.testing.assert_array_equal(s0["w"], s1["w"])
    np.testing.assert_allclose(s0["w"], sq.astype(np.float64) / 4, rtol=1e-7)
    accs[0].update_squared("b", torch.ones(3), 1)  # a CPU tensor, raw too
    assert calls.count("exitnet_fisher_update_squared_raw") == 2
    with pytest.raises(InvalidArgumentError, match='"b" has 3 elements'):
        accs[0].update_squared("b", np.ones(4, np.float32), 1)
    with pytest.raises(InvalidArgumentError, match="negative|non-finite|NaN"):
        accs[0].update_squared("b", np.array([1, np.nan, 1], np.float32), 1)
    for a in accs:
        a.close()
