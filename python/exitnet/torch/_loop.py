"""One stage of sequential training: what trains, the minibatch loop, the plugins' terms.

Per step: forward (under autocast when AMP is on), loss = Σ CE of the trained exits (joint) or
CE(exit k), plus every plugin's term (per-sample terms weighted by the rank's share of the global
minibatch, parameter terms divided by the number of ranks), backward (through the gradient scaler
for float16), gradients summed over ranks, optional clipping of their global norm, optimizer step,
scheduler step (per step or per epoch).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from . import _dist
from ._batches import stage_generator
from ._plugins import StepContext

if TYPE_CHECKING:  # pragma: no cover
    from ._trainer import SequentialTrainer


def trainable_stages(tr: "SequentialTrainer", k: int) -> list[int]:
    if tr.schedule == "joint":
        return list(range(tr.net.num_exits))
    tp = tr.train_prefix
    if tp == "all":
        return list(range(k + 1))
    if tp == "new_stage":
        return [k]
    if tp == "head":
        return []
    return list(range(max(0, k - int(tp) + 1), k + 1))


def setup_stage(tr: "SequentialTrainer", k: int) -> list[nn.Parameter]:
    """requires_grad and train/eval modes of stage k; returns the trainable parameters.

    Stages that do not train stay in eval mode (their BatchNorm statistics do not move). With
    ``bn_mode="freeze"`` the BatchNorm layers of the protected stages and heads 0..k-1 are in eval
    mode too even when their parameters train: they normalise with, and keep, the running
    statistics the earlier exits were evaluated (and their LwF targets recorded) with."""
    net = tr.net
    K = net.num_exits
    stages = set(trainable_stages(tr, k))
    if tr.schedule == "joint":
        heads = set(range(K))
    else:
        heads = {k} | (set(range(k)) if tr.train_old_heads else set())
    for p in net.parameters():
        p.requires_grad_(False)
    net.eval()
    params: list[nn.Parameter] = []
    for j in sorted(stages):
        net.stages[j].train()
        for p in net.stages[j].parameters():
            p.requires_grad_(True)
            params.append(p)
    for j in sorted(heads):
        net.heads[j].train()
        for p in net.heads[j].parameters():
            p.requires_grad_(True)
            params.append(p)
    if tr.bn_mode == "freeze" and tr.schedule != "joint":
        for j in range(k):
            for mod in list(net.stages[j].modules()) + list(net.heads[j].modules()):
                if isinstance(mod, _BatchNorm):
                    mod.eval()
    return params


def make_optimizer(tr: "SequentialTrainer", params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if callable(tr.optimizer):
        opt = tr.optimizer(params)
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(f"optimizer: the factory returned {type(opt).__name__}, not a torch Optimizer")
        return opt
    if tr.optimizer == "adam":
        return torch.optim.Adam(params, lr=tr.lr, weight_decay=tr.weight_decay)
    if tr.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=tr.lr, weight_decay=tr.weight_decay)
    return torch.optim.SGD(params, lr=tr.lr, momentum=tr.momentum, weight_decay=tr.weight_decay)


def run_stage(tr: "SequentialTrainer", k: int, A: np.ndarray, history: list, timings: dict) -> dict:
    """Train stage k and evaluate exits 0..k into A[k]; returns the stage's wall time split."""
    net = tr.net
    K = net.num_exits
    split = {"train": 0.0, "fisher": 0.0, "targets": 0.0, "plugins": 0.0, "eval": 0.0}
    tr._emit({"event": "stage_start", "stage": k, "strategy": tr.strategy})
    rank, world = _dist.rank_and_world()
    torch.manual_seed(tr.seed * 1_000_003 + k)
    for p in tr.plugins:
        t0 = time.perf_counter()
        p.before_stage(tr, k)
        split[p.timing if p.timing in split else "plugins"] += time.perf_counter() - t0

    params = setup_stage(tr, k)
    opt = make_optimizer(tr, params)
    sched = tr.scheduler(opt) if tr.scheduler is not None else None
    scaler = tr._grad_scaler()
    need_old = tr.schedule == "joint" or (k > 0 and any(p.needs_earlier_exits for p in tr.plugins))
    upto = K - 1 if tr.schedule == "joint" else k
    data = tr.data
    t0 = time.perf_counter()
    bar = None
    nb_epoch = data.num_batches(tr.batch_size)
    if tr.progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=None if nb_epoch is None else tr.epochs_per_stage * nb_epoch,
                   desc=f"{tr.strategy} stage {k + 1}/{K}", leave=False)
    tr._stop = False
    names = [p.name for p in tr.plugins]
    epochs_run = 0
    try:
        for epoch in range(tr.epochs_per_stage):
            perm = None
            if data.loader is None:
                perm = torch.randperm(data.n, generator=stage_generator(tr.seed, k, salt=2 + epoch))
            # "ewc" and "lwf" are always in the history (0 when unused), as before the plugins
            tot = {"loss": 0.0, "ce": 0.0, "ewc": 0.0, "lwf": 0.0, **{n: 0.0 for n in names}}
            nb = 0
            for x, y, ids, scale in data.epoch(perm, tr.batch_size, rank, world):
                opt.zero_grad(set_to_none=True)
                terms: dict[str, float] = {}
                if x is not None:
                    x, y = x.to(tr.device, non_blocking=True), y.to(tr.device, non_blocking=True)
                    with tr.autocast():
                        outs = net.forward_exits(x, upto=upto) if need_old else [net.forward_exit(x, k)]
                        if tr.schedule == "joint":
                            ce = sum(F.cross_entropy(o, y) for o in outs)
                        else:
                            ce = F.cross_entropy(outs[-1], y)
                        loss = ce * scale
                        ctx = StepContext(k, epoch, nb, x, y, ids, outs, scale)
                        for p in tr.plugins:
                            p.before_step(tr, ctx)
                            loss = _add_term(p, p.loss(tr, ctx), loss, scale, world, terms)
                else:  # this rank has no share of a short last minibatch
                    ce = torch.zeros(())
                    loss = torch.zeros((), device=tr.device)
                    ctx = None
                    for p in tr.plugins:
                        if not p.per_sample:
                            loss = _add_term(p, p.loss(tr, None), loss, 1.0, world, terms)
                if loss.requires_grad:
                    scaler.scale(loss).backward() if scaler is not None else loss.backward()
                _dist.sum_gradients(params)
                if scaler is not None:
                    scaler.unscale_(opt)
                if tr.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, tr.grad_clip)
                if scaler is not None:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                if sched is not None and tr.scheduler_interval == "step":
                    sched.step()
                if ctx is not None:
                    for p in tr.plugins:
                        p.after_step(tr, ctx)
                lv = float(loss.detach()) * world
                tot["loss"] += lv
                tot["ce"] += float(ce.detach() if torch.is_tensor(ce) else ce)
                for n, v in terms.items():
                    tot[n] += v
                if tr._step_listeners:
                    tr._emit({"event": "step", "stage": k, "epoch": epoch, "step": nb, "loss": lv,
                              "ce": float(ce.detach() if torch.is_tensor(ce) else ce), **terms}, callbacks_only=True)
                nb += 1
                if bar is not None:
                    bar.update(1)
            _dist.broadcast_state(net)
            if sched is not None and tr.scheduler_interval == "epoch":
                sched.step()
            rec = {"event": "epoch", "stage": k, "epoch": epoch, **{m: v / max(nb, 1) for m, v in tot.items()}}
            if sched is not None:
                rec["lr"] = float(opt.param_groups[0]["lr"])
            epochs_run += 1
            tr._emit(rec)  # callbacks may add fields (EarlyStopping: val_accuracy) and stop
            history.append({k2: v for k2, v in rec.items() if k2 != "event"})
            if tr._stop:
                break
    finally:
        if bar is not None:
            bar.close()
        for p in tr.plugins:
            p.after_stage(tr, k)
    tr._emit({"event": "stage_trained", "stage": k, "epochs": epochs_run}, callbacks_only=True)
    split["train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    A[k, : k + 1] = tr.evaluate(tr.eval_data, upto=k)
    split["eval"] = time.perf_counter() - t0
    for key, v in split.items():
        if v or key in timings:
            timings[key] = timings.get(key, 0.0) + v
    return split


def _add_term(p: Any, out: Any, loss: torch.Tensor, scale: float, world: int, terms: dict) -> torch.Tensor:
    if out is None:
        return loss
    term, logged = out if isinstance(out, tuple) else (out, out)
    if not torch.is_tensor(term) or term.ndim != 0:
        raise TypeError(f"plugin {p.name!r}: loss() must return a scalar tensor, got {term!r}")
    terms[p.name] = float(logged.detach()) if torch.is_tensor(logged) else float(logged)
    return loss + (term * scale if p.per_sample else term / world)

