"""export (model format v2, a graph) against torch: torchvision networks with attached exits,
hand-written forwards (cat, residual add, squeeze-excitation), nn.Sequential subclasses with their
own forward, preprocessing, the one cost model, and refusals that leave no file.

References: torch eval-mode logits of the same module (rtol 1e-4 of the row's largest |logit|),
exitnet.policy.assign on torch's logits, and MACs counted by hand / from the runtime."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch import nn

torchvision = pytest.importorskip("torchvision")

from exitnet import data, policy  # noqa: E402
from exitnet.runtime import Model  # noqa: E402
from exitnet.torch import EarlyExitNet, attach_exits, export, small_cnn_8, stage_costs  # noqa: E402
from exitnet.torch._export import ExportMismatchError  # noqa: E402

torch.set_num_threads(1)
X = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _randomise_bn(m: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for b in m.modules():
        if isinstance(b, nn.modules.batchnorm._BatchNorm):
            c = b.num_features
            b.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
            b.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            b.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            b.bias.data.copy_(torch.rand(c, generator=g) - 0.5)
    return m


def _assert_rows_close(got, ref, rtol=1e-4):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    tol = rtol * np.abs(ref).max(axis=1, keepdims=True)
    assert np.all(np.abs(got - ref) <= tol), float(np.max(np.abs(got - ref) / tol))


def _torch_logits(net, x):
    net.eval()
    with torch.no_grad():
        return [z.numpy() for z in net(x)]


def _check_against_torch(net, path, x):
    """Every exit's logits, exit decisions at several thresholds, and costs/MACs vs torch."""
    ref = _torch_logits(net, x)
    K = len(ref)
    with Model(path) as m:
        out = m.predict(x.numpy(), thresholds=None, return_logits=True, output="numpy")
        for k in range(K):
            _assert_rows_close(out["logits"][k], ref[k])
        s, h = stage_costs(net, x)
        costs = np.cumsum(np.asarray(s) + np.asarray(h))
        np.testing.assert_array_equal(m.exit_costs, costs)
        assert out["macs"] == len(x) * costs[-1]
        # thresholds between distinct torch confidences of exit 0, so no sample sits on one
        p0 = np.sort(torch.softmax(torch.from_numpy(ref[0]), 1).max(1).values.numpy())
        taus = [float((a + b) / 2) for a, b in zip(p0[:-1], p0[1:]) if b - a > 1e-4][::2] + [0.0, 1.1]
        for tau in taus:
            got = m.predict(x.numpy(), thresholds=tau, output="numpy")
            want = policy.assign(np.stack(ref), tau)
            np.testing.assert_array_equal(got["exit"], want.column("exit").to_numpy())
            np.testing.assert_array_equal(got["prediction"], want.column("prediction").to_numpy())
            assert got["macs"] == int(costs[got["exit"]].sum())


TORCHVISION = [
    ("resnet18", ["layer1", "layer2"]),
    ("mobilenet_v2", ["features.3", "features.6", "features.13"]),
    ("mobilenet_v3_small", ["features.3", "features.8"]),
    ("efficientnet_b0", ["features.3", "features.5"]),
]


@pytest.mark.parametrize("name,at", TORCHVISION, ids=[n for n, _ in TORCHVISION])
def test_torchvision_exits_equal_torch(name, at, tmp_path):
    torch.manual_seed(0)
    m = _randomise_bn(getattr(torchvision.models, name)(weights=None, num_classes=10))
    net = attach_exits(m, at, example_input=X)
    path = export(net, tmp_path / f"{name}.exitnet", example_input=X[:2])
    _check_against_torch(net, path, X)


class _Branchy(nn.Module):
    """cat + residual add + squeeze-excitation multiply, in a hand-written forward."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.a = nn.Conv2d(8, 4, 1)
        self.b = nn.Conv2d(8, 4, 3, padding=1)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(8, 2, 1), nn.ReLU(), nn.Conv2d(2, 8, 1), nn.Sigmoid())
        self.post = nn.BatchNorm2d(8)  # standalone (after an add): a scale_shift
        self.block2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU6(),
                                    nn.MaxPool2d(3, 2, ceil_mode=True))
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.stem(x)
        y = torch.cat([self.a(x), self.b(x)], dim=1)
        y = self.post(y * self.se(y) + x)
        z = self.block2(torch.relu(y))
        return self.fc(torch.flatten(z.mean((2, 3), keepdim=True), 1))


class Twice(nn.Sequential):
    def forward(self, x):
        return super().forward(x) * 2


def test_hand_written_forward_and_sequential_subclass(tmp_path):
    torch.manual_seed(0)
    m = _randomise_bn(_Branchy())
    net = attach_exits(m, ["stem", "post"], example_input=X)
    p = export(net, tmp_path / "branchy.exitnet", example_input=X)
    _check_against_torch(net, p, X)
    ops = {d["op"] for part in _graph(p)["stages"] for d in part["nodes"]}
    assert {"cat", "add", "mul", "scale_shift", "sigmoid", "relu6", "maxpool2d", "mean"} <= ops
    # the same network as plain EarlyExitNet stages: a custom module is traced, not flattened
    net2 = EarlyExitNet([m], [nn.Identity()])
    _check_against_torch(net2, export(net2, tmp_path / "plain.exitnet", example_input=X), X)

    # Twice(nn.Sequential) with its own forward: logits doubled in the file as in torch
    torch.manual_seed(1)
    tw = EarlyExitNet([Twice(nn.Conv2d(3, 4, 3), nn.ReLU())], [nn.Sequential(nn.Flatten(), nn.Linear(4 * 30 * 30, 3))])
    p = export(tw, tmp_path / "twice.exitnet", example_input=X)
    _check_against_torch(tw, p, X)
    assert [d["op"] for d in _graph(p)["stages"][0]["nodes"]] == ["conv2d", "relu", "mul_scalar"]


def _graph(path):
    import json

    return json.loads(pa.ipc.open_file(str(path)).schema.metadata[b"exitnet.graph"])


def test_bn_folded_costs_and_preprocessing(tmp_path):
    # one cost model: BatchNorm folded, so conv/linear MACs only, equal to the runtime's
    torch.manual_seed(0)
    stages = [nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU()),
              nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())]
    heads = [nn.Sequential(nn.Flatten(), nn.Linear(4 * 64, 3)), nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))]
    net = _randomise_bn(EarlyExitNet(stages, heads))
    assert stage_costs(net, torch.zeros(1, 1, 8, 8)) == ([4 * 64 * 9, 8 * 16 * 4 * 9], [4 * 64 * 3, 8 * 3])
    splits = data.digits(seed=0)
    x = splits.test.tensors[0][:16]
    p = export(net, tmp_path / "pre.exitnet", example_input=x, preprocess=splits)
    raw = x.numpy() * np.float32(splits.std) + np.float32(splits.mean)  # pixels scaled to [0, 1]
    with Model(p) as m:
        mean, std = m.preprocess
        np.testing.assert_allclose(mean, [splits.mean], rtol=1e-6)
        np.testing.assert_allclose(std, [splits.std], rtol=1e-6)
        a = m.predict(raw, return_logits=True, output="numpy", raw=True)["logits"]
        b = m.predict(x.numpy(), return_logits=True, output="numpy")["logits"]
        for k in range(2):
            _assert_rows_close(a[k], b[k])
            _assert_rows_close(a[k], _torch_logits(net, x)[k])
    p = export(small_cnn_8(), tmp_path / "pre2.exitnet", (1, 8, 8), preprocess={"mean": [0.5], "std": [0.25]})
    assert _graph(p)["preprocess"] == {"mean": [0.5], "std": [0.25]}


def test_refusals_name_the_node_and_leave_no_file(tmp_path):
    old = tmp_path / "m.exitnet"
    old.write_bytes(b"previous")

    class Tanh(nn.Module):
        def forward(self, x):
            return torch.tanh(x)

    net = EarlyExitNet([nn.Sequential(nn.Conv2d(3, 2, 3), Tanh())], [nn.Sequential(nn.Flatten(), nn.Linear(2 * 30 * 30, 3))])
    with pytest.raises(ValueError, match=r"stages\[0\]: node 'tanh' \(module 'stages\.0\.1'\): function torch\.tanh is not supported"):
        export(net, old, example_input=X)
    net = EarlyExitNet([nn.Sequential(nn.Conv2d(3, 2, 3), nn.LayerNorm([2, 30, 30]))], [nn.Sequential(nn.Flatten(), nn.Linear(2 * 30 * 30, 3))])
    with pytest.raises(ValueError, match=r"node '_0_1'.*LayerNorm is not supported"):
        export(net, old, example_input=X)

    class Aliased(nn.Module):  # in-place relu changes y under the add: the graph would differ
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)

        def forward(self, x):
            y = self.conv(x)
            z = y.relu_()
            return y + z

    net = EarlyExitNet([Aliased()], [nn.Sequential(nn.Flatten(), nn.Linear(2 * 30 * 30, 3))])
    with pytest.raises(ExportMismatchError, match=r"first differing node: stages\[0\] node 'add'"):
        export(net, old, example_input=X)
    good = EarlyExitNet([nn.Sequential(nn.Conv2d(3, 2, 3))], [nn.Sequential(nn.Flatten(), nn.Linear(2 * 30 * 30, 3))])
    with pytest.raises(ValueError, match="preprocess: mean has 2 values, the model's input has 3 channels"):
        export(good, old, example_input=X, preprocess={"mean": [0.1, 0.2], "std": [1, 1]})
    with pytest.raises(ValueError, match="preprocess: std must be finite and > 0"):
        export(good, old, example_input=X, preprocess=([0, 0, 0], [1, 0, 1]))
    with pytest.raises(ValueError, match="example_input"):
        export(good, old, example_input=torch.randn(3, 32, 32))
    assert old.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["m.exitnet"]  # no temporary file left
