"""SequentialTrainer: what trains at each stage, the stability matrix, checkpoints, bad input.

References: hand evaluation of the network (torch forward + argmax), parameter snapshots taken by
the logging hook, brute-force forgetting, and an uninterrupted run for resume."""

import copy
import json
import os

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from exitnet import data
from exitnet.torch._model import EarlyExitNet, small_cnn_8
from exitnet.torch._results import TrainingResult, compare, forgetting
from exitnet.torch._batches import TrainData
from exitnet.torch._plugins import StepContext
from exitnet.torch._trainer import SequentialTrainer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def splits():
    s = data.digits(seed=0)
    # small: 240 train samples keep every fit around a second
    tr = s.train.tensors
    s.train = TensorDataset(tr[0][:240], tr[1][:240], tr[2][:240])
    return s


def _net(seed=0, width=4):
    torch.manual_seed(seed)
    return small_cnn_8(width=width)


def _snapshots(net):
    snaps = []

    def log(rec):
        if rec["event"] == "stage_end":
            snaps.append({k: v.detach().clone() for k, v in net.state_dict().items()})

    return snaps, log


def _fit(strategy, splits, net=None, **kw):
    net = net if net is not None else _net()
    kw.setdefault("epochs_per_stage", 1)
    kw.setdefault("progress", False)
    snaps, log = _snapshots(net)
    kw.setdefault("log", log)
    res = SequentialTrainer(net, strategy, **kw).fit(splits.train, splits.val, splits.test, analyse=False)
    return net, res, snaps


def _manual_acc(net, ds):
    net.eval()
    with torch.no_grad():
        outs = net(ds.tensors[0])
    return [float((o.argmax(1) == ds.tensors[1]).float().mean()) for o in outs]


def _changed(a, b, prefix):
    return any(not torch.equal(a[k], b[k]) for k in a if k.startswith(prefix))


def test_naive_trains_prefix_and_new_head_only(splits):
    net0 = _net()
    init = {k: v.clone() for k, v in net0.state_dict().items()}
    net, res, snaps = _fit("naive", splits, net=net0)
    assert len(snaps) == 4
    # stage 1 moved stage 0 (shared prefix) and head 1, not head 0 nor anything deeper
    assert _changed(snaps[0], snaps[1], "stages.0.")
    assert _changed(snaps[0], snaps[1], "heads.1.")
    assert not _changed(snaps[0], snaps[1], "heads.0.")
    assert not _changed(snaps[0], snaps[1], "stages.2.") and not _changed(init, snaps[1], "stages.3.")
    # the last row is the accuracy of the final network, evaluated by hand
    np.testing.assert_allclose(res.stability[3], _manual_acc(net, splits.test), atol=1e-12)
    assert np.isnan(res.stability[0, 1:]).all() and not np.isnan(np.tril(res.stability)).any()


def test_frozen_keeps_earlier_stages_and_bn_statistics(splits):
    net, res, snaps = _fit("frozen", splits)
    for k in range(1, 4):
        for j in range(k):
            assert not _changed(snaps[j], snaps[k], f"stages.{j}.")  # incl. running_mean/var
            assert not _changed(snaps[j], snaps[k], f"heads.{j}.")
    for j in range(4):
        assert np.all(res.stability[j:, j] == res.stability[j, j])
    np.testing.assert_array_equal(res.forgetting, 0.0)


def test_joint_trains_all_heads_from_the_start(splits):
    net0 = _net()
    init = {k: v.clone() for k, v in net0.state_dict().items()}
    net, res, snaps = _fit("joint", splits, net=net0)
    for j in range(4):
        assert _changed(init, snaps[0], f"heads.{j}.")
    np.testing.assert_allclose(res.stability[3], _manual_acc(net, splits.test), atol=1e-12)


def test_train_prefix_head_only_and_int(splits):
    _, _, snaps = _fit("naive", splits, train_prefix="head")
    assert not _changed(snaps[1], snaps[2], "stages.")
    _, _, snaps = _fit("naive", splits, train_prefix=2)
    assert _changed(snaps[1], snaps[2], "stages.1.") and not _changed(snaps[1], snaps[2], "stages.0.")


def test_seed_repeats_and_differs(splits):
    _, r1, _ = _fit("naive", splits, seed=3)
    _, r2, _ = _fit("naive", splits, seed=3)
    np.testing.assert_array_equal(r1.stability, r2.stability)
    assert [h["loss"] for h in r1.history] == [h["loss"] for h in r2.history]


def test_forgetting_brute_force():
    rng = np.random.default_rng(0)
    A = np.tril(rng.uniform(size=(5, 5)))
    A[np.triu_indices(5, 1)] = np.nan
    ref = [max(A[k, j] for k in range(j, 5)) - A[4, j] for j in range(5)]
    np.testing.assert_allclose(forgetting(A), ref)
    r = TrainingResult("x", A)
    assert r.mean_forgetting == pytest.approx(np.mean(ref[:4]))
    back = TrainingResult.from_json(r.to_json())
    np.testing.assert_array_equal(back.stability, A)


def test_checkpoint_resume_equals_uninterrupted(splits, tmp_path):
    _, full, _ = _fit("naive", splits)
    net_full = _net()
    SequentialTrainer(net_full, "naive", epochs_per_stage=1, progress=False, log=lambda r: None).fit(
        splits.train, splits.val, splits.test, analyse=False)

    class Stop(Exception):
        pass

    def stop_after_1(rec):
        if rec["event"] == "stage_end" and rec["stage"] == 1:
            raise Stop

    net = _net()
    tr = SequentialTrainer(net, "naive", epochs_per_stage=1, progress=False, log=stop_after_1,
                           checkpoint_dir=tmp_path)
    with pytest.raises(Stop):
        tr.fit(splits.train, splits.val, splits.test, analyse=False)
    st = json.loads((tmp_path / "state.json").read_text())
    assert st["completed_stages"] == 2
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]
    events = []
    net2 = _net(seed=99)  # different initial weights: the checkpoint must overwrite them
    res = SequentialTrainer(net2, "naive", epochs_per_stage=1, progress=False, log=events.append,
                            checkpoint_dir=tmp_path).fit(splits.train, splits.val, splits.test, analyse=False)
    assert events[0] == {"event": "resume", "completed_stages": 2}
    np.testing.assert_array_equal(res.stability, full.stability)
    for k, v in net_full.state_dict().items():
        torch.testing.assert_close(net2.state_dict()[k], v, rtol=0, atol=0)


def test_checkpoint_errors(splits, tmp_path):
    net = _net()
    SequentialTrainer(net, "naive", epochs_per_stage=1, progress=False, log=lambda r: None,
                      checkpoint_dir=tmp_path).fit(splits.train, splits.val, analyse=False)
    other = small_cnn_8(width=6)
    with pytest.raises(ValueError, match="checkpoint_dir: .*different architecture"):
        SequentialTrainer(other, "naive", progress=False, checkpoint_dir=tmp_path).fit(splits.train, splits.val)
    with pytest.raises(ValueError, match="checkpoint_dir: .*other options.*strategy"):
        SequentialTrainer(_net(), "frozen", epochs_per_stage=1, progress=False,
                          checkpoint_dir=tmp_path).fit(splits.train, splits.val)
    w = [f for f in os.listdir(tmp_path) if f.startswith("weights_stage")][0]
    raw = bytearray((tmp_path / w).read_bytes())
    raw[-5] ^= 0xFF
    (tmp_path / w).write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="sha256"):
        SequentialTrainer(_net(), "naive", epochs_per_stage=1, progress=False,
                          checkpoint_dir=tmp_path).fit(splits.train, splits.val)


def test_bad_options():
    net = _net()
    with pytest.raises(ValueError, match="strategy: unknown value 'ewk'; valid: naive, frozen, ewc, lwf, ewc\\+lwf, joint"):
        SequentialTrainer(net, "ewk")
    with pytest.raises(TypeError, match="unknown option\\(s\\) ewc_lamda; valid: .*ewc_lambda"):
        SequentialTrainer(net, "ewc", ewc_lamda=3)
    with pytest.raises(ValueError, match="fisher_label_mode.*exact"):
        SequentialTrainer(net, "ewc", fisher_label_mode="true")
    with pytest.raises(ValueError, match="train_prefix"):
        SequentialTrainer(net, "frozen", train_prefix="all")
    with pytest.raises(ValueError, match="lr"):
        SequentialTrainer(net, lr=0)
    with pytest.raises(ValueError, match="ewc_gamma"):
        SequentialTrainer(net, "ewc", ewc_mode="separate", ewc_gamma=0.5)
    with pytest.raises(TypeError, match="net"):
        SequentialTrainer(nn.Linear(2, 2))


def test_bad_data(splits):
    torch.manual_seed(0)
    net = small_cnn_8(num_classes=3)
    with pytest.raises(ValueError, match="net: the exits output 3 classes but the data has 10"):
        SequentialTrainer(net, progress=False).fit(splits)
    with pytest.raises(ValueError, match="labels span"):
        SequentialTrainer(net, progress=False).fit(splits.train, splits.val)
    empty = TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="train: the dataset is empty"):
        SequentialTrainer(_net(), progress=False).fit(empty, splits.val)
    with pytest.raises(ValueError, match="val: need a validation or a test split"):
        SequentialTrainer(_net(), progress=False).fit(splits.train)


def test_results_tables_and_plots(splits, tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    from exitnet.torch._results import plot_budget_curves, plot_stability_matrices

    _, r1, _ = _fit("naive", splits)
    _, r2, _ = _fit("frozen", splits)
    df = compare({"naive": r1, "frozen": r2})
    assert list(df.index) == ["naive", "frozen"]
    assert df.loc["frozen", "mean_forgetting"] == 0.0
    assert df.loc["naive", "acc_exit3"] == r1.stability[3, 3]
    sf = r1.stability_frame()
    assert sf.shape == (4, 4) and sf.iloc[3, 0] == r1.stability[3, 0]
    fig = plot_stability_matrices({"naive": r1, "frozen": r2})
    fig.savefig(tmp_path / "m.png")
    assert (tmp_path / "m.png").stat().st_size > 1000


# ---------------------------------------------------------------------------------------- EWC

def _brute_exact_fisher(net, x, k):
    """F = 1/N Σ_n Σ_c p(c|x_n) (∂ log p(c|x_n) / ∂θ)², float64, eval mode, one sample at a time."""
    net = copy.deepcopy(net).double().eval()
    params = net.parameters_for_exit(k)
    acc = {n: torch.zeros_like(p) for n, p in params.items()}
    for i in range(len(x)):
        logp = torch.log_softmax(net.forward_exit(x[i : i + 1].double(), k), 1)[0]
        for c in range(logp.shape[0]):
            g = torch.autograd.grad(logp[c], list(params.values()), retain_graph=True)
            for (n, _), gi in zip(params.items(), g):
                acc[n] += logp[c].exp().detach() * gi**2
    return {n: v / len(x) for n, v in acc.items()}


def test_ewc_fisher_is_exact_fisher_of_the_exit_in_eval_mode(splits):
    net = _net()
    tr = SequentialTrainer(net, "ewc", fisher_samples=12, progress=False)
    tr.data = TrainData(splits.train)
    ewc = tr.plugin("ewc")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    fisher, n = ewc.compute_fisher(tr, 1)
    assert n == 12 and net.training  # mode restored
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])  # no BatchNorm statistics moved
    assert set(fisher) == set(net.parameters_for_exit(1))
    idx = ewc.subset(tr, 1)
    ref = _brute_exact_fisher(net, splits.train.tensors[0][idx], 1)
    for k in ref:
        torch.testing.assert_close(fisher[k].double(), ref[k], rtol=1e-4, atol=1e-9)


def _moved(a, b, prefix):
    return sum(float((a[k].float() - b[k].float()).norm()) for k in a
               if k.startswith(prefix) and "running" not in k and "num_batches" not in k)


def test_ewc_penalty_holds_earlier_exits(splits):
    _, _, naive = _fit("naive", splits, lr=3e-3)
    _, res, ewc = _fit("ewc", splits, lr=3e-3, ewc_lambda=1e5, fisher_samples=50)
    # stage 1 moves stage 0 (exit 0's prefix) far less under a strong EWC penalty
    # (Adam: a step is about lr whatever the gradient, so the penalty bounds the drift, not to 0)
    assert _moved(ewc[0], ewc[1], "stages.0.") < 0.5 * _moved(naive[0], naive[1], "stages.0.")
    assert res.timings["fisher"] > 0
    assert any(h["ewc"] > 0 for h in res.history if h["stage"] > 0)


@pytest.mark.parametrize("mode,gamma", [("separate", 1.0), ("online", 0.5)])
def test_ewc_checkpoint_resume_equals_uninterrupted(splits, tmp_path, mode, gamma):
    kw = dict(epochs_per_stage=1, progress=False, ewc_mode=mode, ewc_gamma=gamma, fisher_samples=30,
              ewc_lambda=50.0)
    net_full = _net()
    full = SequentialTrainer(net_full, "ewc", log=lambda r: None, **kw).fit(splits.train, splits.val, analyse=False)

    class Stop(Exception):
        pass

    def stop(rec):
        if rec["event"] == "stage_end" and rec["stage"] == 2:
            raise Stop

    with pytest.raises(Stop):
        SequentialTrainer(_net(), "ewc", log=stop, checkpoint_dir=tmp_path, **kw).fit(splits.train, splits.val, analyse=False)
    net = _net()
    res = SequentialTrainer(net, "ewc", log=lambda r: None, checkpoint_dir=tmp_path, **kw).fit(
        splits.train, splits.val, analyse=False)
    np.testing.assert_array_equal(res.stability, full.stability)
    for k, v in net_full.state_dict().items():
        torch.testing.assert_close(net.state_dict()[k], v, rtol=1e-6, atol=1e-7)


def test_fit_analysis_budget_points(splits):
    from exitnet import policy
    net, res, _ = _fit("naive", splits)
    tr = SequentialTrainer(net, "naive", progress=False)
    res.val_logits, res.val_labels = tr.predict_logits(splits.val)
    res.test_logits, res.test_labels = tr.predict_logits(splits.test)
    res.costs = tr._costs(splits.train)
    res.analyse(budgets=(0.5, 0.9))
    # test logits: every exit's accuracy is the stability matrix's last row
    acc = (res.test_logits.argmax(2) == res.test_labels).mean(1)
    np.testing.assert_allclose(acc, res.stability[3], atol=1e-12)
    # costs are cumulative MACs: strictly increasing
    assert np.all(np.diff(res.costs) > 0)
    op = res.operating_points.set_index("budget")
    assert (op["test_cost"] <= 1.0 + 1e-9).all() and (op["val_cost"] <= op.index + 1e-9).all()
    # calibrated point re-simulated by hand: first exit whose max softmax ≥ τ (last always accepts)
    tau = op.loc[0.5, "tau"]
    p = torch.softmax(torch.as_tensor(res.test_logits), 2).numpy()
    conf = p.max(2)
    ex = np.array([next((k for k in range(3) if conf[k, i] >= tau), 3) for i in range(conf.shape[1])])
    pred = res.test_logits.argmax(2)[ex, np.arange(len(ex))]
    assert op.loc[0.5, "test_accuracy"] == pytest.approx((pred == res.test_labels).mean())
    assert op.loc[0.5, "test_cost"] == pytest.approx(res.costs[ex].mean() / res.costs[-1])


# ---------------------------------------------------------------------------------------- LwF

def test_lwf_term_matches_reference_and_reaches_the_student(splits):
    net = _net()
    tr = SequentialTrainer(net, "lwf", lwf_targets="online", lwf_temperature=2.0, progress=False)
    lwf = tr.plugin("lwf")
    teacher = copy.deepcopy(net).eval()
    with torch.no_grad():
        for p in net.stages[0].parameters():
            p.add_(0.5 * torch.randn_like(p))
    net.eval()
    x = splits.train.tensors[0][:32]
    outs = net.forward_exits(x, upto=2)
    with torch.no_grad():
        tz = teacher.forward_exits(x, upto=1)
    term = lwf.term(outs[:2], tz)
    # reference: Σ_j T² · mean_n KL(softmax(t/T) ‖ softmax(s/T)), float64
    T = 2.0
    with torch.no_grad():
        tz = teacher.forward_exits(x, upto=1)
    ref = 0.0
    for j in range(2):
        pt = torch.softmax(tz[j].double() / T, 1)
        ls = torch.log_softmax(outs[j].detach().double() / T, 1)
        ref += T * T * float((pt * (pt.log() - ls)).sum(1).mean())
    assert float(term) == pytest.approx(ref, rel=1e-4)
    assert ref > 0
    net.zero_grad()
    term.backward()
    g = sum(float(p.grad.abs().sum()) for p in net.stages[0].parameters())
    assert g > 0  # the distillation gradient flows into the student's shared prefix


def test_lwf_recorded_targets_equal_online_teacher(splits):
    net = _net()
    tr = SequentialTrainer(net, "lwf", progress=False)
    tr.data, tr.num_classes = TrainData(splits.train), 10
    lwf = tr.plugin("lwf")
    lwf.before_fit(tr)
    assert lwf.mode == "recorded"
    reader = lwf.record(tr, 2)
    try:
        ids = splits.train.tensors[2][[5, 0, 77, 3]]
        lwf._file = reader
        got = lwf.teacher_logits(StepContext(2, 0, 0, None, None, ids, [], 1.0), 2)
        net.eval()
        with torch.no_grad():
            want = net.forward_exits(splits.train.tensors[0][[5, 0, 77, 3]], upto=1)
        assert len(got) == 2
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    finally:
        lwf.after_fit(tr)


def test_lwf_recorded_and_online_runs_agree(splits):
    _, rec, _ = _fit("lwf", splits, lwf_targets="recorded")
    net_o, onl, _ = _fit("lwf", splits, lwf_targets="online")
    np.testing.assert_allclose(rec.stability, onl.stability, atol=0.01)
    assert rec.timings["targets"] > 0
    assert all(h["lwf"] > 0 for h in rec.history if h["stage"] > 0)


def test_ewc_plus_lwf_has_both_terms(splits):
    _, res, _ = _fit("ewc+lwf", splits, fisher_samples=30)
    later = [h for h in res.history if h["stage"] > 0]
    assert all(h["lwf"] > 0 for h in later) and any(h["ewc"] > 0 for h in later)


# ---------------------------------------------------------------------------- CLI and demo

def test_generic_dataset_path_equals_tensor_dataset(splits):
    class Plain(torch.utils.data.Dataset):
        def __init__(self, ds):
            self.ds = ds

        def __len__(self):
            return len(self.ds)

        def __getitem__(self, i):
            x, y, _ = self.ds[i]
            return x, y

    _, a, _ = _fit("naive", splits)
    net = _net()
    b = SequentialTrainer(net, "naive", epochs_per_stage=1, progress=False, log=lambda r: None).fit(
        Plain(splits.train), Plain(splits.val), Plain(splits.test), analyse=False)
    np.testing.assert_allclose(a.stability, b.stability, atol=1e-12)


def test_cli_evaluate_and_train(tmp_path, capsys):
    from exitnet import policy
    from exitnet.__main__ import main

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 200, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 200)
    logits[2][np.arange(200), labels] += 3.0  # the last exit is the best
    np.savez(tmp_path / "test.npz", logits=logits, labels=labels)
    assert main(["evaluate", "--logits", str(tmp_path / "test.npz"), "--costs", "1,2,4",
                 "--budgets", "0.5,0.75", "--curve-csv", str(tmp_path / "c.csv")]) == 0
    out = capsys.readouterr().out
    want = policy.accuracy_at_budgets(logits, labels, [0.5], cost=policy.CostModel.from_cumulative([1, 2, 4]))
    assert f"mean cost ≤ 50%: {100 * want[0]:.2f}%" in out
    sp = policy.speedup_at_iso_accuracy(logits, labels, delta=0.01, cost=policy.CostModel.from_cumulative([1, 2, 4]))
    assert f"{sp:.3f}x" in out
    assert (tmp_path / "c.csv").exists()

    cfg = {"data": {"name": "digits"}, "model": {"name": "small_cnn_8", "width": 4},
           "trainer": {"epochs_per_stage": 1, "progress": False}, "strategies": ["naive", "frozen"],
           "output": str(tmp_path / "run"), "export": True, "threads": 1}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    assert main(["train", "--config", str(tmp_path / "cfg.json")]) == 0
    r = TrainingResult.from_json(str(tmp_path / "run" / "result_naive.json"))
    assert r.test_logits.shape[0] == 4 and (tmp_path / "run" / "model_frozen.exitnet").exists()
    # evaluate reads a saved result with logits
    assert main(["evaluate", "--logits", str(tmp_path / "run" / "result_naive.json")]) == 0
    # export from saved weights
    assert main(["export", "--weights", str(tmp_path / "run" / "weights_naive.pt"), "--model", "small_cnn_8",
                 "--model-args", '{"width": 4}', "--input-shape", "1,8,8",
                 "--out", str(tmp_path / "m.exitnet")]) == 0

    cfg["bogus"] = 1
    (tmp_path / "bad.json").write_text(json.dumps(cfg))
    with pytest.raises(SystemExit, match="unknown key\\(s\\) bogus; valid: data"):
        main(["train", "--config", str(tmp_path / "bad.json")])
    with pytest.raises(SystemExit, match="logits: .* does not exist"):
        main(["evaluate", "--logits", str(tmp_path / "nope.npz")])


def test_demo_runs_small(tmp_path):
    from exitnet.demo import run_demo

    lines = []
    out = run_demo(str(tmp_path), strategies=("naive", "lwf"), epochs_per_stage=1, width=4,
                   echo=lambda *a: lines.append(" ".join(map(str, a))))
    assert set(out["results"]) == {"naive", "lwf"}
    rt = out["runtime"]
    assert rt["strategy"] == "lwf" and rt["agreement_with_simulation"] >= 0.99
    assert (tmp_path / "stability_matrices.png").exists() and (tmp_path / "budget_curves.png").exists()
    assert any("stability matrix" in line for line in lines)
    with pytest.raises(ValueError, match="strategies: unknown strategy 'ewk'"):
        run_demo(str(tmp_path), strategies=("ewk",))


def test_train_old_heads_lets_distillation_move_them(splits):
    _, _, frozen_heads = _fit("lwf", splits)
    assert not _changed(frozen_heads[0], frozen_heads[1], "heads.0.")
    _, _, snaps = _fit("lwf", splits, train_old_heads=True)
    assert _changed(snaps[0], snaps[1], "heads.0.")


def test_checkpoint_malformed_state_is_refused(splits, tmp_path):
    SequentialTrainer(_net(), "naive", epochs_per_stage=1, progress=False, log=lambda r: None,
                      checkpoint_dir=tmp_path).fit(splits.train, splits.val, analyse=False)
    st = json.loads((tmp_path / "state.json").read_text())
    st["weights"] = "../../etc/passwd"
    (tmp_path / "state.json").write_text(json.dumps(st))
    with pytest.raises(ValueError, match="checkpoint_dir: .*malformed"):
        SequentialTrainer(_net(), "naive", epochs_per_stage=1, progress=False,
                          checkpoint_dir=tmp_path).fit(splits.train, splits.val)
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(ValueError, match="checkpoint_dir: .*not a readable trainer state"):
        SequentialTrainer(_net(), "naive", progress=False, checkpoint_dir=tmp_path).fit(splits.train, splits.val)
