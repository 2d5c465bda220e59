"""The torch-device Fisher accumulator (float64 state where the model lives) against Go's.

On CPU with the Go path disabled (``accumulator="torch"``) every label mode and layer path
(Linear, Conv2d, BatchNorm, rows through torch.func) must give the Go accumulator's Fisher to 1e-6,
and merging two halves must add the float64 sums exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from exitnet.torch._fisher import fisher_diagonal
from exitnet.torch._fisher_accumulator import TorchFisherAccumulator


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.emb = nn.Parameter(torch.randn(3) * 0.1)  # used outside a module: the rows path
        self.fc = nn.Linear(3 * 4 * 4, 5)

    def forward(self, x):
        h = torch.tanh(self.bn(self.conv(x))) + self.emb.view(1, 3, 1, 1)
        return self.fc(h.flatten(1))


def _setup(seed=0, n=22):
    torch.manual_seed(seed)
    net = Mixed()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.2, 0.2)
        net.bn.running_var.uniform_(0.5, 1.5)
    net.eval()
    x = torch.randn(n, 2, 4, 4)
    y = torch.randint(0, 5, (n,))
    return net, x, y


def _batches(x, y, sizes):
    out, a = [], 0
    for s in sizes:
        out.append((x[a : a + s], y[a : a + s]))
        a += s
    return out


@pytest.mark.parametrize("mode", ["exact", "sampled", "empirical", "batched"])
def test_torch_accumulator_equals_go(mode):
    net, x, y = _setup()
    b = _batches(x, y, [8, 8, 6])
    go = fisher_diagonal(net, b, label_mode=mode, seed=3, accumulator="go", backend="go")
    go_t = fisher_diagonal(net, b, label_mode=mode, seed=3, accumulator="go", backend="torch")
    to = fisher_diagonal(net, b, label_mode=mode, seed=3, accumulator="torch")
    assert to.methods == go.methods
    if mode != "batched":
        assert {"conv2d", "norm", "linear"} <= set(to.methods.values()) and to.methods["emb"] == "rows"
    assert to.n_samples == go.n_samples == 22
    for n in go:
        torch.testing.assert_close(to[n], go[n], rtol=1e-6, atol=1e-12)
        torch.testing.assert_close(to[n], go_t[n], rtol=1e-6, atol=1e-12)
        assert to.sum_tensors()[n].dtype == torch.float64


def test_torch_accumulator_merges_exactly():
    net, x, y = _setup(seed=1)
    a = fisher_diagonal(net, _batches(x[:10], y[:10], [5, 5]), accumulator="torch")
    b = fisher_diagonal(net, _batches(x[10:], y[10:], [7, 5]), accumulator="torch")
    whole = fisher_diagonal(net, _batches(x, y, [5, 5, 7, 5]), accumulator="torch")
    m = a.merge(b)
    assert m.n_samples == 22
    sa, sb, sm = a.sum_tensors(), b.sum_tensors(), m.sum_tensors()
    for n in sm:
        assert torch.equal(sm[n], sa[n] + sb[n])  # the float64 sums add, nothing else
        torch.testing.assert_close(m[n], whole[n], rtol=1e-6, atol=1e-12)
    # the accumulator object: state round trip, merge, reset
    layout = {n: tuple(t.shape) for n, t in m.items()}
    acc1, acc2 = TorchFisherAccumulator(layout), TorchFisherAccumulator(layout)
    acc1.load_state(sa, a.n_samples)
    acc2.load_state(sb, b.n_samples)
    acc1.merge(acc2)
    s, c = acc1.state()
    assert c == 22 and all(torch.equal(s[n], sm[n]) for n in s)
    for n, f in acc1.compute().items():
        torch.testing.assert_close(f, m[n].float(), rtol=1e-6, atol=1e-12)
    acc1.reset()
    assert acc1.count == 0 and all(float(v.abs().sum()) == 0 for v in acc1.sums.values())
    with pytest.raises(ValueError, match="no samples"):
        acc1.compute()
    with pytest.raises(ValueError, match="negative"):
        acc2.load_state({n: -torch.ones(sh) for n, sh in layout.items()}, 3)
    with pytest.raises(ValueError, match="NaN or Inf"):
        acc2.update_squared("fc.bias", torch.full((5,), float("nan")), 1)
    with pytest.raises(ValueError, match="backend: 'go'"):
        fisher_diagonal(net, _batches(x, y, [22]), accumulator="torch", backend="go")


@pytest.mark.parametrize("mode,gamma", [("sum", 1.0), ("online", 0.7)])
def test_device_consolidation_equals_go(mode, gamma):
    from exitnet import fisher as gofisher
    from exitnet.torch._ewc import _consolidate_torch

    torch.manual_seed(2)
    fs = [{"a": torch.rand(4, 3), "b": torch.rand(5)} for _ in range(3)]
    got = _consolidate_torch(fs, mode, gamma)
    want = gofisher.consolidate([{k: v.numpy() for k, v in f.items()} for f in fs], mode=mode, gamma=gamma)
    for k in got:
        torch.testing.assert_close(got[k], torch.from_numpy(want[k]), rtol=1e-6, atol=0)
