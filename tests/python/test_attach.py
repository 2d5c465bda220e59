"""attach_exits on torchvision and hand-written models: the cut network reproduces the model,
works with SequentialTrainer / fisher_diagonal / parameters_for_exit, and bad cuts are refused.

References: the uncut model's own forward (torch), torch.fx's graph for the edges, and parameter
snapshots for what the trainer moves."""

from __future__ import annotations

import pytest
import torch
from torch import fx, nn
from torch.utils.data import TensorDataset

torchvision = pytest.importorskip("torchvision")

from exitnet.torch import EarlyExitNet, SequentialTrainer, attach_exits, fisher_for_exit  # noqa: E402
from exitnet.torch._trace import UntraceableError  # noqa: E402

torch.set_num_threads(1)
X = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10)


def test_resnet18_exits_shapes_and_last_exit_is_the_model(resnet):
    net = attach_exits(resnet, ["layer1", "layer2"], example_input=X)
    assert isinstance(net, EarlyExitNet) and net.num_exits == 3
    net.eval()
    resnet.eval()
    with torch.no_grad():
        outs = net(X)
        ref = resnet(X)
        # exit 0 by hand: the model's layers up to layer1, then the default head (GAP + Linear)
        f = resnet.layer1(resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(X)))))
        h0 = net.heads[0](f)
    assert [tuple(o.shape) for o in outs] == [(4, 10)] * 3
    torch.testing.assert_close(outs[-1], ref, rtol=0, atol=0)
    torch.testing.assert_close(outs[0], h0, rtol=0, atol=0)
    assert isinstance(net.heads[0][0], nn.AdaptiveAvgPool2d) and net.heads[0][2].in_features == 64
    assert isinstance(net.heads[-1], nn.Identity)
    # modules are shared with the model, not copied: training the net trains the model
    assert net.stages[0].conv1 is resnet.conv1
    assert all(isinstance(s, fx.GraphModule) for s in net.stages)
    p = net.parameters_for_exit(0)
    assert "stages.0.conv1.weight" in p and "stages.0.layer1.0.conv1.weight" in p
    assert not any(k.startswith(("stages.1.", "heads.1.")) for k in p)
    assert net.input_shape == (3, 32, 32)


def test_custom_head_factory_and_other_torchvision_models():
    seen = []

    def head(k, shape):
        seen.append((k, shape))
        return nn.Sequential(nn.Flatten(), nn.Linear(shape[0] * shape[1] * shape[2], 10))

    torch.manual_seed(0)
    m = torchvision.models.mobilenet_v3_small(num_classes=10).eval()
    net = attach_exits(m, ["features.1", "features.3"], head, example_input=X[:2])
    assert seen == [(0, (16, 8, 8)), (1, (24, 4, 4))]
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(X[:2])[-1], m(X[:2]), rtol=0, atol=0)


def test_sequential_trainer_fisher_on_attached_resnet18():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    n = 8  # tiny: this test is about plumbing (names, prefixes, hooks), not accuracy
    ds = TensorDataset(torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g), torch.arange(n))
    small = TensorDataset(*(t[:4] for t in ds.tensors))
    for strategy in ("naive", "ewc", "lwf"):
        net = attach_exits(torchvision.models.resnet18(num_classes=10), ["layer1", "layer2"], example_input=X)
        snaps = []

        def log(rec, net=net, snaps=snaps):
            if rec["event"] == "stage_end":
                snaps.append({k: v.detach().clone() for k, v in net.state_dict().items()})

        tr = SequentialTrainer(net, strategy, epochs_per_stage=1, batch_size=8, fisher_samples=4,
                               fisher_label_mode="sampled", progress=False, log=log)
        res = tr.fit(ds, small, small, analyse=False)
        assert res.stability.shape == (3, 3) and len(snaps) == 3
        moved = [k for k in snaps[0] if not torch.equal(snaps[0][k], snaps[1][k])]
        assert any(k.startswith("stages.0.layer1.") for k in moved), strategy   # the shared prefix trains
        assert any(k.startswith("heads.1.") for k in moved), strategy
        assert not any(k.startswith(("heads.0.", "stages.2.", "heads.2.")) for k in moved), strategy
    # exact Fisher of exit 1; its bias entries are known in closed form: p_j (1 - p_j) averaged
    fisher = fisher_for_exit(net, 1, torch.utils.data.DataLoader(ds, batch_size=4), max_samples=4)
    assert set(fisher) == set(net.parameters_for_exit(1))
    with torch.no_grad():
        p = torch.softmax(net.eval().forward_exit(ds.tensors[0][:4], 1).double(), 1)
    torch.testing.assert_close(fisher["heads.1.2.bias"].double(), (p * (1 - p)).mean(0), rtol=1e-4, atol=1e-8)


class _Branchy(nn.Module):
    """cat + residual add + squeeze-excitation multiply, in a hand-written forward."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.a = nn.Conv2d(8, 4, 1)
        self.b = nn.Conv2d(8, 4, 3, padding=1)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(8, 2, 1), nn.ReLU(), nn.Conv2d(2, 8, 1), nn.Sigmoid())
        self.block2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU6())
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.stem(x)
        y = torch.cat([self.a(x), self.b(x)], dim=1)
        y = y * self.se(y) + x
        z = self.block2(torch.relu(y))
        return self.fc(torch.flatten(z.mean((2, 3), keepdim=True), 1))


def test_bad_cuts_are_refused_naming_the_edge_and_valid_names(resnet):
    with pytest.raises(ValueError, match=r"'layer1\.0\.conv1' is inside a branch: the edge maxpool .* -> add .*valid names.*'layer1'"):
        attach_exits(resnet, ["layer1.0.conv1"], example_input=X)
    with pytest.raises(ValueError, match=r"'nope' is not a module.*valid names.*'layer2'"):
        attach_exits(resnet, ["nope"], example_input=X)
    with pytest.raises(ValueError, match="execution order"):
        attach_exits(resnet, ["layer2", "layer1"], example_input=X)
    with pytest.raises(ValueError, match="already the last exit"):
        attach_exits(resnet, ["fc"], example_input=X)
    with pytest.raises(TypeError, match="at:"):
        attach_exits(resnet, [], example_input=X)
    with pytest.raises(ValueError, match="example_input"):
        attach_exits(resnet, ["layer1"], example_input=None)
    m = _Branchy()
    with pytest.raises(ValueError, match=r"'a' is inside a branch: the edge stem_2 \(stem\.2\) -> b"):
        attach_exits(m, ["a"], example_input=X)
    net = attach_exits(m, ["stem"], example_input=X)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(X)[-1], m.eval()(X), rtol=0, atol=0)


def test_untraceable_and_training_dependent_models_are_refused():
    class Gate(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x  # data-dependent control flow

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.gate = Gate()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.gate(self.conv(x)).mean((2, 3)))

    with pytest.raises(UntraceableError, match=r"module 'gate' \(Gate\).*EarlyExitNet\(stages, heads\)"):
        attach_exits(Net(), ["conv"], example_input=X)

    class Drop(nn.Module):
        def forward(self, x):
            return nn.functional.dropout(x, 0.5, self.training)

    net = Net()
    net.gate = Drop()
    with pytest.raises(UntraceableError, match=r"module 'gate' \(Drop\).*self\.training"):
        attach_exits(net, ["conv"], example_input=X)
