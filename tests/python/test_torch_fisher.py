"""exitnet.torch fisher_diagonal against an independent reference.

Reference: a float64 copy of the model, one sample at a time, ``torch.autograd.grad`` of
−log p(c|x_n) for the classes of the label mode, squared, weighted, averaged over samples
(``ref_fisher`` below). Nothing in the reference goes through exitnet.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from exitnet import fisher as gofisher
from exitnet.torch._fisher import FisherResult, fisher_diagonal, fisher_for_exit
from exitnet.torch._model import EarlyExitNet

torch.set_num_threads(1)


def _xd(x):
    return x.double() if x.is_floating_point() else x


def ref_fisher(model, x, labels_fn, forward=None, names=None):
    """F = mean_n Σ_(c,w) in labels_fn(n, p_n) w·(∂/∂θ −log p(c|x_n))², float64, sample by sample."""
    forward = forward or (lambda m, t: m(t))
    m = copy.deepcopy(model).double().eval()
    P = dict(m.named_parameters())
    names = list(P) if names is None else list(names)
    out = {n: torch.zeros_like(P[n]) for n in names}
    N = x.shape[0]
    for i in range(N):
        z = forward(m, _xd(x[i : i + 1]))[0]
        lp = torch.log_softmax(z, -1)
        for c, w in labels_fn(i, lp.exp().detach()):
            g = torch.autograd.grad(-lp[c], [P[n] for n in names], retain_graph=True, allow_unused=True)
            for n, gi in zip(names, g):
                if gi is not None:
                    out[n] += w * gi**2
    return {n: v / N for n, v in out.items()}


def exact_labels(i, p):
    return [(c, float(p[c])) for c in range(p.shape[0])]


def true_labels(y):
    return lambda i, p: [(int(y[i]), 1.0)]


def argmax_labels(i, p):
    return [(int(p.argmax()), 1.0)]


def assert_fisher_close(F, R, rtol=2e-4):
    assert set(F.keys()) == set(R.keys()), (sorted(F.keys()), sorted(R.keys()))
    for n in R:
        f = F[n].detach().double().cpu()
        r = R[n].detach().double().cpu()
        assert f.shape == r.shape, n
        scale = float(r.abs().max())
        np.testing.assert_allclose(f.numpy(), r.numpy(), rtol=rtol, atol=rtol * scale + 1e-12, err_msg=n)


def batches_of(x, y, sizes):
    out, a = [], 0
    for s in sizes:
        out.append((x[a : a + s], y[a : a + s]))
        a += s
    assert a == x.shape[0]
    return out


def mlp(bias=True, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 7, bias=bias), nn.Tanh(), nn.Linear(7, 5, bias=bias), nn.ReLU(),
                         nn.Linear(5, 4, bias=bias))


def data(n=13, shape=(6,), classes=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)


# ---------------------------------------------------------------------------------------------
# Linear
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["go", "torch"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mode", ["exact", "empirical", "argmax"])
def test_linear(bias, mode, backend):
    net = mlp(bias)
    x, y = data()
    F = fisher_diagonal(net, batches_of(x, y, [5, 8]), label_mode=mode, backend=backend)
    lab = {"exact": exact_labels, "empirical": true_labels(y), "argmax": argmax_labels}[mode]
    assert_fisher_close(F, ref_fisher(net, x, lab))
    assert F.n_samples == 13 and F.label_mode == mode and F.granularity == "per_sample"
    assert all(F.methods[n] == "linear" for n in F)
    for n, p in net.named_parameters():
        assert F[n].dtype == p.dtype and F[n].device == p.device and F[n].shape == p.shape


@pytest.mark.parametrize("backend", ["go", "torch"])
def test_subset_of_a_layers_parameters(backend):
    # Only some roles of a layer selected: a Linear bias, a Conv2d bias, a Conv2d weight alone.
    torch.manual_seed(12)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Conv2d(3, 2, 2, stride=2), nn.Flatten(),
                        nn.Linear(2 * 2 * 2, 5), nn.Tanh(), nn.Linear(5, 3))
    x, _ = data(n=6, shape=(2, 6, 6), classes=3)
    sel = {"lb": net[4].bias, "cb": net[0].bias, "cw": net[2].weight, "lw": net[6].weight}
    F = fisher_diagonal(net, [x[:2], x[2:]], params=sel, label_mode="exact", backend=backend)
    R = ref_fisher(net, x, exact_labels, names=["4.bias", "0.bias", "2.weight", "6.weight"])
    assert_fisher_close(F, {"lb": R["4.bias"], "cb": R["0.bias"], "cw": R["2.weight"], "lw": R["6.weight"]})


def test_linear_float64_model():
    net = mlp().double()
    x, y = data()
    F = fisher_diagonal(net, [(x.double(), y)], label_mode="exact")
    assert F["0.weight"].dtype == torch.float64
    assert_fisher_close(F, ref_fisher(net, x, exact_labels))


def test_linear_on_sequences():
    # A Linear on (N, T, in): per-sample gradient Σ_t g_t a_tᵀ (not rank one).
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Flatten(), nn.Linear(18, 3))
    x = torch.randn(9, 3, 5)
    y = torch.randint(0, 3, (9,))
    F = fisher_diagonal(net, [(x, y)], label_mode="exact")
    assert F.methods["0.weight"] == "linear_seq" and F.methods["0.bias"] == "linear_seq"
    assert_fisher_close(F, ref_fisher(net, x, exact_labels))


# ---------------------------------------------------------------------------------------------
# Conv2d
# ---------------------------------------------------------------------------------------------

CONVS = {
    "plain": dict(cin=3, cout=4, k=3),
    "stride_pad_bias": dict(cin=3, cout=4, k=3, stride=2, padding=1),
    "dilation": dict(cin=2, cout=3, k=3, dilation=2, padding=2),
    "groups": dict(cin=4, cout=6, k=3, groups=2, padding=1, stride=(2, 1)),
    "depthwise": dict(cin=4, cout=4, k=3, groups=4, padding=1),
    "depthwise_mult": dict(cin=3, cout=6, k=(3, 2), groups=3, stride=2),
    "no_bias_rect": dict(cin=3, cout=5, k=(1, 3), padding=(0, 1), bias=False),
    "same_even_kernel": dict(cin=2, cout=3, k=4, padding="same"),
    "reflect": dict(cin=2, cout=3, k=3, padding=1, padding_mode="reflect"),
}


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's own
@pytest.mark.parametrize("backend", ["go", "torch"])
@pytest.mark.parametrize("case", sorted(CONVS))
def test_conv2d(case, backend, monkeypatch):
    import exitnet.torch._fisher_layers as mod

    monkeypatch.setattr(mod, "_CONV_BUDGET", 200)  # torch backend: chunks of a few samples
    c = dict(CONVS[case])
    torch.manual_seed(4)
    conv = nn.Conv2d(c.pop("cin"), c.pop("cout"), c.pop("k"), **c)
    net = nn.Sequential(conv, nn.Tanh(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.LazyLinear(3))
    x, y = data(n=7, shape=(conv.in_channels, 9, 8), classes=3)
    net(x[:1])  # materialise the lazy layer
    F = fisher_diagonal(net, batches_of(x, y, [3, 4]), label_mode="exact", backend=backend)
    assert F.methods["0.weight"] == "conv2d"
    assert_fisher_close(F, ref_fisher(net, x, exact_labels))


@pytest.mark.parametrize("slow", ["go", "torch"])
def test_auto_backend_picks_the_faster_per_layer(slow, monkeypatch):
    """backend="auto" times both factor paths per layer on the first batch and keeps the faster:
    make one artificially slow and the other must be chosen, for Linear and Conv2d alike, and
    the Fisher still matches the per-sample reference."""
    import time

    import exitnet.torch._fisher_runner as runner_mod
    import exitnet.torch._fisher_runner_plan as plan_mod
    import exitnet.torch._fisher_runner_step as step_mod

    real = plan_mod.feed_factors

    def feed(acc, backend, *a):
        if backend == slow:
            time.sleep(0.05)  # far above either path on these tiny layers, even under load
        return real(acc, backend, *a)

    monkeypatch.setattr(plan_mod, "feed_factors", feed)  # the timing on the first batch
    monkeypatch.setattr(step_mod, "feed_factors", feed)  # and every later batch, as before the split
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 5 * 4, 4))
    x, y = data(n=6, shape=(2, 5, 4), classes=4)
    r = runner_mod._FisherRunner(net, None, None, "exact", 0, "auto")
    with runner_mod._ModeGuard(net, r.cand.values()):
        r.plan((x[:3], y[:3]))
        assert {s.kind: s.backend for s in r.sites} == {"conv2d": {"go": "torch", "torch": "go"}[slow],
                                                        "linear": {"go": "torch", "torch": "go"}[slow]}
        r.remove()
    F = fisher_diagonal(net, batches_of(x, y, [3, 3]), label_mode="exact", backend="auto")
    assert_fisher_close(F, ref_fisher(net, x, exact_labels))


# ---------------------------------------------------------------------------------------------
# Normalisation layers, in-place ops
# ---------------------------------------------------------------------------------------------


def _perturb_norms(net):
    torch.manual_seed(7)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)


def test_batchnorm2d_affine_with_inplace_relu():
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
                        nn.Conv2d(4, 3, 3), nn.BatchNorm2d(3), nn.ReLU(inplace=True),
                        nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
    _perturb_norms(net)
    x, y = data(n=8, shape=(2, 6, 6), classes=3)
    F = fisher_diagonal(net, batches_of(x, y, [8]), label_mode="exact")
    assert F.methods["1.weight"] == "norm" and F.methods["1.bias"] == "norm"
    assert F.methods["0.weight"] == "conv2d"
    assert_fisher_close(F, ref_fisher(net, x, exact_labels))


def test_layernorm_and_groupnorm():
    torch.manual_seed(6)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.GroupNorm(2, 4), nn.Tanh(), nn.Flatten(),
                        nn.Linear(4 * 3 * 3, 6), nn.LayerNorm(6), nn.Tanh(), nn.Linear(6, 3))
    _perturb_norms(net)
    x, y = data(n=7, shape=(2, 5, 5), classes=3)
    F = fisher_diagonal(net, [(x, y)], label_mode="empirical")
    assert F.methods["1.weight"] == "norm" and F.methods["5.bias"] == "norm"
    assert_fisher_close(F, ref_fisher(net, x, true_labels(y)))


# ---------------------------------------------------------------------------------------------
# Label modes
# ---------------------------------------------------------------------------------------------


def test_exact_is_the_expectation_over_classes():
    # Explicit Σ_c p(c|x)·g_c², built from per-class empirical references with constant labels.
    net = mlp(seed=2)
    x, _ = data(n=9)
    F = fisher_diagonal(net, [x], label_mode="exact")
    m = copy.deepcopy(net).double().eval()
    with torch.no_grad():
        p = torch.softmax(m(x.double()), 1)
    expl = None
    for c in range(4):
        per = [ref_fisher(net, x[i : i + 1], lambda _, __: [(c, 1.0)]) for i in range(9)]
        for i in range(9):
            term = {n: p[i, c] * v / 9 for n, v in per[i].items()}
            expl = term if expl is None else {n: expl[n] + term[n] for n in expl}
    assert_fisher_close(F, expl)


def test_sampled_uses_go_labels_with_fixed_seed():
    net = mlp(seed=3)
    x, _ = data(n=12)
    sizes = [5, 7]
    F = fisher_diagonal(net, [x[:5], x[5:]], label_mode="sampled", seed=11)
    # The same labels, drawn independently: sample n of the stream uses row index n.
    with torch.no_grad():
        logits = net.eval()(x).numpy().astype(np.float32)
    labels = np.concatenate([
        np.asarray(gofisher.sample_labels(logits[a : a + s], **_sample_kw(11, a)))
        for a, s in zip([0, 5], sizes)
    ])
    assert labels.shape == (12,)
    R = ref_fisher(net, x, lambda i, p: [(int(labels[i]), 1.0)])
    assert_fisher_close(F, R)
    # Another seed draws other labels (12 samples, 4 classes: a different Fisher).
    F2 = fisher_diagonal(net, [x], label_mode="sampled", seed=12)
    assert not torch.allclose(F2["4.weight"], F["4.weight"])


def test_sampled_labels_do_not_depend_on_batching():
    net = mlp(seed=6)
    x, _ = data(n=12)
    a = fisher_diagonal(net, [x[:5], x[5:]], label_mode="sampled", seed=3)
    b = fisher_diagonal(net, [x[:2], x[2:9], x[9:]], label_mode="sampled", seed=3)
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-5, atol=1e-9)


def _sample_kw(seed, offset):
    """sample_labels arguments for rows starting at global row ``offset``."""
    import inspect

    kw = {"seed": seed}
    if "row_offset" in inspect.signature(gofisher.sample_labels).parameters:
        kw["row_offset"] = offset
    else:
        kw["seed"] = seed + (0 if offset == 0 else 1)  # per-batch seeds: seed + batch index
    return kw


def test_argmax_equals_empirical_with_predicted_labels():
    net = mlp(seed=4)
    x, _ = data(n=10)
    with torch.no_grad():
        pred = net.eval()(x).argmax(1)
    Fa = fisher_diagonal(net, [x[:4], x[4:]], label_mode="argmax")
    Fe = fisher_diagonal(net, [(x, pred)], label_mode="empirical")
    for n in Fa:
        torch.testing.assert_close(Fa[n], Fe[n], rtol=1e-5, atol=1e-9)
    assert_fisher_close(Fa, ref_fisher(net, x, argmax_labels))


def test_batched_mode_is_mean_of_squared_minibatch_gradients():
    net = mlp(seed=5)
    x, y = data(n=12)
    bs = batches_of(x, y, [4, 4, 4])
    F = fisher_diagonal(net, bs, label_mode="batched")
    assert F.granularity == "batched" and F.n_samples == 12
    m = copy.deepcopy(net).double().eval()
    P = dict(m.named_parameters())
    R = {n: torch.zeros_like(p) for n, p in P.items()}
    for xb, yb in bs:
        loss = nn.functional.cross_entropy(m(xb.double()), yb)  # mean-reduced
        for n, g in zip(P, torch.autograd.grad(loss, list(P.values()))):
            R[n] += g**2 / 3
    assert_fisher_close(F, R)
    # ... which is far below the per-sample Fisher (about F/B near convergence; here smaller too).
    Fe = fisher_diagonal(net, bs, label_mode="empirical")
    assert sum(float(F[n].sum()) for n in F) < sum(float(Fe[n].sum()) for n in Fe)


# ---------------------------------------------------------------------------------------------
# Reuse, sharing, fallback rows
# ---------------------------------------------------------------------------------------------


class Tricky(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5, 4)
        self.l1 = nn.Linear(4, 4)
        self.shared = nn.Linear(4, 4)  # called twice
        self.scale = nn.Parameter(torch.randn(4))  # a bare parameter
        self.tied = nn.Linear(4, 4, bias=False)
        self.tied.weight = self.l1.weight  # weight tying
        self.head = nn.Linear(4, 3)
        self.unused = nn.Linear(2, 2)

    def forward(self, x):
        h = self.emb(x).mean(1)
        h = torch.tanh(self.l1(h))
        h = torch.tanh(self.shared(torch.tanh(self.shared(h))))
        h = self.tied(h) * self.scale
        # The head bias is also used outside the module: its factor sum mismatches the gradient.
        return self.head(h) + 0.5 * self.head.bias


def test_reused_and_shared_parameters_are_handled_by_rows():
    torch.manual_seed(8)
    net = Tricky()
    x = torch.randint(0, 5, (7, 3))
    y = torch.randint(0, 3, (7,))
    F = fisher_diagonal(net, batches_of(x, y, [3, 4]), label_mode="exact")
    for n in ["emb.weight", "scale", "l1.weight", "shared.weight", "shared.bias", "head.bias"]:
        assert F.methods[n] == "rows", (n, F.methods[n])
    assert F.methods["l1.bias"] == "linear" and F.methods["head.weight"] == "linear"
    assert "unused.weight" not in F  # default params: only those that receive gradient
    R = ref_fisher(net, x, exact_labels, names=list(F))
    assert_fisher_close(F, R)


def test_rows_path_in_sample_chunks(monkeypatch):
    import exitnet.torch._fisher_layers as mod

    monkeypatch.setattr(mod, "_ROWS_BUDGET", 50)  # forces chunks of one sample
    torch.manual_seed(8)
    net = Tricky()
    x = torch.randint(0, 5, (5, 3))
    F = fisher_diagonal(net, [x], label_mode="exact")
    assert F.methods["emb.weight"] == "rows"
    assert_fisher_close(F, ref_fisher(net, x, exact_labels, names=list(F)))


class FoldsTime(nn.Module):
    """A Linear on (N·T, d) rows (time folded into the batch) and one on (T, N, d)."""

    def __init__(self):
        super().__init__()
        self.frame = nn.Linear(4, 5)
        self.seqfirst = nn.Linear(5, 5)
        self.head = nn.Linear(5, 3)

    def forward(self, x):  # x: (N, T, 4)
        N, T, d = x.shape
        h = torch.tanh(self.frame(x.reshape(N * T, d))).reshape(N, T, 5)
        h = torch.tanh(self.seqfirst(h.transpose(0, 1))).mean(0)
        return self.head(h)


def test_layers_whose_leading_dim_is_not_the_batch_use_rows():
    torch.manual_seed(13)
    net = FoldsTime()
    x = torch.randn(6, 3, 4)
    F = fisher_diagonal(net, [x[:2], x[2:]], label_mode="exact")
    assert F.methods["frame.weight"] == "rows" and F.methods["seqfirst.weight"] == "rows"
    assert F.methods["head.weight"] == "linear"
    assert_fisher_close(F, ref_fisher(net, x, exact_labels))


def test_explicit_params_unreached_are_zero():
    torch.manual_seed(9)
    net = Tricky()
    x = torch.randint(0, 5, (4, 3))
    F = fisher_diagonal(net, [x], params={"U": net.unused.weight, "H": net.head.weight},
                        label_mode="argmax")
    assert list(F) == ["U", "H"]
    assert F.methods["U"] == "unreached" and torch.count_nonzero(F["U"]) == 0
    R = ref_fisher(net, x, argmax_labels, names=["head.weight"])
    assert_fisher_close({"H": F["H"]}, {"H": R["head.weight"]})


# ---------------------------------------------------------------------------------------------
# Exits, modes, merging, sample limits
# ---------------------------------------------------------------------------------------------


def tiny_exit_net():
    torch.manual_seed(10)
    stages = [nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU()),
              nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU())]
    heads = [nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 3)),
             nn.Sequential(nn.Flatten(), nn.Linear(4 * 2 * 2, 3))]
    net = EarlyExitNet(stages, heads)
    _perturb_norms(net)
    return net


@pytest.mark.parametrize("k", [0, 1])
def test_fisher_for_exit(k):
    net = tiny_exit_net()
    x, y = data(n=6, shape=(1, 6, 6), classes=3)
    F = fisher_for_exit(net, k, batches_of(x, y, [2, 4]), label_mode="exact")
    assert set(F) == set(net.parameters_for_exit(k))
    R = ref_fisher(net, x, exact_labels, forward=lambda m, t: m.forward_exit(t, k), names=list(F))
    assert_fisher_close(F, R)


@pytest.mark.parametrize("which", ["small_cnn_8", "small_resnet_32"])
def test_ready_made_models_take_the_factor_paths(which):
    from exitnet.torch import _model

    torch.manual_seed(14)
    net = getattr(_model, which)(width=4) if which == "small_resnet_32" else _model.small_cnn_8()
    _perturb_norms(net)
    shape = (3, 16, 16) if which == "small_resnet_32" else (1, 8, 8)
    x, _ = data(n=4, shape=shape, classes=10)
    k = 1 if which == "small_resnet_32" else 3
    F = fisher_for_exit(net, k, [x[:3], x[3:]], label_mode="exact")
    assert set(F.methods.values()) == {"conv2d", "linear", "norm"}
    R = ref_fisher(net, x, exact_labels, forward=lambda m, t: m.forward_exit(t, k), names=list(F))
    assert_fisher_close(F, R)


def test_modes_and_flags_restored():
    net = tiny_exit_net()
    net.train()
    net.heads[1].eval()  # a mixed state must come back exactly
    net.stages[1][0].weight.requires_grad_(False)
    net.stages[0][0].weight.grad = torch.full_like(net.stages[0][0].weight, 7.0)
    before_modes = [m.training for m in net.modules()]
    bn = net.stages[0][1]
    rm, rv, nb = bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked)
    x, y = data(n=6, shape=(1, 6, 6), classes=3)
    seen = []
    hook = bn.register_forward_hook(lambda m, a, o: seen.append(m.training))
    F = fisher_for_exit(net, 1, [(x, y)], label_mode="empirical")
    hook.remove()
    assert seen and not any(seen)  # the Fisher pass ran in eval mode
    assert [m.training for m in net.modules()] == before_modes
    assert net.stages[1][0].weight.requires_grad is False
    assert "stages.1.0.weight" in F and float(F["stages.1.0.weight"].sum()) > 0  # frozen but included
    assert torch.equal(net.stages[0][0].weight.grad, torch.full_like(net.stages[0][0].weight, 7.0))
    assert net.stages[1][0].weight.grad is None
    assert torch.equal(bn.running_mean, rm) and torch.equal(bn.running_var, rv)
    assert int(bn.num_batches_tracked) == nb


def test_failure_midway_restores_the_model():
    net = tiny_exit_net()
    net.train()
    x, y = data(n=6, shape=(1, 6, 6), classes=3)

    def batches():
        yield x[:3], y[:3]
        raise RuntimeError("loader broke")

    with pytest.raises(RuntimeError, match="loader broke"):
        fisher_for_exit(net, 1, batches(), label_mode="exact")
    assert all(m.training for m in net.modules())
    assert all(not m._forward_hooks for m in net.modules())
    assert all(p.grad is None for p in net.parameters())


def test_merge_of_two_halves_equals_one_pass():
    net = tiny_exit_net()
    x, y = data(n=10, shape=(1, 6, 6), classes=3)
    fwd = lambda m, t: m.forward_exit(t, 1)  # noqa: E731
    whole = fisher_diagonal(net, batches_of(x, y, [4, 6]), forward=fwd, label_mode="exact")
    a = fisher_diagonal(net, batches_of(x[:3], y[:3], [3]), forward=fwd, label_mode="exact")
    b = fisher_diagonal(net, batches_of(x[3:], y[3:], [2, 5]), forward=fwd, label_mode="exact")
    m = a.merge(b)
    assert isinstance(m, FisherResult) and m.n_samples == 10
    for n in whole:
        torch.testing.assert_close(m[n], whole[n], rtol=1e-5, atol=1e-10)
        # And the merged mean is the count-weighted mean of the halves (independent arithmetic).
        torch.testing.assert_close(m[n], (3 * a[n] + 7 * b[n]) / 10, rtol=1e-5, atol=1e-10)
    with pytest.raises(ValueError, match="label mode"):
        a.merge(fisher_diagonal(net, [x[:2]], forward=fwd, label_mode="argmax"))


def test_max_samples_truncates():
    net = mlp()
    x, y = data(n=13)
    F = fisher_diagonal(net, batches_of(x, y, [5, 8]), label_mode="empirical", max_samples=7, progress=True)
    assert F.n_samples == 7
    assert_fisher_close(F, ref_fisher(net, x[:7], true_labels(y)))


def test_result_mapping_and_repr():
    net = mlp()
    x, y = data()
    F = fisher_diagonal(net, [(x, y)], label_mode="empirical", progress=False)
    d = F.to_dict()
    assert isinstance(d, dict) and list(d) == [n for n, _ in net.named_parameters()]
    assert F.normalisation == "mean_over_samples"
    assert "n_samples=13" in repr(F)
    np.testing.assert_allclose(F.numpy()["0.weight"], d["0.weight"].numpy())
    np.testing.assert_allclose(F.sums["0.weight"] / 13, d["0.weight"].numpy(), rtol=1e-6)


def test_summary_and_plot():
    import matplotlib

    matplotlib.use("Agg")
    net = mlp()
    x, y = data()
    F = fisher_diagonal(net, [(x, y)], label_mode="empirical")
    rows = F.summary()
    assert [r["name"] for r in rows] == list(F)
    for r in rows:
        t = F[r["name"]].double()
        assert r["numel"] == t.numel() and r["shape"] == tuple(t.shape) and r["method"] == "linear"
        assert r["mean"] == pytest.approx(float(t.mean())) and r["max"] == pytest.approx(float(t.max()))
    ax = F.plot(stat="max")
    assert len(ax.patches) == len(F)
    with pytest.raises(ValueError, match="stat"):
        F.plot(stat="median")


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


class SqrtNet(nn.Module):
    """Finite logits, infinite gradient where a(x) = 1 − x_0 is 0: d sqrt(u)/du at u = 0."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(4, 2)
        with torch.no_grad():
            self.a.weight.zero_()
            self.a.weight[:, 0] = -1.0
            self.a.bias.fill_(1.0)

    def forward(self, x):
        return self.b(torch.sqrt(self.a(x)))


def test_non_finite_gradients_name_the_parameter():
    net = SqrtNet()
    ok = torch.zeros(4, 3)
    bad = torch.zeros(4, 3)
    bad[:, 0] = 1.0
    assert torch.isfinite(net(bad)).all()
    # In the first batch (the planning pass, torch side) ...
    with pytest.raises(ValueError, match="'a.weight'"):
        fisher_diagonal(net, [bad], label_mode="argmax")
    # ... and in a later one (refused by the Go accumulator, InvalidArgumentError is a ValueError).
    with pytest.raises(ValueError, match="a.weight"):
        fisher_diagonal(net, [ok, bad], label_mode="argmax")


def test_bad_input():
    net = mlp()
    x, y = data()
    with pytest.raises(ValueError, match="label_mode"):
        fisher_diagonal(net, [(x, y)], label_mode="fancy")
    with pytest.raises(ValueError, match="batches: no samples"):
        fisher_diagonal(net, [], label_mode="exact")
    with pytest.raises(ValueError, match="batches: label_mode 'empirical' needs labels"):
        fisher_diagonal(net, [x], label_mode="empirical")
    with pytest.raises(ValueError, match=r"batches: labels must be in \[0, 4\)"):
        fisher_diagonal(net, [(x, y + 4)], label_mode="empirical")
    with pytest.raises(ValueError, match="batches: y must have shape"):
        fisher_diagonal(net, [(x, y[:3])], label_mode="empirical")
    with pytest.raises(ValueError, match="forward: logits must have shape"):
        fisher_diagonal(net, [x], forward=lambda m, t: m(t).sum(1), label_mode="exact")
    with pytest.raises(TypeError, match="forward: must return a logits tensor"):
        fisher_diagonal(net, [x], forward=lambda m, t: [m(t)], label_mode="exact")
    with pytest.raises(ValueError, match="params: 'nope' is not a parameter name"):
        fisher_diagonal(net, [x], params=["nope"])
    with pytest.raises(ValueError, match="params: 'w' is not a parameter of model"):
        fisher_diagonal(net, [x], params={"w": nn.Parameter(torch.zeros(2))})
    with pytest.raises(ValueError, match="max_samples"):
        fisher_diagonal(net, [x], max_samples=0)
    with pytest.raises(ValueError, match="forward: logits contain NaN"):
        fisher_diagonal(net, [x * float("nan")], label_mode="exact")
    bn = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.Linear(4, 3))
    with pytest.raises(ValueError, match="batch statistics"):
        fisher_diagonal(bn, [x], label_mode="exact")
    with pytest.raises(ValueError, match="backend"):
        fisher_diagonal(net, [x], backend="cuda")
    with pytest.raises(TypeError, match="net: needs exit_logits"):
        fisher_for_exit(net, 0, [x])
