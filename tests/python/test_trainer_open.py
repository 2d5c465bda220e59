"""The open trainer: user DataLoaders with augmentation, plugins, optimizer/scheduler factories, AMP,
callbacks and loggers, early stopping, BatchNorm in protected stages, the Go KD autograd Function.

References: hand-made expectations (a zero-weight plugin equals no plugin; frozen exits' eval logits
bit for bit), torch's own KD expression and autograd, and the events/CSV rows counted by hand."""

import csv
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from exitnet import data
from exitnet.torch import (
    Callback, CSVLogger, EarlyStopping, EWCPlugin, LwFPlugin, Plugin, SequentialTrainer,
    TensorBoardLogger,
)
from exitnet.torch._model import small_cnn_8

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def splits():
    s = data.digits(seed=0)
    tr = s.train.tensors
    s.train = TensorDataset(tr[0][:160], tr[1][:160], tr[2][:160])
    te = s.test.tensors
    s.test = TensorDataset(te[0][:120], te[1][:120], te[2][:120])
    return s


def _net(seed=0):
    torch.manual_seed(seed)
    return small_cnn_8(width=4)


def _tr(net, strategy="naive", **kw):
    kw.setdefault("epochs_per_stage", 1)
    kw.setdefault("progress", False)
    kw.setdefault("log", lambda r: None)
    kw.setdefault("batch_size", 32)
    return SequentialTrainer(net, strategy, **kw)


class CropFlip(Dataset):
    """Random 1-pixel shift (pad + crop) and horizontal flip; yields (x, y) without ids."""

    def __init__(self, ds, ids=False):
        self.x, self.y, self.i = ds.tensors
        self.ids = ids

    def __len__(self):
        return len(self.y)

    def __getitem__(self, n):
        x = nn.functional.pad(self.x[n], (1, 1, 1, 1))
        a, b = torch.randint(0, 3, (2,)).tolist()
        x = x[:, a : a + 8, b : b + 8]
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        return (x, self.y[n], self.i[n]) if self.ids else (x, self.y[n])


def test_augmented_loader_runs_lwf_online_and_refuses_recorded(splits):
    loader = DataLoader(CropFlip(splits.train), batch_size=32, shuffle=True)
    events = []
    res = _tr(_net(), "lwf", log=events.append).fit(loader, splits.val, splits.test, analyse=False)
    assert res.metadata["lwf_targets"] == "online"
    assert "no sample ids" in res.metadata["lwf_targets_reason"]
    assert [e["mode"] for e in events if e["event"] == "targets"] == ["online"] * 3
    assert any(h["lwf"] > 0 for h in res.history if h["stage"] > 0)
    with pytest.raises(ValueError, match="without sample ids"):
        _tr(_net(), "lwf", lwf_targets="recorded").fit(loader, splits.val, analyse=False)
    # ids present but random augmentation: also refused for recorded, online under auto
    with_ids = DataLoader(CropFlip(splits.train, ids=True), batch_size=32)
    with pytest.raises(ValueError, match="randomly augmented"):
        _tr(_net(), plugins=[LwFPlugin(targets="recorded")]).fit(with_ids, splits.val, analyse=False)
    r2 = _tr(_net(), plugins=[LwFPlugin()]).fit(with_ids, splits.val, analyse=False)
    assert r2.metadata["lwf_targets"] == "online" and "augmented" in r2.metadata["lwf_targets_reason"]
    # an unaugmented loader that yields ids records its targets
    plain = DataLoader(splits.train, batch_size=32, shuffle=True)
    r3 = _tr(_net(), "lwf").fit(plain, splits.val, analyse=False)
    assert r3.metadata["lwf_targets"] == "recorded" and r3.config["lwf_targets"] == "recorded"


class L2Anchor(Plugin):
    """A user regulariser: c/2·‖θ − θ_start‖² over every parameter, anchored at each stage start."""

    name = "l2"
    per_sample = False

    def __init__(self, c):
        self.c = c

    def before_stage(self, trainer, stage):
        self.anchor = [p.detach().clone() for p in trainer.net.parameters()]

    def loss(self, trainer, ctx):
        return 0.5 * self.c * sum(((p - a) ** 2).sum() for p, a in zip(trainer.net.parameters(), self.anchor))

    def config(self):
        return {"name": self.name, "c": self.c}


def _params(net):
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])


def test_user_plugin_changes_the_result_as_expected(splits):
    base, zero, strong = _net(), _net(), _net()
    start = _params(base)
    r0 = _tr(base).fit(splits.train, splits.val, analyse=False)
    rz = _tr(zero, plugins=[L2Anchor(0.0)], bn_mode="adapt").fit(splits.train, splits.val, analyse=False)
    # a zero-weight term leaves the run exactly as without it
    assert torch.equal(_params(base), _params(zero))
    np.testing.assert_array_equal(r0.stability, rz.stability)
    # SGD, lr·c = 1: every step returns to the anchor minus one gradient step, so over 15 steps a
    # stage ends about one step from where it started instead of about 15
    sgd = lambda ps: torch.optim.SGD(ps, lr=1e-3)  # noqa: E731
    rs = _tr(strong, plugins=[L2Anchor(1000.0)], bn_mode="adapt", optimizer=sgd, epochs_per_stage=3
             ).fit(splits.train, splits.val, analyse=False)
    free = _net()
    _tr(free, optimizer=sgd, epochs_per_stage=3).fit(splits.train, splits.val, analyse=False)
    assert float((_params(strong) - start).norm()) < 0.3 * float((_params(free) - start).norm())
    assert all(h["l2"] >= 0 for h in rs.history) and any(h["l2"] > 0 for h in rs.history)
    assert rs.strategy == "naive+l2" and rs.config["plugins"] == [{"name": "l2", "c": 1000.0}]


def test_plugins_equal_their_shorthand(splits):
    a, b = _net(), _net()
    ra = _tr(a, "ewc+lwf", fisher_samples=40, ewc_lambda=50.0).fit(splits.train, splits.val, analyse=False)
    rb = _tr(b, plugins=[EWCPlugin(50.0, samples=40), LwFPlugin()]).fit(splits.train, splits.val, analyse=False)
    assert torch.equal(_params(a), _params(b))
    np.testing.assert_array_equal(ra.stability, rb.stability)
    assert ra.metadata["bn_mode"] == rb.metadata["bn_mode"] == "freeze"


def test_scheduler_optimizer_factory_clipping_and_bf16(splits):
    sched = lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)  # noqa: E731
    res = _tr(_net(), epochs_per_stage=2, optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
              scheduler=sched, grad_clip=1.0, amp=True, device="auto").fit(splits.train, splits.val, analyse=False)
    assert [h["lr"] for h in res.history[:2]] == [0.05, 0.025]  # fresh per stage, stepped per epoch
    assert [h["lr"] for h in res.history[2:4]] == [0.05, 0.025]
    assert res.metadata["amp"] == "bfloat16" and res.metadata["device"] == "cpu"
    assert all(np.isfinite(h["loss"]) for h in res.history)
    assert res.config["optimizer"].startswith("custom:") and res.config["grad_clip"] == 1.0
    with pytest.raises(TypeError, match="optimizer: the factory returned"):
        _tr(_net(), optimizer=lambda ps: None).fit(splits.train, splits.val, analyse=False)
    with pytest.raises(ValueError, match="amp:"):
        _tr(_net(), amp="fp8")


def test_callbacks_see_every_stage_and_epoch_and_loggers_write(splits, tmp_path):
    class Count(Callback):
        def __init__(self):
            self.seen = []

        def on_event(self, trainer, record):
            self.seen.append((record["event"], record.get("stage"), record.get("epoch")))
            super().on_event(trainer, record)

        def on_epoch_end(self, trainer, record):
            record["mine"] = 1.0  # lands in the history

    cb = Count()
    tb = TensorBoardLogger(tmp_path / "tb")
    res = _tr(_net(), epochs_per_stage=2, callbacks=[cb, CSVLogger(tmp_path / "log.csv"), tb]
              ).fit(splits.train, splits.val, analyse=False)
    ev = cb.seen
    assert [e for e in ev if e[0] == "stage_start"] == [("stage_start", k, None) for k in range(4)]
    assert [e for e in ev if e[0] == "epoch"] == [("epoch", k, e) for k in range(4) for e in range(2)]
    assert [e[1] for e in ev if e[0] == "stage_end"] == [0, 1, 2, 3]
    assert sum(e[0] == "step" for e in ev) == 4 * 2 * 5  # 160 samples / 32
    assert ev[0][0] == "fit_start" and ev[-1][0] == "done"
    assert all(h["mine"] == 1.0 for h in res.history)
    assert all(h["ewc"] == 0.0 and h["lwf"] == 0.0 for h in res.history)  # the old history fields
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    loss = [float(r["value"]) for r in rows if r["event"] == "epoch" and r["metric"] == "loss"]
    assert loss == pytest.approx([h["loss"] for h in res.history])
    acc = [float(r["value"]) for r in rows if r["metric"] == "accuracy_exit0"]
    assert acc == pytest.approx(list(res.stability[:, 0]))
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())
    assert len(res.stage_timings) == 4 and all(s["train"] > 0 and s["eval"] > 0 for s in res.stage_timings)


def test_early_stopping_stops_a_stage_and_needs_val(splits):
    es = EarlyStopping(patience=1, min_delta=1.0)
    # an improvement of more than 1.0 in accuracy is impossible: every stage stops after epoch 1
    res = _tr(_net(), epochs_per_stage=4, callbacks=[es]).fit(splits.train, splits.val, splits.test,
                                                                       analyse=False)
    assert [sum(h["stage"] == k for h in res.history) for k in range(4)] == [2, 2, 2, 2]
    assert es.stopped_at == {0: 1, 1: 1, 2: 1, 3: 1}
    assert all("val_accuracy" in h for h in res.history)
    with pytest.raises(ValueError, match="EarlyStopping: needs a validation split"):
        _tr(_net(), callbacks=[EarlyStopping()]).fit(splits.train, None, splits.test, analyse=False)


def test_frozen_keeps_earlier_exits_eval_outputs_exactly(splits):
    net = _net()
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.stages[0].modules())
    x = splits.test.tensors[0]
    logits = []

    class Snap(Callback):
        def on_stage_end(self, trainer, record):
            net.eval()
            with torch.no_grad():
                logits.append([z.clone() for z in net.forward_exits(x, upto=record["stage"])])

    res = _tr(net, "frozen", epochs_per_stage=2, lr=3e-2, callbacks=[Snap()]).fit(
        splits.train, splits.val, splits.test, analyse=False)
    for k in range(1, 4):
        for j in range(k):
            assert torch.equal(logits[k][j], logits[j][j])  # bit for bit
            assert res.stability[k, j] == res.stability[j, j]
    assert res.metadata["bn_mode"] == "freeze"


def test_bn_mode_freeze_keeps_protected_running_stats(splits):
    def stats_after(bn_mode):
        net = _net()
        snaps = []

        class Snap(Callback):
            def on_stage_end(self, trainer, record):
                snaps.append(net.stages[0][1].running_mean.clone())

        _tr(net, "lwf", lwf_targets="online", lr=1e-2, bn_mode=bn_mode, callbacks=[Snap()]).fit(
            splits.train, splits.val, analyse=False)
        return snaps

    fr = stats_after("freeze")
    assert all(torch.equal(fr[0], s) for s in fr[1:])
    ad = stats_after("adapt")
    assert not torch.equal(ad[0], ad[1])


def test_go_kd_autograd_equals_torch():
    from exitnet.distill import kd_loss_torch
    from exitnet.torch._kd import kd_loss

    torch.manual_seed(0)
    s = torch.randn(17, 10, requires_grad=True)
    t = torch.randn(17, 10)
    for T in (1.0, 2.0, 4.0):
        a = kd_loss(s, t, T, backend="go")
        (ga,) = torch.autograd.grad(3.0 * a, s)
        b = kd_loss_torch(s.double(), t.double(), T)
        (gb,) = torch.autograd.grad(3.0 * b, s)
        assert float(a.detach()) == pytest.approx(float(b.detach()), rel=1e-5)
        torch.testing.assert_close(ga, gb.float(), rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="float32 CPU"):
        kd_loss(s.double(), t.double(), 2.0, backend="go")


def test_data_module_does_not_import_torch():
    code = "import sys, exitnet.data; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
