"""exitnet.policy against numpy float64 references and brute force."""

import math

import numpy as np
import pyarrow as pa
import pytest
import torch

from exitnet import policy
from exitnet._errors import InvalidArgumentError


def ref_conf(z, measure, T=1.0):
    """float64 reference: (K, N, C) logits -> (K, N) confidences and argmax."""
    z = np.asarray(z, dtype=np.float64) / np.asarray(T, dtype=np.float64).reshape(-1, 1, 1)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    pred = np.argmax(z, axis=-1)
    if measure == "max_softmax":
        return p.max(-1), pred
    if measure == "margin":
        q = np.sort(p, axis=-1)
        return q[..., -1] - (q[..., -2] if p.shape[-1] > 1 else 0), pred
    if measure == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -np.where(p > 0, p * np.log(p), 0).sum(-1)
        return 1 - h / math.log(p.shape[-1]), pred
    if measure == "patience":
        run = np.ones(pred.shape[1:])
        out = [run.copy()]
        for k in range(1, pred.shape[0]):
            run = np.where(pred[k] == pred[k - 1], run + 1, 1)
            out.append(run.copy())
        return np.stack(out), pred
    raise ValueError(measure)


def ref_exit(conf, tau):
    """Brute-force policy: first k < K-1 with conf >= tau_k, else K-1."""
    K, N = conf.shape
    tau = np.broadcast_to(np.asarray(tau, dtype=np.float32), (K,)) if np.ndim(tau) == 0 else np.asarray(tau, np.float32)
    ex = np.full(N, K - 1)
    for k in range(K - 2, -1, -1):
        ex = np.where(conf[k] >= tau[k], k, ex)
    return ex


def ref_eval(scores, labels, tau, costs):
    ex = ref_exit(scores.confidence, tau)
    pred = scores.prediction[ex, np.arange(len(ex))]
    hist = np.bincount(ex, minlength=scores.n_exits)
    return int((pred == labels).sum()), hist, float(np.dot(hist, costs) / len(ex))


def data(seed=0, K=4, N=300, C=5, ties=True):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, N)
    z = rng.normal(size=(K, N, C))
    z[:, np.arange(N), y] += np.linspace(0.3, 2.0, K)[:, None] * rng.random((K, N)) * 2
    if ties:
        z = np.round(z * 2) / 2
    return z.astype(np.float32), y


@pytest.mark.parametrize("measure", ["max_softmax", "entropy", "margin", "patience"])
def test_confidence_vs_numpy(measure):
    z, _ = data(1, K=3, N=200, C=7, ties=False)
    T = np.array([1.0, 2.0, 0.5], dtype=np.float32)
    s = policy.confidence(z, measure, temperature=T)
    want, pred = ref_conf(z, measure, T)
    assert s.confidence.shape == (3, 200) and s.confidence.dtype == np.float32
    np.testing.assert_allclose(s.confidence, want, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(s.prediction, pred)


def test_input_forms_agree():
    z, _ = data(2, K=3, N=50, C=4)
    base = policy.confidence(z)
    forms = [
        [z[k] for k in range(3)],
        torch.from_numpy(z),
        [torch.from_numpy(z[k]) for k in range(3)],
        [pa.FixedSizeListArray.from_arrays(pa.array(z[k].reshape(-1)), 4) for k in range(3)],
        [pa.ExtensionArray.from_storage(pa.fixed_shape_tensor(pa.float32(), [4]),
                                        pa.FixedSizeListArray.from_arrays(pa.array(z[k].reshape(-1)), 4))
         for k in range(3)],
    ]
    for f in forms:
        s = policy.confidence(f)
        np.testing.assert_array_equal(s.confidence, base.confidence)
        np.testing.assert_array_equal(s.prediction, base.prediction)
    # a sliced pyarrow input (non-zero offset)
    big = pa.FixedSizeListArray.from_arrays(pa.array(np.concatenate([z[0], z[0]]).reshape(-1)), 4)
    s = policy.confidence([big.slice(50, 50)] * 3)
    np.testing.assert_array_equal(s.confidence[0], base.confidence[0])


def test_assign_vs_numpy():
    z, _ = data(3)
    s = policy.confidence(z)
    for tau in [0.5, [0.7, 0.6, 0.5, 0.0], [np.inf, -np.inf, 0.4, 9.0]]:
        t = policy.assign(s, tau)
        ex = ref_exit(s.confidence, tau)
        np.testing.assert_array_equal(t.column("exit").to_numpy(), ex)
        np.testing.assert_array_equal(t.column("prediction").to_numpy(), s.prediction[ex, np.arange(300)])
        np.testing.assert_array_equal(t.column("confidence").to_numpy(), s.confidence[ex, np.arange(300)])


@pytest.mark.parametrize("measure,ties", [("max_softmax", True), ("margin", True), ("entropy", False),
                                          ("patience", True)])
def test_exact_curve_vs_brute_force(measure, ties):
    z, y = data(4, K=4, N=250, C=4, ties=ties)
    s = policy.confidence(z, measure)
    cost = policy.CostModel([10, 20, 5, 40], [1, 2, 3, 4])
    curve = exact_curve = policy.exact_curve(s, y, cost)
    df = exact_curve.to_pandas()
    tau = curve.column("tau").to_numpy()
    assert tau[0] == np.inf and np.all(np.diff(tau) < 0)
    vals = np.unique(s.confidence[:-1])
    probes = np.concatenate([vals, np.nextafter(vals, np.float32(np.inf)), (vals[1:] + vals[:-1]) / 2,
                             [np.inf, -np.inf]]).astype(np.float32)
    seen = set()
    for t in probes:
        c, h, m = ref_eval(s, y, t, cost.costs)
        p = int(np.nonzero(tau >= t)[0][-1])  # the point whose interval holds t
        seen.add(p)
        assert df.correct[p] == c and list(df.exit_histogram[p]) == list(h)
        assert df.mean_cost[p] == pytest.approx(m, rel=1e-12)
        assert df.accuracy[p] == c / 250
        assert df.speedup[p] == pytest.approx(cost.full / m, rel=1e-12)
    assert seen == set(range(len(df)))  # every point is a distinct state that some τ reaches


def brute_points(s, y, costs):
    vals = np.concatenate([[np.inf], np.unique(s.confidence[:-1])]).astype(np.float32)
    return [ref_eval(s, y, t, costs) for t in vals]


@pytest.mark.parametrize("method", ["global", "msdnet", "per_exit"])
def test_calibrate_meets_target_on_validation(method):
    zv, yv = data(5, N=400, C=10)
    zt, yt = data(6, N=400, C=10)
    cost = policy.CostModel([100, 120, 150, 200], [10, 10, 10, 5])
    sv = policy.confidence(zv)
    for frac in [0.3, 0.5, 0.75, 1.0]:
        target = max(frac * cost.full, cost.costs[0])
        cal = policy.calibrate(zv, yv, zt, yt, target_cost=target, method=method, cost=cost)
        c, h, m = ref_eval(sv, yv, cal.thresholds, cost.costs)
        assert m <= target and cal.val.correct == c and cal.val.mean_cost == pytest.approx(m, rel=1e-12)
        tc, th, tm = ref_eval(policy.confidence(zt), yt, cal.thresholds, cost.costs)
        assert cal.test.correct == tc and list(cal.test.exit_histogram) == list(th)
        if method == "global":  # the best single τ over every distinct τ
            best = max(p[0] for p in brute_points(sv, yv, cost.costs) if p[2] <= target)
            assert cal.val.correct == best
    last_acc = float(np.mean(sv.prediction[-1] == yv))
    for acc in [0.3, 0.5, last_acc]:
        cal = policy.calibrate(zv, yv, target_accuracy=acc, method=method, cost=cost)
        c, _, m = ref_eval(sv, yv, cal.thresholds, cost.costs)
        assert c / 400 >= acc and cal.test is None
        if method == "global":
            best = min(p[2] for p in brute_points(sv, yv, cost.costs) if p[0] / 400 >= acc)
            assert cal.val.mean_cost == pytest.approx(best, rel=1e-12)


def test_per_exit_at_least_msdnet_and_global():
    zv, yv = data(7, N=500, C=10)
    cost = policy.CostModel([100, 120, 150, 200], [10, 10, 10, 5])
    for kw in [dict(target_cost=0.5 * cost.full), dict(target_cost=0.7 * cost.full), dict(target_accuracy=0.5)]:
        r = {m: policy.calibrate(zv, yv, method=m, cost=cost, **kw).val for m in policy.METHODS}
        if "target_cost" in kw:
            assert r["per_exit"].correct >= r["msdnet"].correct
            assert r["per_exit"].correct >= r["global"].correct
        else:
            assert r["per_exit"].mean_cost <= r["msdnet"].mean_cost + 1e-9
            assert r["per_exit"].mean_cost <= r["global"].mean_cost + 1e-9


def test_msdnet_geometric_proportions():
    z, y = data(8, K=3, N=1000, C=10, ties=False)
    cost = policy.CostModel.uniform(3)
    cal = policy.calibrate(z, y, target_cost=2.0, method="msdnet", cost=cost)
    q = cal.q
    p = np.array([1, q, q * q]) / (1 + q + q * q)
    h = cal.val.exit_histogram
    assert h[0] == math.floor(1000 * p[0]) and h[1] == math.floor(1000 * p[1])


def test_summaries_vs_brute_force():
    z, y = data(9, N=300, C=6)
    s = policy.confidence(z)
    cost = policy.CostModel([1, 1, 1, 1], [0.25, 0.25, 0.25, 0.25])
    pts = brute_points(s, y, cost.costs)
    budgets = [0.25, 0.5, 0.75, 1.0]
    got = policy.accuracy_at_budgets(s, y, budgets, cost=cost)
    for b, g in zip(budgets, got):
        assert g == max(c for c, _, m in pts if m <= b * cost.full + 1e-12) / 300
    last = pts[0][0] / 300
    for delta in [0.0, 0.02, 0.1]:
        want = max(cost.full / m for c, _, m in pts if c / 300 >= last - delta - 1e-12)
        assert policy.speedup_at_iso_accuracy(s, y, delta, cost=cost) == pytest.approx(want, rel=1e-12)
    # AUC by the trapezoid rule over the curve, numpy
    df = policy.exact_curve(s, y, cost).to_pandas()
    x, a = df.normalized_cost.to_numpy(), df.accuracy.to_numpy()
    assert policy.auc(s, y, cost=cost) == pytest.approx(np.sum(-np.diff(x) * (a[1:] + a[:-1]) / 2), rel=1e-12)


def test_plot_curve(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    z, y = data(10, N=200)
    cost = policy.CostModel.uniform(4)
    cal = policy.calibrate(z, y, z, y, target_cost=2.5, method="per_exit", cost=cost)
    assert "per_exit" in repr(cal) and "Scores(" in repr(policy.confidence(z)) and "CostModel" in repr(cost)
    ax = policy.plot_curve(z, y, cost, calibrations=[cal])
    ax.figure.savefig(tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 0


def test_scores_from_arrays():
    conf = np.array([[0.9, 0.1], [1.0, 1.0]], dtype=np.float32)
    pred = np.array([[1, 0], [1, 1]])
    s = policy.Scores.from_arrays(conf, pred, 2)
    df = policy.exact_curve(s, [1, 1]).to_pandas()
    assert list(df.correct) == [2, 2, 1] and list(df.tau) == [np.inf, np.float32(0.9), np.float32(0.1)]


# ---- bad input ---------------------------------------------------------------

def bad(match):
    return pytest.raises(InvalidArgumentError, match=match)


def test_bad_inputs():
    z, y = data(11, K=3, N=20, C=4)
    with bad("exit 1 is 19×4"):
        policy.confidence([z[0], z[1][:19], z[2]])
    with bad("exit 2 is 20×3"):
        policy.confidence([z[0], z[1], z[2][:, :3].copy()])
    zn = z.copy()
    zn[1, 7, 2] = np.nan
    with bad("exit 1: logits: row 7"):
        policy.confidence(zn)
    with bad("labels: 4 at row 3"):
        policy.exact_curve(z, np.where(np.arange(20) == 3, 4, y))
    with bad("labels: -1 at row 0"):
        policy.exact_curve(z, np.where(np.arange(20) == 0, -1, y))
    with bad("labels: 19 values"):
        policy.exact_curve(z, y[:19])
    with bad("conf: NaN at exit 0, row 1"):
        policy.exact_curve(policy.Scores.from_arrays(np.array([[0.5, np.nan], [1, 1]]), np.zeros((2, 2)), 2), [0, 0])
    with bad("stage_macs: exit 1 has -1"):
        policy.CostModel([1, -1, 1], [0, 0, 0])
    with bad("head_macs: exit 2 has -3"):
        policy.CostModel([1, 1, 1], [0, 0, -3])
    with bad("costs: exit 2 costs 1"):
        policy.CostModel.from_cumulative([1, 2, 1])
    with bad("cost: 2 exits in the cost model, 3"):
        policy.exact_curve(z, y, cost=policy.CostModel.uniform(2))
    with bad("thresholds: 2 values"):
        policy.assign(z, [0.5, 0.5])
    with bad("thresholds: NaN"):
        policy.assign(z, np.nan)
    with bad("no samples"):
        policy.confidence(np.zeros((3, 0, 4), np.float32))
    with bad("empty list"):
        policy.confidence([])
    with bad("float32"):
        policy.confidence(z.astype(np.float64))
    with bad("measure"):
        policy.confidence(z, "softmax")
    with bad("temperature: exit 1"):
        policy.confidence(z, temperature=[1, 0, 1])
    cost = policy.CostModel([10, 10, 10])
    with bad("target_cost: 5 is below the cost of the first exit"):
        policy.calibrate(z, y, target_cost=5, cost=cost)
    with bad("target_cost: 31 is above the full cost"):
        policy.calibrate(z, y, target_cost=31, cost=cost)
    with bad("target_accuracy: 1.5"):
        policy.calibrate(z, y, target_accuracy=1.5, cost=cost)
    with bad("target_accuracy: 1 is not reachable"):
        policy.calibrate(z, np.zeros(20, np.int64) + (np.argmax(z[-1], -1) + 1) % 4, target_accuracy=1.0, cost=cost)
    with bad("exactly one"):
        policy.calibrate(z, y, cost=cost)
    with bad("method"):
        policy.calibrate(z, y, target_cost=20, method="grid", cost=cost)
    with bad("budgets: 0.2 of the full cost"):
        policy.accuracy_at_budgets(z, y, [0.2], cost=cost)
    with bad("budgets: 1.5 is above 1"):
        policy.accuracy_at_budgets(z, y, [1.5], cost=cost)
    with bad("delta"):
        policy.speedup_at_iso_accuracy(z, y, -0.1, cost=cost)
