"""Callbacks of :class:`~exitnet.torch.SequentialTrainer`: stage/epoch/step hooks, a CSV logger, a
TensorBoard logger and early stopping on validation accuracy per stage.

Every trainer event is a dict with an ``"event"`` key; a callback receives it in
:meth:`Callback.on_event`, which dispatches to the method of that event:

==================  =================  ==========================================================
event               method             fields
==================  =================  ==========================================================
``fit_start``       on_fit_start       stages, strategy, device
``stage_start``     on_stage_start     stage, strategy
``step``            on_step_end        stage, epoch, step, loss and each term (this rank)
``epoch``           on_epoch_end       stage, epoch, mean loss and terms (what history stores;
                                       fields a callback adds land in the history too)
``stage_trained``   on_stage_trained   stage, epochs (after the last epoch, before evaluation)
``stage_end``       on_stage_end       stage, accuracy (exits 0..stage), seconds per phase
``done``            on_fit_end         final_accuracy
==================  =================  ==========================================================

plus ``fisher``, ``targets``, ``lwf_targets`` and ``resume`` (to :meth:`Callback.on_event` only).
"""

from __future__ import annotations

import csv
import math
import os
from typing import TYPE_CHECKING, Any, Optional

import torch

if TYPE_CHECKING:  # pragma: no cover
    from ._trainer import SequentialTrainer

__all__ = ["Callback", "CSVLogger", "TensorBoardLogger", "EarlyStopping"]

_METHODS = {
    "fit_start": "on_fit_start", "stage_start": "on_stage_start", "step": "on_step_end",
    "epoch": "on_epoch_end", "stage_trained": "on_stage_trained", "stage_end": "on_stage_end",
    "done": "on_fit_end",
}


class Callback:
    """Base class: override the ``on_*`` methods you need (each gets the trainer and the event)."""

    def on_event(self, trainer: "SequentialTrainer", record: dict) -> None:
        m = _METHODS.get(record.get("event", ""))
        if m is not None:
            getattr(self, m)(trainer, record)

    def on_fit_start(self, trainer: "SequentialTrainer", record: dict) -> None: ...
    def on_stage_start(self, trainer: "SequentialTrainer", record: dict) -> None: ...
    def on_step_end(self, trainer: "SequentialTrainer", record: dict) -> None: ...
    def on_epoch_end(self, trainer: "SequentialTrainer", record: dict) -> None: ...
    def on_stage_trained(self, trainer: "SequentialTrainer", record: dict) -> None: ...
    def on_stage_end(self, trainer: "SequentialTrainer", record: dict) -> None: ...
    def on_fit_end(self, trainer: "SequentialTrainer", record: dict) -> None: ...


def _scalars(record: dict) -> dict[str, float]:
    out = {}
    for k, v in record.items():
        if k in ("event", "stage", "epoch", "step") or isinstance(v, bool):
            continue
        if isinstance(v, (int, float)):
            out[k] = float(v)
        elif isinstance(v, list) and all(isinstance(a, (int, float)) for a in v):
            out.update({f"{k}_exit{j}": float(a) for j, a in enumerate(v)})
    return out


class CSVLogger(Callback):
    """Appends one row per (event, metric) to a CSV file in long format:
    ``event, stage, epoch, step, metric, value`` (``pandas.read_csv(path).pivot_table(...)`` makes
    it wide). Logs ``epoch`` and ``stage_end`` events, and ``step`` events with ``steps=True``.
    The file is flushed after every row so a crashed run keeps what it logged."""

    def __init__(self, path: "str | os.PathLike[str]", *, steps: bool = False) -> None:
        self.path = os.fspath(path)
        self.steps = bool(steps)
        self._f: Any = None
        self._w: Any = None

    def _row(self, record: dict) -> None:
        if self._f is None:
            new = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
            self._f = open(self.path, "a", newline="")
            self._w = csv.writer(self._f)
            if new:
                self._w.writerow(["event", "stage", "epoch", "step", "metric", "value"])
        for k, v in _scalars(record).items():
            self._w.writerow([record["event"], record.get("stage", ""), record.get("epoch", ""),
                              record.get("step", ""), k, repr(v)])
        self._f.flush()

    def on_epoch_end(self, trainer: "SequentialTrainer", record: dict) -> None:
        self._row(record)

    def on_step_end(self, trainer: "SequentialTrainer", record: dict) -> None:
        if self.steps:
            self._row(record)

    def on_stage_end(self, trainer: "SequentialTrainer", record: dict) -> None:
        self._row(record)

    def on_fit_end(self, trainer: "SequentialTrainer", record: dict) -> None:
        if self._f is not None:
            self._f.close()
            self._f = self._w = None


class TensorBoardLogger(Callback):
    """Scalars to TensorBoard (needs PyPI ``tensorboard``: ``pip install 'exitnet[tensorboard]'``):
    ``epoch/<metric>`` against the global epoch, ``step/<metric>`` against the global step (with
    ``steps=True``), ``stage/<metric>_exit<j>`` (accuracy of every trained exit) against the stage."""

    def __init__(self, log_dir: "str | os.PathLike[str]", *, steps: bool = False) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ImportError(
                f"TensorBoardLogger needs the 'tensorboard' package ({e}); "
                "install it with pip install 'exitnet[tensorboard]'"
            ) from None
        self.writer = SummaryWriter(log_dir=os.fspath(log_dir))
        self.steps = bool(steps)
        self._epoch = 0
        self._step = 0

    def on_step_end(self, trainer: "SequentialTrainer", record: dict) -> None:
        if self.steps:
            for k, v in _scalars(record).items():
                self.writer.add_scalar(f"step/{k}", v, self._step)
        self._step += 1

    def on_epoch_end(self, trainer: "SequentialTrainer", record: dict) -> None:
        for k, v in _scalars(record).items():
            self.writer.add_scalar(f"epoch/{k}", v, self._epoch)
        self._epoch += 1

    def on_stage_end(self, trainer: "SequentialTrainer", record: dict) -> None:
        for k, v in _scalars(record).items():
            self.writer.add_scalar(f"stage/{k}", v, int(record["stage"]))
        self.writer.flush()

    def on_fit_end(self, trainer: "SequentialTrainer", record: dict) -> None:
        self.writer.close()


class EarlyStopping(Callback):
    """Stop a stage when exit k's validation accuracy has not improved for ``patience`` epochs.

    After every epoch of stage k, exit k is evaluated on the validation split (``fit``'s ``val``,
    required); the epoch record gains ``val_accuracy``. With ``restore_best`` (default) the
    weights of the best epoch are restored before the stage is evaluated. Its state is per stage,
    so a checkpoint resume (stage boundaries) repeats an uninterrupted run.
    """

    def __init__(self, patience: int = 2, min_delta: float = 0.0, *, restore_best: bool = True) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience: expected a positive int, got {patience!r}")
        if not isinstance(min_delta, (int, float)) or not math.isfinite(min_delta) or min_delta < 0:
            raise ValueError(f"min_delta: expected a finite number ≥ 0, got {min_delta!r}")
        self.patience = patience
        self.min_delta = float(min_delta)
        self.restore_best = bool(restore_best)
        self.stopped_at: dict[int, int] = {}  # stage -> epoch it stopped after

    def on_fit_start(self, trainer: "SequentialTrainer", record: dict) -> None:
        if trainer.val is None:
            raise ValueError("EarlyStopping: needs a validation split (fit(train, val, ...))")

    def on_stage_start(self, trainer: "SequentialTrainer", record: dict) -> None:
        self.best = -math.inf
        self.bad = 0
        self.best_state: Optional[dict] = None

    def on_epoch_end(self, trainer: "SequentialTrainer", record: dict) -> None:
        k = int(record["stage"])
        acc = trainer.evaluate(trainer.val, upto=k)[k]
        record["val_accuracy"] = acc
        if acc > self.best + self.min_delta:
            self.best, self.bad = acc, 0
            if self.restore_best:
                self.best_state = {n: t.detach().clone() for n, t in trainer.net.state_dict().items()}
        else:
            self.bad += 1
            if self.bad >= self.patience:
                self.stopped_at[k] = int(record["epoch"])
                trainer.stop_stage()

    def on_stage_trained(self, trainer: "SequentialTrainer", record: dict) -> None:
        if self.restore_best and self.best_state is not None:
            with torch.no_grad():
                trainer.net.load_state_dict(self.best_state)
        self.best_state = None
