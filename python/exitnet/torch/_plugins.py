"""Protection mechanisms of sequential exit training as composable plugins (Avalanche style).

A plugin is called at the boundaries a sequential schedule has (:class:`Plugin`: before/after fit,
before/after stage, before/after step) and may add a loss term at every step. The two built-in
mechanisms:

:class:`EWCPlugin`
    before stage k > 0: the diagonal Fisher F of exit k-1 over ``parameters_for_exit(k-1)`` (eval
    mode, a seeded subset of the training split), consolidated with the anchors θ* = the current
    parameters; at every step the term λ/2 · Σ F (θ − θ*)² (:class:`exitnet.torch.EWC`).
:class:`LwFPlugin`
    before stage k > 0: the teacher = the model as it is; at every step the term
    α · Σ_{j<k} T² · KL(softmax(z_j^teacher/T) ‖ softmax(z_j/T)), the teacher's logits either
    recorded once keyed by sample id (``targets="recorded"``) or from a frozen copy run on every
    minibatch (``targets="online"``).

``SequentialTrainer(net, "ewc+lwf", ...)`` is shorthand for
``SequentialTrainer(net, plugins=[EWCPlugin(...), LwFPlugin(...)])``.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import time
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np
import torch
from torch import Tensor

from . import _dist
from ._batches import stage_generator
from ._options import EWC_MODES, FISHER_LABEL_MODES, LWF_TARGETS, _choice, _number, _posint

if TYPE_CHECKING:  # pragma: no cover
    from ._trainer import SequentialTrainer

__all__ = ["Plugin", "StepContext", "EWCPlugin", "LwFPlugin"]

logger = logging.getLogger("exitnet.trainer")


class StepContext:
    """What a plugin sees at a training step of stage ``stage``.

    Attributes
    ----------
    stage, epoch, step : int
    x, y : Tensor
        This rank's minibatch on the trainer's device (``x`` as the student saw it, augmented).
    ids : Tensor or None
        Sample ids (None when the user's DataLoader yields none).
    outputs : list of Tensor
        ``outputs[-1]`` is exit ``stage``'s logits; ``outputs[j]`` for j < stage exist when a
        plugin sets ``needs_earlier_exits``.
    scale : float
        This rank's share of the global minibatch (1 without data parallelism).
    """

    __slots__ = ("stage", "epoch", "step", "x", "y", "ids", "outputs", "scale")

    def __init__(self, stage: int, epoch: int, step: int, x: Tensor, y: Tensor, ids: Optional[Tensor],
                 outputs: list, scale: float) -> None:
        self.stage, self.epoch, self.step = stage, epoch, step
        self.x, self.y, self.ids, self.outputs, self.scale = x, y, ids, outputs, scale


class Plugin:
    """Base class of trainer plugins; override what you need.

    Class attributes: ``name`` (the key of the term in the history, unique per trainer),
    ``per_sample`` (True: the term is a mean over this rank's samples and is weighted by the rank's
    share of the minibatch; False: a function of the parameters only, divided by the number of
    ranks so that summed gradients count it once), ``needs_earlier_exits`` (the step's forward
    computes exits 0..k, not only exit k), ``timing`` (the per-stage timer that
    :meth:`before_stage` is charged to).

    :meth:`loss` returns None, a tensor (the term added to the loss and logged), or a pair
    ``(term, logged value)``.
    """

    name = "plugin"
    per_sample = True
    needs_earlier_exits = False
    timing = "plugins"

    def before_fit(self, trainer: "SequentialTrainer") -> None: ...

    def before_stage(self, trainer: "SequentialTrainer", stage: int) -> None: ...

    def before_step(self, trainer: "SequentialTrainer", ctx: StepContext) -> None: ...

    def loss(self, trainer: "SequentialTrainer", ctx: StepContext) -> Union[None, Tensor, tuple]:
        return None

    def after_step(self, trainer: "SequentialTrainer", ctx: StepContext) -> None: ...

    def after_stage(self, trainer: "SequentialTrainer", stage: int) -> None: ...

    def after_fit(self, trainer: "SequentialTrainer") -> None: ...

    def config(self) -> dict:
        """JSON-compatible settings (checkpoints refuse to resume with other settings)."""
        return {"name": self.name}

    def metadata(self) -> dict:
        """What the run decided (e.g. which LwF targets were used), for the result's metadata."""
        return {}

    def state_tensors(self) -> dict[str, Tensor]:
        """Tensors to checkpoint after a stage (names unique across plugins)."""
        return {}

    def state_json(self) -> dict:
        return {}

    def load_state(self, tensors: dict[str, Tensor], doc: dict, device: torch.device) -> None:
        """Restore from a checkpoint (``tensors``: every checkpointed tensor; ``doc``: this
        plugin's :meth:`state_json`)."""

    def __repr__(self) -> str:
        cfg = {k: v for k, v in self.config().items() if k != "name"}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in cfg.items())})"


# ---------------------------------------------------------------------------------------- EWC


class EWCPlugin(Plugin):
    """Elastic weight consolidation of the earlier exits (see the module documentation).

    Parameters
    ----------
    lam : float
        λ of λ/2·ΣF(θ−θ*)² (with the ½). Default 100.
    mode : {"separate", "sum", "online"}
        One term per earlier exit, the summed Fishers, or online consolidation F ← γF + F_new.
    gamma : float
        γ of online consolidation, in (0, 1]. Default 1.
    label_mode : {"exact", "sampled", "empirical", "argmax"}
        Labels of the Fisher pass. Default ``"exact"``.
    samples : int or None
        Training samples (seeded subset) per Fisher pass. Default 500; None = all.
    accumulator : {"auto", "go", "torch"}
        Where the Fisher sums live (:func:`exitnet.torch.fisher_diagonal`): ``"auto"`` = Go on
        CPU, a float64 torch accumulator on the model's device otherwise.
    """

    name = "ewc"
    per_sample = False
    timing = "fisher"

    def __init__(self, lam: float = 100.0, mode: str = "separate", gamma: float = 1.0, *,
                 label_mode: str = "exact", samples: Optional[int] = 500, accumulator: str = "auto") -> None:
        self.lam = _number("ewc_lambda", lam)
        self.mode = _choice("ewc_mode", mode, EWC_MODES)
        self.gamma = _number("ewc_gamma", gamma, strict=True)
        if self.gamma > 1.0:
            raise ValueError(f"ewc_gamma: must be in (0, 1], got {gamma!r}")
        if self.mode != "online" and self.gamma != 1.0:
            raise ValueError(f"ewc_gamma: only used by ewc_mode='online' (got {gamma!r} with {mode!r})")
        self.label_mode = _choice("fisher_label_mode", label_mode, FISHER_LABEL_MODES)
        self.samples = _posint("fisher_samples", samples, allow_none=True)
        self.accumulator = _choice("accumulator", accumulator, ("auto", "go", "torch"))
        self.ewc = None

    def config(self) -> dict:
        return {"name": self.name, "lam": self.lam, "mode": self.mode, "gamma": self.gamma,
                "label_mode": self.label_mode, "samples": self.samples}

    def before_fit(self, trainer: "SequentialTrainer") -> None:
        from ._ewc import EWC

        self.ewc = EWC(self.lam, mode=self.mode, gamma=self.gamma)

    def before_stage(self, trainer: "SequentialTrainer", stage: int) -> None:
        if stage == 0:
            return
        t0 = time.perf_counter()
        fisher, n = self.compute_fisher(trainer, stage - 1)
        # anchors: the current parameters (θ* at the end of stage k-1); sum/online modes re-anchor
        # every parameter consolidated so far at the latest values
        self.ewc.consolidate(fisher, dict(trainer.net.named_parameters()))
        trainer._emit({"event": "fisher", "stage": stage, "exit": stage - 1, "n_samples": n,
                       "seconds": time.perf_counter() - t0})

    def subset(self, trainer: "SequentialTrainer", j: int) -> torch.Tensor:
        """This rank's share of the seeded Fisher subset of exit j (sorted dataset indices)."""
        n = trainer.data.n
        perm = torch.randperm(n, generator=stage_generator(trainer.seed, j, salt=1))
        if self.samples is not None:
            perm = perm[: self.samples]
        perm, _ = torch.sort(perm)
        rank, world = _dist.rank_and_world()
        return perm[rank::world]

    def compute_fisher(self, trainer: "SequentialTrainer", j: int) -> tuple[dict, int]:
        """Diagonal Fisher of exit j over parameters_for_exit(j), eval mode, merged over ranks from
        the exact float64 sums."""
        from ._fisher import fisher_diagonal

        net, dev = trainer.net, trainer.device
        data = trainer.data
        idx = self.subset(trainer, j) if data.dataset is not None else None
        was = net.training
        net.eval()
        params = net.parameters_for_exit(j)
        req = {n: p.requires_grad for n, p in net.named_parameters()}
        for p in params.values():
            p.requires_grad_(True)
        limit = None if self.samples is None else self.samples

        def batches():
            for x, y, _ in data.fisher_batches(idx, trainer.eval_batch_size, limit):
                yield x.to(dev), y.to(dev)

        try:
            res = fisher_diagonal(
                net, batches(), forward=lambda m, x: m.forward_exit(x, j), params=params,
                label_mode=self.label_mode, max_samples=None, seed=trainer.seed * 1000 + j,
                accumulator=self.accumulator,
            )
        finally:
            for n, p in net.named_parameters():
                p.requires_grad_(req[n])
            net.train(was)
        if not _dist.is_distributed():
            return {n: t.detach().clone() for n, t in res.items()}, int(res.n_samples)
        sums = {n: s.to(dev, torch.float64) for n, s in res.sum_tensors().items()}
        merged, total = _dist.all_reduce_sums(sums, float(res.n_samples))
        if total <= 0:
            raise ValueError("fisher: no samples on any rank")
        return {n: (merged[n] / total).reshape(res[n].shape).to(res[n].dtype) for n in res}, int(round(total))

    def loss(self, trainer: "SequentialTrainer", ctx: StepContext) -> Optional[tuple]:
        if not self.ewc.fishers:
            return None
        term = self.ewc.penalty(trainer.net)
        return term, term

    def state_tensors(self) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for i, (fisher, anchor) in enumerate(zip(self.ewc.fishers, self.ewc.anchors)):
            for n, t in fisher.items():
                out[f"ewc.{i}.fisher.{n}"] = t.detach().cpu()
            for n, t in anchor.items():
                out[f"ewc.{i}.anchor.{n}"] = t.detach().cpu()
        return out

    def state_json(self) -> dict:
        return {"ewc_terms": len(self.ewc.fishers), "ewc_consolidations": self.ewc.n_consolidations}

    def load_state(self, tensors: dict[str, Tensor], doc: dict, device: torch.device) -> None:
        fishers, anchors = [], []
        for i in range(int(doc.get("ewc_terms", 0))):
            fp, ap = f"ewc.{i}.fisher.", f"ewc.{i}.anchor."
            fishers.append({n[len(fp):]: t.to(device) for n, t in tensors.items() if n.startswith(fp)})
            anchors.append({n[len(ap):]: t.to(device) for n, t in tensors.items() if n.startswith(ap)})
        self.ewc.load_state_dict({
            "lam": self.lam, "mode": self.mode, "gamma": self.gamma, "fishers": fishers,
            "anchors": anchors, "n_consolidations": int(doc.get("ewc_consolidations", len(fishers))),
        })


# ---------------------------------------------------------------------------------------- LwF


class LwFPlugin(Plugin):
    """Learning without forgetting of the earlier exits (see the module documentation).

    Parameters
    ----------
    alpha, temperature : float
        α and T of α·Σ_j T²·KL. Defaults 1.0 and 2.0.
    targets : {"auto", "recorded", "online"}
        ``recorded``: before stage k, run the model once over the training split in eval mode and
        store exits 0..k-1's logits keyed by sample id (an Arrow IPC file through
        :mod:`exitnet.distill`); valid only when the student sees the input the recorder saw,
        so it is refused when the data yields no ids or augments at random. ``online``: a frozen
        teacher copy runs on every minibatch (right under augmentation). ``auto`` (default):
        ``recorded`` when the data yields ids and fetching a sample twice gives the same input,
        else ``online``; the choice and its reason are logged once and kept in the result's
        metadata. Augmentation in a ``collate_fn`` cannot be detected: pass ``"online"``.
    kd_backend : {"auto", "go", "torch"}
        The KD loss: ``auto`` = Go's fused kernel for float32 CPU logits (an autograd Function
        with Go's gradient), torch elsewhere.
    """

    name = "lwf"
    needs_earlier_exits = True
    timing = "targets"

    def __init__(self, alpha: float = 1.0, temperature: float = 2.0, targets: str = "auto", *,
                 kd_backend: str = "auto") -> None:
        self.alpha = _number("lwf_alpha", alpha)
        self.temperature = _number("lwf_temperature", temperature, strict=True)
        self.targets = _choice("lwf_targets", targets, ("auto",) + LWF_TARGETS)
        self.kd_backend = _choice("kd_backend", kd_backend, ("auto", "go", "torch"))
        self.mode: Optional[str] = None  # resolved in before_fit
        self.reason = ""
        self._tmpdir: Optional[tempfile.TemporaryDirectory] = None
        self._file: Any = None
        self._teacher: Any = None

    def config(self) -> dict:
        return {"name": self.name, "alpha": self.alpha, "temperature": self.temperature,
                "targets": self.mode or self.targets}

    def metadata(self) -> dict:
        return {"lwf_targets": self.mode, "lwf_targets_reason": self.reason}

    def resolve(self, data: Any) -> tuple[str, str]:
        """(mode, reason) for this training split; raises for an impossible ``recorded``."""
        if self.targets == "online":
            return "online", "requested"
        if not data.has_ids:
            if self.targets == "recorded":
                raise ValueError(
                    "LwF targets='recorded': the training DataLoader yields (x, y) batches without "
                    "sample ids, and recorded teacher logits are looked up by id; yield (x, y, ids) "
                    "from an unaugmented loader, or use targets='online' (a teacher copy per batch)"
                )
            return "online", "the training batches carry no sample ids"
        if data.augmented:
            if self.targets == "recorded":
                raise ValueError(
                    "LwF targets='recorded': the training data is randomly augmented (the same sample "
                    "fetched twice differs), so targets recorded once would be for another input "
                    "than the student sees; use targets='online'"
                )
            return "online", "the training data is randomly augmented"
        if data.augmented is None:
            if self.targets == "recorded":
                return "recorded", "requested (the iterable dataset's augmentation could not be probed)"
            return "online", "the iterable dataset's augmentation cannot be probed"
        return "recorded", "ids present and no random augmentation"

    def before_fit(self, trainer: "SequentialTrainer") -> None:
        self.mode, self.reason = self.resolve(trainer.data)
        if self.targets == "auto" or self.mode != self.targets:
            msg = f"LwF: {self.mode} teacher targets ({self.reason})"
            logger.warning("%s", msg) if self.mode == "online" else logger.info("%s", msg)
        trainer._emit({"event": "lwf_targets", "mode": self.mode, "reason": self.reason}, callbacks_only=True)

    def before_stage(self, trainer: "SequentialTrainer", stage: int) -> None:
        if stage == 0:
            return
        t0 = time.perf_counter()
        if self.mode == "recorded":
            self._file = self.record(trainer, stage)
        else:
            self._teacher = _teacher_copy(trainer.net)
        trainer._emit({"event": "targets", "stage": stage, "mode": self.mode,
                       "seconds": time.perf_counter() - t0})

    def record(self, trainer: "SequentialTrainer", k: int) -> Any:
        """Record exits 0..k-1's logits on the training split; returns a reader keyed by sample id.

        One eval-mode forward of the prefix per batch (``forward_exits(upto=k-1)``) of a
        channels-last teacher copy (see :func:`_teacher_copy`); the logits are written as they
        come, float32, straight from the tensors (no per-sample Python work: writing and the
        per-step lookups are ~2% of the recording, which is the forward pass itself)."""
        from ..distill import TargetWriter, read_targets

        if self._tmpdir is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="exitnet-lwf-")
        rank, _ = _dist.rank_and_world()
        path = os.path.join(self._tmpdir.name, f"targets_stage{k}_rank{rank}.arrow")
        teacher = _teacher_copy(trainer.net)
        with TargetWriter(path, num_exits=k, num_classes=trainer.num_classes) as w:
            with torch.inference_mode(), trainer.autocast():
                for x, _, ids in trainer.data.ordered(trainer.eval_batch_size):
                    z = teacher.forward_exits(_layout(x.to(trainer.device, non_blocking=True)), upto=k - 1)
                    w.write(ids, [t.float().cpu() for t in z])
        return read_targets(path)

    def teacher_logits(self, ctx: StepContext, k: int) -> list[Tensor]:
        if self._teacher is not None:
            with torch.no_grad():
                return self._teacher.forward_exits(_layout(ctx.x), upto=k - 1)
        ids = ctx.ids
        got = self._file.lookup(ids.numpy() if torch.is_tensor(ids) else np.asarray(ids))
        return [torch.as_tensor(np.asarray(g), dtype=torch.float32) for g in got]

    def term(self, student: list[Tensor], teacher: list[Tensor]) -> Tensor:
        """Σ_j T²·KL(softmax(t_j/T) ‖ softmax(s_j/T)) (batch mean), unweighted by α."""
        from ._kd import kd_loss

        total: Optional[Tensor] = None
        for s, t in zip(student, teacher):
            v = kd_loss(s.float(), t.to(s.device), self.temperature, backend=self.kd_backend)
            total = v if total is None else total + v
        assert total is not None
        return total

    def loss(self, trainer: "SequentialTrainer", ctx: StepContext) -> Optional[tuple]:
        k = ctx.stage
        if k == 0:
            return None
        kd = self.term(ctx.outputs[:k], self.teacher_logits(ctx, k))
        return self.alpha * kd, kd

    def after_stage(self, trainer: "SequentialTrainer", stage: int) -> None:
        if self._file is not None and hasattr(self._file, "close"):
            self._file.close()
        self._file = None
        self._teacher = None

    def after_fit(self, trainer: "SequentialTrainer") -> None:
        self.after_stage(trainer, -1)
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None


def _layout(x: Tensor) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


def _teacher_copy(net: torch.nn.Module) -> torch.nn.Module:
    """A frozen eval-mode copy of ``net`` for teacher forwards, in channels-last layout when it
    has 2-D convolutions: inference of the small CNN on one CPU thread measured about 1.9x faster
    that way (bench/bench_trainer.py), and the teacher pass is all a recording costs. Same
    values as the model's up to float rounding (another convolution algorithm)."""
    t = copy.deepcopy(net).eval()
    for p in t.parameters():
        p.requires_grad_(False)
    if any(isinstance(m, torch.nn.Conv2d) for m in t.modules()):
        t = t.to(memory_format=torch.channels_last)
    return t


def shorthand_plugins(strategy: str, opts: dict) -> list[Plugin]:
    """The plugins a string strategy stands for (``ewc``, ``lwf``, ``ewc+lwf``; none otherwise)."""
    out: list[Plugin] = []
    if strategy in ("ewc", "ewc+lwf"):
        out.append(EWCPlugin(opts["ewc_lambda"], opts["ewc_mode"], opts["ewc_gamma"],
                             label_mode=opts["fisher_label_mode"], samples=opts["fisher_samples"]))
    if strategy in ("lwf", "ewc+lwf"):
        out.append(LwFPlugin(opts["lwf_alpha"], opts["lwf_temperature"], opts["lwf_targets"]))
    return out
