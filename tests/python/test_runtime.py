"""exitnet.runtime against torch (float32 and float64) and the offline policy.

References: torch's own forward pass (every exit's logits), exitnet.policy.assign
and an explicit numpy max-softmax rule applied offline to torch's logits, hand
counts of MACs (forward hooks), and pyarrow for the file layout.
"""

from __future__ import annotations

import gzip
import json
import os
import threading

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch import nn

from exitnet import _io, data, policy
from exitnet._errors import ExitnetIOError, InvalidArgumentError, InvalidStateError, NotSupportedError
from exitnet.runtime import Model
from exitnet.torch import EarlyExitNet
from exitnet.torch._export import ResidualBlock, export

FMNIST = data.data_root("fashion-mnist")


def _randomize_bn(net: nn.Module, gen: torch.Generator) -> None:
    """Non-trivial BatchNorm statistics so folding is really tested."""
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            if m.weight is not None:
                m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.data.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)


def every_op_net() -> EarlyExitNet:
    """Covers every supported module and option (input 3×17×15)."""
    s0 = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
        nn.MaxPool2d(3, stride=2, padding=1),                                      # 9×8
    )
    h0 = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(8, 7))
    s1 = nn.Sequential(
        ResidualBlock(nn.Sequential(                                               # identity shortcut
            nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
            nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8))),
        ResidualBlock(nn.Sequential(                                               # 1×1-conv shortcut
            nn.Conv2d(8, 12, 3, stride=2, padding=1, groups=4, bias=False), nn.BatchNorm2d(12), nn.ReLU(),
            nn.Conv2d(12, 12, 3, padding=1)),
            nn.Sequential(nn.Conv2d(8, 12, 1, stride=2, bias=False), nn.BatchNorm2d(12)), relu=False),
        nn.ReLU(),                                                                 # 5×4
        nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),             # 6×5
    )
    h1 = nn.Sequential(nn.Flatten(), nn.Linear(12 * 6 * 5, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 7))
    s2 = nn.Sequential(
        nn.Conv2d(12, 24, 3, stride=2, padding=1, groups=12), nn.ReLU(),           # depthwise ×2: 3×3
        nn.AvgPool2d(3, stride=1, padding=1),                                      # count_include_pad
        nn.MaxPool2d(2, ceil_mode=True),                                           # 2×2
        nn.Conv2d(24, 16, (2, 1), stride=(1, 2), padding=(0, 1)), nn.ReLU(),       # rectangular: 1×2
        nn.Identity(),
    )
    h2 = nn.Sequential(nn.Flatten(), nn.Linear(32, 7))
    return EarlyExitNet([s0, s1, s2], [h0, h1, h2])


def torch_logits(net: nn.Module, x: torch.Tensor, dtype=torch.float32) -> list[np.ndarray]:
    net = net.to(dtype).eval()
    with torch.no_grad():
        out = [z.numpy().astype(np.float32 if dtype == torch.float32 else np.float64) for z in net(x.to(dtype))]
    net.float()
    return out


@pytest.fixture(scope="module")
def every_op(tmp_path_factory):
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    net = every_op_net()
    _randomize_bn(net, gen)
    net.eval()
    path = export(net, tmp_path_factory.mktemp("rt") / "every_op.exitnet", (3, 17, 15))
    return net, str(path)


@pytest.mark.parametrize("n", [1, 3, 40])
def test_logits_equal_torch_every_op(every_op, n):
    net, path = every_op
    x = torch.randn(n, 3, 17, 15, generator=torch.Generator().manual_seed(n))
    ref32 = torch_logits(net, x)
    ref64 = torch_logits(net, x, torch.float64)
    with Model(path) as m:
        assert m.num_exits == 3 and m.num_classes == 7 and m.input_shape == (3, 17, 15)
        out = m.predict(x, return_logits=True, output="numpy")
    for k in range(3):
        np.testing.assert_allclose(out["logits"][k], ref32[k], rtol=1e-4, atol=1e-5, err_msg=f"exit {k}")
        np.testing.assert_allclose(out["logits"][k], ref64[k], rtol=1e-4, atol=1e-5, err_msg=f"exit {k} (f64)")
    assert (out["exit"] == 2).all()
    np.testing.assert_array_equal(out["prediction"], ref32[2].argmax(1))


def test_small_cnn_and_resnet_from_trainer(tmp_path):
    """The trainer's ready-made models export and match torch."""
    from exitnet.torch._model import small_cnn_28, small_resnet_32

    gen = torch.Generator().manual_seed(2)
    for net, shape in ((small_cnn_28(), (1, 28, 28)), (small_resnet_32(width=8), (3, 32, 32))):
        _randomize_bn(net, gen)
        net.eval()
        p = export(net, tmp_path / "m.exitnet", shape)
        x = torch.randn(5, *shape, generator=gen)
        ref = torch_logits(net, x)
        with Model(p) as m:
            out = m.predict(x.numpy(), return_logits=True, output="numpy")
        for k in range(len(ref)):
            np.testing.assert_allclose(out["logits"][k], ref[k], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("side", [11, 12])
def test_conv_relu_maxpool_fusion(tmp_path, side):
    """conv → relu → MaxPool2d(2) is pooled inside the conv epilogue (odd and even sizes)."""
    torch.manual_seed(side)
    net = EarlyExitNet(
        [nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                       nn.Conv2d(6, 5, 3, padding=1, bias=False), nn.BatchNorm2d(5), nn.MaxPool2d(2, stride=2))],
        [nn.Sequential(nn.Flatten(), nn.Linear(5 * (side // 4) ** 2, 4))]).eval()
    _randomize_bn(net, torch.Generator().manual_seed(side))
    p = export(net, tmp_path / "f.exitnet", (2, side, side))
    x = torch.randn(9, 2, side, side, generator=torch.Generator().manual_seed(3))
    with Model(p) as m:
        for xs in (x[:1], x):
            got = m.predict(xs, return_logits=True, output="numpy")["logits"][0]
            np.testing.assert_allclose(got, torch_logits(net, xs)[0], rtol=1e-4, atol=1e-5)


def conv_macs(net: nn.Module, shape) -> np.ndarray:
    """Cumulative per-exit MACs counted with forward hooks (conv and linear only)."""
    counts: dict[nn.Module, int] = {}

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            counts[m] = out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            counts[m] = m.in_features * m.out_features

    hs = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        net(torch.zeros(1, *shape))
    for h in hs:
        h.remove()
    per = [sum(counts.get(m, 0) for m in s.modules()) + sum(counts.get(m, 0) for m in h.modules())
           for s, h in zip(net.stages, net.heads)]
    return np.cumsum(per)


def test_costs_and_macs(every_op):
    net, path = every_op
    x = torch.randn(50, 3, 17, 15, generator=torch.Generator().manual_seed(5))
    with Model(path) as m:
        np.testing.assert_array_equal(m.exit_costs, conv_macs(net, (3, 17, 15)))
        out = m.predict(x, thresholds=0.3, output="numpy")
        assert out["macs"] == int(m.exit_costs[out["exit"]].sum())


def test_file_is_arrow_ipc(every_op):
    _, path = every_op
    with pa.ipc.open_file(path) as r:
        md = r.schema.metadata
        t = r.read_all()
    assert md[b"exitnet.kind"] == b"model" and md[b"exitnet.format_version"] == b"2"
    g = json.loads(md[b"exitnet.graph"])
    assert g["input_shape"] == [3, 17, 15] and len(g["stages"]) == 3
    assert t.column_names == ["name", "shape", "data"]
    # BN folded: no running statistics stored
    assert not any("running" in n for n in t.column("name").to_pylist())
    for name, shape, data in zip(*(t.column(c).to_pylist() for c in ("name", "shape", "data"))):
        assert int(np.prod(shape)) == len(data), name


# -------------------------------------------------------------- real data

def _idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        b = f.read()
    nd = b[3]
    dims = [int.from_bytes(b[4 + 4 * i: 8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(b, np.uint8, offset=4 + 4 * nd).reshape(dims)


def real_data(n_train: int, n_test: int):
    """Fashion-MNIST (exitnet.data.data_root: $EXITNET_DATA or Debian's dataset-fashion-mnist)
    or, if absent, sklearn digits (every test here runs on either)."""
    if data.fashion_mnist_available() and os.path.exists(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz")):
        xtr = _idx(os.path.join(FMNIST, "train-images-idx3-ubyte.gz"))[:n_train]
        ytr = _idx(os.path.join(FMNIST, "train-labels-idx1-ubyte.gz"))[:n_train]
        xte = _idx(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz"))[:n_test]
        yte = _idx(os.path.join(FMNIST, "t10k-labels-idx1-ubyte.gz"))[:n_test]
        f = lambda a: ((a.astype(np.float32) / 255.0 - 0.286) / 0.353)[:, None]  # noqa: E731
        return f(xtr), ytr.astype(np.int64), f(xte), yte.astype(np.int64)
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    return x[:1200], d.target[:1200], x[1200:], d.target[1200:]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small 3-exit CNN trained briefly on real data (all exits jointly)."""
    torch.manual_seed(0)
    xtr, ytr, xte, yte = real_data(6000, 2000)
    side = xtr.shape[-1]
    c1, c2, c3 = 8, 16, 16
    s = [side, (side + 1) // 2, (side + 3) // 4]
    net = EarlyExitNet(
        [nn.Sequential(nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU()),
         nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU()),
         nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), nn.Conv2d(c2, c3, 3, padding=1), nn.BatchNorm2d(c3), nn.ReLU())],
        [nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), nn.Flatten(), nn.Linear(c1 * s[1] * s[1], 10)),
         nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c2, 10)),
         nn.Sequential(nn.Flatten(), nn.Linear(c3 * s[2] * s[2], 10))],
    )
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    X, Y = torch.from_numpy(xtr), torch.from_numpy(ytr)
    g = torch.Generator().manual_seed(0)
    net.train()
    for _ in range(2):
        perm = torch.randperm(len(X), generator=g)
        for i in range(0, len(X), 128):
            idx = perm[i:i + 128]
            loss = sum(nn.functional.cross_entropy(z, Y[idx]) for z in net(X[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    path = export(net, tmp_path_factory.mktemp("rt") / "trained.exitnet", (1, side, side))
    return net, str(path), xte, yte


def np_max_softmax_exits(logits: list[np.ndarray], tau: list[float]):
    """Explicit numpy rule: first k < K-1 with max softmax >= tau_k, else K-1."""
    K, n = len(logits), logits[0].shape[0]
    ex = np.full(n, K - 1)
    conf = np.zeros((K, n))
    for k, z in enumerate(logits):
        z = z.astype(np.float64)
        p = np.exp(z - z.max(1, keepdims=True))
        conf[k] = (p / p.sum(1, keepdims=True)).max(1)
    for k in reversed(range(K - 1)):
        ex = np.where(conf[k] >= tau[k], k, ex)
    return ex, conf


@pytest.mark.parametrize("measure", ["max_softmax", "entropy", "margin", "patience"])
def test_decisions_equal_offline_policy_on_real_data(trained, measure):
    net, path, xte, yte = trained
    ref = torch_logits(net, torch.from_numpy(xte))
    K = len(ref)
    if measure == "patience":
        tau = [2.0, 2.0]
    else:
        # thresholds at the 50th percentile of each exit's confidence: every exit gets samples
        conf = policy.confidence([np.ascontiguousarray(z) for z in ref], measure).confidence
        tau = [float(np.quantile(conf[k], 0.5)) for k in range(K - 1)]
    sim = policy.assign([np.ascontiguousarray(z) for z in ref], tau + [0.0], measure)
    with Model(path) as m:
        out = m.predict(xte, thresholds=tau, measure=measure, output="numpy")
    sim_exit = sim.column("exit").to_numpy()
    sim_pred = sim.column("prediction").to_numpy()
    differ = (sim_exit != out["exit"]) | (sim_pred != out["prediction"])
    # float32 logits of torch and Go differ in the last bits: a flip is allowed only
    # for a sample whose confidence is within 1e-5 of a threshold
    if differ.any():
        conf = policy.confidence([np.ascontiguousarray(z) for z in ref], measure).confidence
        for i in np.flatnonzero(differ):
            k = min(sim_exit[i], out["exit"][i])
            assert abs(conf[k, i] - tau[min(k, len(tau) - 1)]) < 1e-5, f"sample {i}"
    assert differ.sum() <= 2
    hist = np.bincount(out["exit"], minlength=K)
    if measure != "patience":
        assert (hist > 0).all(), hist
    if measure == "max_softmax":
        ex_np, _ = np_max_softmax_exits(ref, tau)
        assert (ex_np != out["exit"]).sum() <= 2


def test_nan_input_refused(trained):
    _, path, xte, _ = trained
    x = xte[:10].copy()
    x[7, 0, 3, 3] = np.nan
    with Model(path) as m, pytest.raises(InvalidArgumentError, match="sample 7"):
        m.predict(x)
    x[7, 0, 3, 3] = np.inf
    with Model(path) as m, pytest.raises(InvalidArgumentError, match="sample 7"):
        m.predict(x)


def test_eight_threads_share_a_model(trained):
    _, path, xte, _ = trained
    x = xte[:300]
    with Model(path) as m:
        want = m.predict(x, thresholds=0.8, output="numpy")
        results: list = [None] * 8
        errors: list = []

        def work(i: int) -> None:
            try:
                for _ in range(3):
                    results[i] = m.predict(x, thresholds=0.8, output="numpy")
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    assert not errors, errors
    for r in results:
        for key in ("prediction", "exit", "confidence"):
            np.testing.assert_array_equal(r[key], want[key])


def test_inputs_numpy_torch_pyarrow_agree(trained):
    _, path, xte, _ = trained
    x = np.ascontiguousarray(xte[:17])
    with Model(path) as m:
        a = m.predict(x, thresholds=0.9)
        b = m.predict(torch.from_numpy(x), thresholds=0.9)
        flat = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x[0].size)
        c = m.predict(flat, thresholds=0.9)
        d = m.predict(x[:, 0], thresholds=0.9)  # (N, H, W) for one channel
        sliced = m.predict(flat.slice(5, 7), thresholds=0.9)
    assert a.equals(b) and a.equals(c) and a.equals(d)
    # logits through both ABI paths (raw pointers for numpy, Arrow C Data for pyarrow)
    with Model(path) as m2:
        la = m2.predict(x, thresholds=0.9, return_logits=True, output="numpy")
        lb = m2.predict(flat, thresholds=0.9, return_logits=True, output="numpy")
    np.testing.assert_array_equal(np.isnan(la["logits"]), np.isnan(lb["logits"]))
    np.testing.assert_allclose(la["logits"], lb["logits"], rtol=1e-6)
    # a different batch composition may change GEMM rounding in the last bit
    part = a.slice(5, 7)
    for col in ("prediction", "exit"):
        assert sliced.column(col).equals(part.column(col))
    np.testing.assert_allclose(sliced.column("confidence").to_numpy(), part.column("confidence").to_numpy(), rtol=1e-5)


# -------------------------------------------------------------- bad input

def test_bad_inputs(trained):
    _, path, xte, _ = trained
    x = xte[:4]
    side = xte.shape[-1]  # 28 (Fashion-MNIST) or 8 (the digits fallback)
    with Model(path) as m:
        with pytest.raises(InvalidArgumentError, match="channels"):
            m.predict(np.zeros((2, 3, side, side), np.float32))
        with pytest.raises(InvalidArgumentError, match="channels"):
            t = pa.ExtensionArray.from_storage(
                pa.fixed_shape_tensor(pa.float32(), [2, side, side // 2]),
                pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(side * side, np.float32)), side * side))
            m.predict(t)
        with pytest.raises(InvalidArgumentError, match="input"):
            m.predict(pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(20, np.float32)), 10))
        with pytest.raises(InvalidArgumentError, match="float32"):
            m.predict(x.astype(np.float64))
        with pytest.raises(InvalidArgumentError, match="thresholds"):
            m.predict(x, thresholds=[0.5, 0.5, 0.5, 0.5])
        with pytest.raises(InvalidArgumentError, match="thresholds"):
            m.predict(x, thresholds=[float("nan"), 0.5])
        with pytest.raises(InvalidArgumentError, match="measure"):
            m.predict(x, measure="nope")
        with pytest.raises(InvalidArgumentError, match="temperature"):
            m.predict(x, thresholds=0.5, temperature=-1.0)
        empty = m.predict(np.zeros((0, 1, side, side), np.float32))
        assert empty.num_rows == 0
    with pytest.raises(InvalidStateError):
        m.predict(x)
    m.close()  # idempotent


def _rewrite(src: str, dst: str, graph_fn=None, table_fn=None) -> str:
    with pa.ipc.open_file(src) as r:
        md = dict(r.schema.metadata)
        t = r.read_all()
    if graph_fn:
        g = json.loads(md[b"exitnet.graph"])
        graph_fn(g)
        md[b"exitnet.graph"] = json.dumps(g).encode()
    if table_fn:
        t = table_fn(t)
    sealed = _io.CHECKSUM_KEY.encode() in md
    if sealed:  # the rewritten file gets its own checksum (else only the checksum error is tested)
        md[_io.CHECKSUM_KEY.encode()] = _io.CHECKSUM_PLACEHOLDER.encode()
    t = t.replace_schema_metadata(md)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, t.schema) as w:
        w.write_table(t)
    buf = bytearray(sink.getvalue().to_pybytes())
    if sealed:
        _io.seal(buf)
    with open(dst, "wb") as f:
        f.write(buf)
    return dst


def test_bad_files(every_op, tmp_path):
    _, path = every_op
    data = open(path, "rb").read()
    p = tmp_path / "bad.exitnet"
    for cut in (0, 10, len(data) // 2, len(data) - 3):
        p.write_bytes(data[:cut])
        with pytest.raises(ExitnetIOError):
            Model(p)
    rng = np.random.default_rng(0)
    for _ in range(30):  # corrupted bytes: an error or a model that loads, never a crash
        b = bytearray(data)
        for i in rng.integers(0, len(b), 8):
            b[i] ^= 0xA5
        p.write_bytes(bytes(b))
        try:
            Model(p).close()
        except (ExitnetIOError, NotSupportedError):
            pass
    with pytest.raises(ExitnetIOError, match="path"):
        Model(tmp_path / "missing.exitnet")

    def huge(g):
        g["input_shape"] = [3, 1 << 40, 15]
    with pytest.raises(ExitnetIOError, match="input_shape"):
        Model(_rewrite(path, str(tmp_path / "h.exitnet"), huge))

    def huge_weight_shape(t):
        shapes = t.column("shape").to_pylist()
        shapes[0] = [1 << 30, 1 << 30]
        return t.set_column(1, "shape", pa.array(shapes, type=pa.list_(pa.int32())))
    with pytest.raises(ExitnetIOError, match="shape"):
        Model(_rewrite(path, str(tmp_path / "w.exitnet"), table_fn=huge_weight_shape))

    def unknown(g):
        st = g["stages"][1]
        st["nodes"].append({"name": "extra", "op": "swish9", "inputs": [st["output"]]})
        st["output"] = "extra"
    with pytest.raises(NotSupportedError, match="swish9"):
        Model(_rewrite(path, str(tmp_path / "u.exitnet"), unknown))

    def channels(g):
        g["input_shape"][0] = 4
    with pytest.raises(ExitnetIOError, match="in_channels"):
        Model(_rewrite(path, str(tmp_path / "c.exitnet"), channels))


def test_export_refuses_unsupported(tmp_path):
    net = EarlyExitNet([nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh())], [nn.Sequential(nn.Flatten(), nn.Linear(2 * 6 * 6, 3))])
    with pytest.raises(ValueError, match=r"module 'stages\.0\.1'.*Tanh is not supported"):
        export(net, tmp_path / "x.exitnet", (1, 8, 8))
    assert not os.listdir(tmp_path)  # nothing half-written
    # a BatchNorm with no conv/linear before it is a scale_shift (format v2), equal to torch
    net = EarlyExitNet([nn.Sequential(nn.ReLU(), nn.BatchNorm2d(1))], [nn.Sequential(nn.Flatten(), nn.Linear(64, 3))])
    net.stages[0][1].running_mean.fill_(0.3)
    net.stages[0][1].running_var.fill_(2.0)
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with Model(export(net, tmp_path / "x.exitnet", x)) as m:
        got = m.predict(x.numpy(), return_logits=True, output="numpy")["logits"][0]
    with torch.no_grad():
        np.testing.assert_allclose(got, net.eval()(x)[0].numpy(), rtol=1e-5, atol=1e-6)
