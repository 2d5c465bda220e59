"""EarlyExitNet: exits, parameters per exit, backbone cutting, ready-made models.

References are hand-composed torch modules (the stages applied one after another)."""

import pytest
import torch
from torch import nn

from exitnet.torch._model import EarlyExitNet, conv_head, small_cnn_28, small_cnn_8


def _mlp_net(K=3, d=5, c=4):
    torch.manual_seed(0)
    stages = [nn.Sequential(nn.Linear(d, d), nn.ReLU()) for _ in range(K)]
    heads = [nn.Linear(d, c) for _ in range(K)]
    return EarlyExitNet(stages, heads), stages, heads


def test_forward_matches_manual_composition():
    net, stages, heads = _mlp_net()
    x = torch.randn(7, 5)
    outs = net(x)
    h = x
    for k in range(3):
        h = stages[k](h)
        torch.testing.assert_close(outs[k], heads[k](h))
    assert len(outs) == 3


def test_forward_exits_computes_only_prefix():
    net, stages, _ = _mlp_net()
    calls = []
    for k, s in enumerate(net.stages):
        s.register_forward_hook(lambda m, i, o, k=k: calls.append(k))
    outs = net.forward_exits(torch.randn(2, 5), upto=1)
    assert len(outs) == 2 and calls == [0, 1]
    calls.clear()
    net.forward_exit(torch.randn(2, 5), 2)
    assert calls == [0, 1, 2]
    with pytest.raises(IndexError, match="upto"):
        net.forward_exits(torch.randn(2, 5), upto=3)


def test_parameters_for_exit_are_exactly_what_the_exit_depends_on():
    net, _, _ = _mlp_net()
    x = torch.randn(4, 5)
    for k in range(3):
        net.zero_grad()
        net.forward_exits(x, upto=k)[k].sum().backward()
        with_grad = {n for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        got = net.parameters_for_exit(k)
        assert set(got) == with_grad
        named = dict(net.named_parameters())
        assert all(got[n] is named[n] for n in got)


def test_constructor_errors():
    with pytest.raises(ValueError, match="heads"):
        EarlyExitNet([nn.Linear(2, 2)], [])
    with pytest.raises(ValueError, match="stages"):
        EarlyExitNet([], [])
    with pytest.raises(TypeError, match="stages\\[0\\]"):
        EarlyExitNet([lambda x: x], [nn.Linear(2, 2)])


def test_from_backbone_cuts_at_attach_points():
    torch.manual_seed(1)
    bb = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
    )
    net = EarlyExitNet.from_backbone(bb, [1, 4], lambda k, shape: conv_head(shape[0], 3))
    assert net.num_exits == 2
    x = torch.randn(2, 1, 8, 8)
    h1 = bb[1](bb[0](x))
    torch.testing.assert_close(net(x)[0], net.heads[0](h1))
    torch.testing.assert_close(net(x)[1], net.heads[1](bb(x)))
    shapes = []
    EarlyExitNet.from_backbone(bb, [2, 4], lambda k, s: shapes.append(s) or nn.Flatten(), example_input=x)
    assert shapes == [(4, 4, 4), (6, 4, 4)]
    named = nn.Sequential()
    for i, m in enumerate(bb):
        named.add_module(f"l{i}", m)
    by_name = EarlyExitNet.from_backbone(named, ["l1", "l4"], lambda k, shape: conv_head(shape[0], 3))
    assert [len(s) for s in by_name.stages] == [2, 3]
    with pytest.raises(ValueError, match="no layer named 'zz'"):
        EarlyExitNet.from_backbone(named, ["zz", "l4"], lambda k, s: nn.Flatten())
    with pytest.raises(ValueError, match="last attach point"):
        EarlyExitNet.from_backbone(bb, [1, 3], lambda k, s: nn.Flatten())
    with pytest.raises(ValueError, match="increasing"):
        EarlyExitNet.from_backbone(bb, [3, 1, 4], lambda k, s: nn.Flatten())
    with pytest.raises(TypeError, match="backbone"):
        EarlyExitNet.from_backbone(nn.Linear(2, 2), [0], lambda k, s: nn.Flatten())


@pytest.mark.parametrize("factory,size", [(small_cnn_28, 28), (small_cnn_8, 8)])
def test_ready_made_cnns(factory, size):
    net = factory(num_classes=7)
    net.eval()
    outs = net(torch.randn(3, 1, size, size))
    assert len(outs) == 4 and all(o.shape == (3, 7) for o in outs)
    allowed = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Flatten,
               nn.Linear, nn.Sequential, nn.ModuleList, EarlyExitNet)
    assert all(isinstance(m, allowed) for m in net.modules())


def test_small_resnet_32():
    from exitnet.torch._model import small_resnet_32
    torch.manual_seed(0)
    net = small_resnet_32(num_classes=5).eval()
    outs = net(torch.randn(2, 3, 32, 32))
    assert [o.shape for o in outs] == [(2, 5)] * 4


@pytest.mark.parametrize("name,shape", [("small_cnn_28", (1, 28, 28)), ("small_cnn_8", (1, 8, 8)),
                                        ("small_resnet_32", (3, 32, 32))])
def test_ready_made_models_run_in_the_runtime(tmp_path, name, shape):
    """Every ready-made model exports; the Go runtime's logits equal torch's (eval mode)."""
    import numpy as np
    from exitnet.runtime import Model
    from exitnet.torch._export import export
    from exitnet.torch import _model

    torch.manual_seed(0)
    net = getattr(_model, name)(num_classes=6)
    # non-trivial BatchNorm statistics so that folding is exercised
    net.train()
    with torch.no_grad():
        net(torch.randn(16, *shape))
    net.eval()
    x = torch.randn(5, *shape)
    with torch.no_grad():
        ref = torch.stack(net(x)).numpy()
    path = export(net, tmp_path / "m.exitnet", shape)
    with Model(path) as m:
        out = m.predict(x.numpy(), thresholds=None, return_logits=True, output="numpy")
    np.testing.assert_allclose(out["logits"], ref, rtol=1e-4, atol=1e-4)
