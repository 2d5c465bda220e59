"""exitnet.torch EWC penalty against numpy float64, finite differences and the Go penalty."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from exitnet import fisher as gofisher
from exitnet.torch._ewc import EWC, ewc_penalty

torch.set_num_threads(1)


def rand_like_params(params, seed, positive=False):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for n, p in params.items():
        t = torch.randn(p.shape, generator=g, dtype=torch.float64)
        out[n] = t.abs() if positive else t
    return out


def net64(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)).double()


def np_penalty(params, fishers, anchors, lam):
    """λ/2 Σ_k Σ_i F_k,i (θ_i − θ*_k,i)² in numpy float64 (independent of torch)."""
    v = 0.0
    for F, A in zip(fishers, anchors):
        for n, f in F.items():
            d = params[n].detach().numpy().astype(np.float64) - np.asarray(A[n], np.float64)
            v += float((np.asarray(f, np.float64) * d * d).sum())
    return lam / 2 * v


def two_pairs(net):
    P = dict(net.named_parameters())
    F1 = {n: t for n, t in rand_like_params(P, 1, positive=True).items() if n.startswith("0.")}
    A1 = rand_like_params(P, 2)
    F2 = rand_like_params(P, 3, positive=True)
    A2 = rand_like_params(P, 4)
    return P, [F1, F2], [A1, A2]


def test_value_matches_numpy_and_half_convention():
    net = net64()
    P, Fs, As = two_pairs(net)
    v = ewc_penalty(net.named_parameters(), Fs, As, lam=3.5)
    assert v.dim() == 0 and v.dtype == torch.float64
    assert v.item() == pytest.approx(np_penalty(P, Fs, As, 3.5), rel=1e-12)
    # The ½ convention, spelled out on one scalar: λ/2 · F · d².
    w = nn.Parameter(torch.tensor([3.0], dtype=torch.float64))
    v1 = ewc_penalty({"w": w}, {"w": torch.tensor([2.0])}, {"w": torch.tensor([1.0])}, lam=5.0)
    assert v1.item() == pytest.approx(5.0 / 2 * 2.0 * 4.0)
    # Single pair: plain mappings instead of lists.
    v2 = ewc_penalty(P, Fs[1], As[1], lam=1.0)
    assert v2.item() == pytest.approx(np_penalty(P, Fs[1:], As[1:], 1.0), rel=1e-12)


def test_gradient_against_finite_differences():
    net = net64(1)
    P, Fs, As = two_pairs(net)
    lam = 0.7
    v = ewc_penalty(P, Fs, As, lam)
    grads = torch.autograd.grad(v, list(P.values()))
    h = 1e-6
    for (n, p), g in zip(P.items(), grads):
        flat = p.detach().view(-1)
        for i in range(flat.numel()):
            old = float(flat[i])
            with torch.no_grad():
                flat[i] = old + h
                up = np_penalty(P, Fs, As, lam)
                flat[i] = old - h
                dn = np_penalty(P, Fs, As, lam)
                flat[i] = old
            fd = (up - dn) / (2 * h)
            assert float(g.view(-1)[i]) == pytest.approx(fd, rel=1e-6, abs=1e-8), (n, i)
    # And the closed form λ Σ_k F_k (θ − θ*_k).
    for (n, p), g in zip(P.items(), grads):
        want = sum(lam * F[n] * (p.detach() - A[n]) for F, A in zip(Fs, As) if n in F)
        torch.testing.assert_close(g, want)


def test_matches_go_penalty():
    net = net64(2)
    P, Fs, As = two_pairs(net)
    f32 = lambda d: {n: np.asarray(t, np.float32) for n, t in d.items()}  # noqa: E731
    th = {n: p.detach().numpy().astype(np.float32) for n, p in P.items()}
    # Go takes one layout for all pairs: give every pair every parameter (zeros where absent).
    Fs_full = [{n: np.asarray(F.get(n, torch.zeros_like(P[n])), np.float32) for n in P} for F in Fs]
    go = gofisher.ewc_penalty(th, Fs_full, [f32(A) for A in As], 1.3)
    go_value = go[0] if isinstance(go, tuple) else go
    ours = ewc_penalty({n: torch.from_numpy(t) for n, t in th.items()},
                       [{n: torch.from_numpy(v) for n, v in F.items()} for F in Fs_full],
                       [{n: torch.from_numpy(v) for n, v in f32(A).items()} for A in As], 1.3)
    assert float(ours) == pytest.approx(float(go_value), rel=1e-5)
    if isinstance(go, tuple):  # (value, gradient)
        thp = {n: nn.Parameter(torch.from_numpy(t.copy())) for n, t in th.items()}
        v = ewc_penalty(thp, [{n: torch.from_numpy(x) for n, x in F.items()} for F in Fs_full],
                        [{n: torch.from_numpy(x) for n, x in f32(A).items()} for A in As], 1.3)
        grads = torch.autograd.grad(v, list(thp.values()))
        gg = go[1]
        for (n, _), g in zip(thp.items(), grads):
            np.testing.assert_allclose(g.numpy(), np.asarray(gg[n]).reshape(g.shape), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("path", ["torch", "go"])
def test_both_paths_float32_against_numpy(path, monkeypatch):
    import exitnet.torch._ewc as mod

    monkeypatch.setattr(mod, "_GO_MIN_NUMEL", 0 if path == "go" else 1 << 60)
    net = net64(9).float()
    P = dict(net.named_parameters())
    Fs = [{n: t.float() for n, t in rand_like_params(P, 40 + k, True).items()} for k in range(3)]
    Fs[0].pop("2.bias")
    As = [{n: t.float() for n, t in rand_like_params(P, 50 + k).items()} for k in range(3)]
    v = ewc_penalty(P, Fs, As, 0.9)
    assert v.dtype == torch.float32
    assert v.item() == pytest.approx(np_penalty(P, Fs, As, 0.9), rel=1e-5)
    grads = torch.autograd.grad(3.0 * v, list(P.values()))  # the incoming gradient is honoured
    for (n, p), g in zip(P.items(), grads):
        want = sum(0.9 * F[n].double() * (p.detach().double() - A[n].double()) for F, A in zip(Fs, As) if n in F)
        np.testing.assert_allclose(g.double().numpy(), 3.0 * want.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", ["torch", "go"])
def test_retain_graph_and_accumulation(path, monkeypatch):
    import exitnet.torch._ewc as mod

    monkeypatch.setattr(mod, "_GO_MIN_NUMEL", 0 if path == "go" else 1 << 60)
    w = nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    F, A = {"w": torch.tensor([0.5, 1.0, 2.0])}, {"w": torch.zeros(3)}
    v = ewc_penalty({"w": w}, F, A, 2.0)
    v.backward(retain_graph=True)
    first = w.grad.clone()
    torch.testing.assert_close(first, 2.0 * F["w"] * w.detach())
    w.grad.mul_(10.0)  # in-place work on .grad must not leak into the second backward
    v.backward()
    torch.testing.assert_close(w.grad, 10.0 * first + first)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(ewc_penalty({"w": w}, F, A, 2.0), [w], create_graph=True)[0].sum().backward()


def test_penalty_drives_parameters_back_to_anchor():
    net = net64(3)
    P = dict(net.named_parameters())
    F = rand_like_params(P, 5, positive=True)
    A = {n: p.detach().clone() for n, p in P.items()}
    with torch.no_grad():
        for p in P.values():
            p.add_(0.3)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    before = ewc_penalty(net, F, A, 1.0).item()
    for _ in range(5):
        opt.zero_grad()
        ewc_penalty(net, F, A, 1.0).backward()
        opt.step()
    assert ewc_penalty(net, F, A, 1.0).item() < before


def test_ewc_modes_against_formulas():
    net = net64(4)
    P = dict(net.named_parameters())
    small = [n for n in P if n.startswith("0.")]  # exit 0 depends on fewer parameters
    F1 = {n: t for n, t in rand_like_params(P, 10, True).items() if n in small}
    F2 = rand_like_params(P, 11, True)
    F3 = rand_like_params(P, 12, True)
    A1, A2, A3 = rand_like_params(P, 13), rand_like_params(P, 14), rand_like_params(P, 15)
    lam, gamma = 2.0, 0.6
    sep, sm, on = EWC(lam, "separate"), EWC(lam, "sum"), EWC(lam, "online", gamma=gamma)
    for F, A in [(F1, A1), (F2, A2), (F3, A3)]:
        for e in (sep, sm, on):
            e.consolidate(F, A)
    z = lambda F, n: F.get(n, torch.zeros_like(P[n]))  # noqa: E731
    want_sep = np_penalty(P, [F1, F2, F3], [A1, A2, A3], lam)
    Fsum = {n: z(F1, n) + F2[n] + F3[n] for n in P}
    Fon = {n: gamma * (gamma * z(F1, n) + F2[n]) + F3[n] for n in P}
    assert sep.penalty(net).item() == pytest.approx(want_sep, rel=1e-10)
    assert sm.penalty(net).item() == pytest.approx(np_penalty(P, [Fsum], [A3], lam), rel=1e-6)
    assert on.penalty(net).item() == pytest.approx(np_penalty(P, [Fon], [A3], lam), rel=1e-6)
    assert len(sep.fishers) == 3 and len(sm.fishers) == 1 and len(on.fishers) == 1
    for n in P:
        torch.testing.assert_close(on.fishers[0][n], Fon[n], rtol=1e-6, atol=1e-7)
    assert "online" in repr(on) and "consolidations=3" in repr(on)


def test_ewc_anchors_from_module_are_copies_and_state_roundtrip():
    net = net64(5)
    F = rand_like_params(dict(net.named_parameters()), 20, True)
    e = EWC(1.0)
    assert e.penalty(net).item() == 0.0  # nothing consolidated yet
    e.consolidate(F, net)
    assert e.penalty(net).item() == 0.0  # θ == θ*
    with torch.no_grad():
        net[0].weight.add_(1.0)  # the anchor must not move with the parameter
    want = 0.5 * float(F["0.weight"].sum())
    assert e.penalty(net).item() == pytest.approx(want, rel=1e-12)
    e2 = EWC(5.0, "sum")
    e2.load_state_dict(e.state_dict())
    assert e2.mode == "separate" and e2.lam == 1.0
    assert e2.penalty(net).item() == pytest.approx(want, rel=1e-12)


def test_ewc_with_fisher_result():
    from exitnet.torch._fisher import fisher_diagonal

    torch.manual_seed(6)
    net = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    x = torch.randn(8, 4)
    F = fisher_diagonal(net, [x], label_mode="exact")
    e = EWC(10.0, "online", gamma=0.9)
    e.consolidate(F, net)
    assert e.history == [{"n_samples": 8, "label_mode": "exact", "granularity": "per_sample",
                          "normalisation": "mean_over_samples"}]
    with torch.no_grad():
        net[2].bias.add_(0.5)
    v = e.penalty(net)
    assert v.dtype == torch.float32
    assert v.item() == pytest.approx(10.0 / 2 * 0.25 * float(F["2.bias"].sum()), rel=1e-5)


def test_bad_input():
    net = net64(7)
    P = dict(net.named_parameters())
    F = rand_like_params(P, 1, True)
    A = rand_like_params(P, 2)
    with pytest.raises(ValueError, match="lam"):
        ewc_penalty(P, F, A, -1.0)
    with pytest.raises(ValueError, match="lam"):
        ewc_penalty(P, F, A, float("nan"))
    with pytest.raises(ValueError, match="anchors: 1 anchor sets for 2 Fishers"):
        ewc_penalty(P, [F, F], [A], 1.0)
    with pytest.raises(ValueError, match=r"fishers\[0\]: 'x' is not among named_params"):
        ewc_penalty(P, {"x": torch.ones(2)}, {"x": torch.ones(2)}, 1.0)
    with pytest.raises(ValueError, match=r"anchors\[0\]: missing '0.bias'"):
        ewc_penalty(P, F, {k: v for k, v in A.items() if k != "0.bias"}, 1.0)
    with pytest.raises(ValueError, match=r"fishers\[0\]: '0.bias' has shape \(2,\)"):
        ewc_penalty(P, {**F, "0.bias": torch.ones(2)}, A, 1.0)
    with pytest.raises(ValueError, match="gamma"):
        EWC(1.0, "online", gamma=0.0)
    with pytest.raises(ValueError, match="gamma"):
        EWC(1.0, "online", gamma=1.5)
    with pytest.raises(ValueError, match="mode"):
        EWC(1.0, "weird")
    with pytest.raises(ValueError, match="lam"):
        EWC(-0.1)
    e = EWC(1.0)
    with pytest.raises(ValueError, match="fisher: '0.weight' contains NaN"):
        e.consolidate({**F, "0.weight": F["0.weight"] * float("nan")}, net)
    with pytest.raises(ValueError, match="fisher: '0.weight' has negative"):
        e.consolidate({**F, "0.weight": -F["0.weight"]}, net)
    with pytest.raises(ValueError, match="anchors: missing 'zz'"):
        e.consolidate({"zz": torch.ones(1)}, net)


def test_save_and_load_roundtrip(tmp_path):
    net = net64(8)
    P = dict(net.named_parameters())
    F1 = {n: t for n, t in rand_like_params(P, 30, True).items() if n.startswith("0.")}
    F2 = rand_like_params(P, 31, True)
    e = EWC(3.0, "separate")
    e.consolidate(F1, rand_like_params(P, 32))
    e.consolidate(F2, rand_like_params(P, 33))
    path = tmp_path / "ewc.arrow"
    e.history[1]["n_samples"] = 123  # provenance travels with the file
    e.save(path, meta={"note": "stage 2"})
    back = EWC.load(path)
    assert back.mode == "separate" and back.lam == 3.0 and back.n_consolidations == 2
    assert back.history == [{}, {"n_samples": 123}]
    assert [sorted(f) for f in back.fishers] == [sorted(F1), sorted(F2)]
    # float32 on disk: the penalty agrees to float32 precision (independent numpy formula).
    want = np_penalty(P, [{n: v.float() for n, v in F.items()} for F in e.fishers],
                      [{n: v.float() for n, v in A.items()} for A in e.anchors], 3.0)
    assert back.penalty(net).item() == pytest.approx(want, rel=1e-5)
    # Saving over it with a bad argument leaves the file intact; a truncated file is refused.
    with pytest.raises(ValueError, match="reserved"):
        e.save(path, meta={"lam": 1})
    assert EWC.load(path).n_consolidations == 2
    raw = path.read_bytes()
    bad = tmp_path / "bad.arrow"
    bad.write_bytes(raw[: len(raw) // 2])
    from exitnet import ExitnetIOError

    with pytest.raises(ExitnetIOError, match="truncated or corrupted|corrupted or truncated"):
        EWC.load(bad)
    with pytest.raises(ValueError, match="nothing consolidated"):
        EWC(1.0).save(tmp_path / "x.arrow")
