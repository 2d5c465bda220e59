"""The trainer's configuration, description and events, split out of :mod:`._trainer`.

:class:`ConfigAndEvents` is a mixin of :class:`~exitnet.torch.SequentialTrainer`: it reads the
trainer's options, ``plugins``, ``callbacks`` and ``log``.
"""

from __future__ import annotations

import logging
from typing import Any

from ._plugins import Plugin

logger = logging.getLogger("exitnet.trainer")


def _callable_name(f: Any) -> str:
    return "custom:" + getattr(f, "__qualname__", type(f).__name__)


class ConfigAndEvents:
    """Strategy properties, plugin lookup, ``config``/``metadata``/``repr``, events to callbacks and log."""

    # ------------------------------------------------------------------ config / repr

    @property
    def uses_ewc(self) -> bool:
        return any(p.name == "ewc" for p in self.plugins)

    @property
    def uses_lwf(self) -> bool:
        return any(p.name == "lwf" for p in self.plugins)

    @property
    def lwf_targets(self) -> str:
        """The LwF targets used ("recorded"/"online"; before fit, the requested or "recorded")."""
        for p in self.plugins:
            if p.name == "lwf" and getattr(p, "mode", None):
                return p.mode
        return self._lwf_targets_arg or "recorded"

    @property
    def bn_policy(self) -> str:
        """The BatchNorm policy in words (what result files record)."""
        if self.bn_mode == "freeze":
            return ("freeze: BatchNorm of the protected stages and heads 0..k-1 in eval mode (running "
                    "statistics fixed) while stage k trains; trainable stage k updates its own")
        return "adapt: BatchNorm statistics of every trainable stage update (train mode), frozen stages in eval mode"

    def plugin(self, name: str) -> Plugin:
        """The plugin called ``name`` (e.g. ``"ewc"``)."""
        for p in self.plugins:
            if p.name == name:
                return p
        raise KeyError(f"name: no plugin {name!r}; have {[p.name for p in self.plugins]}")

    def config(self) -> dict:
        """The options as a JSON-compatible dict (what checkpoints store)."""
        cfg = {
            "strategy": self.strategy,
            "epochs_per_stage": self.epochs_per_stage,
            "lr": self.lr,
            "optimizer": self.optimizer if isinstance(self.optimizer, str) else _callable_name(self.optimizer),
            "batch_size": self.batch_size,
            "weight_decay": self.weight_decay,
            "momentum": self.momentum,
            "train_prefix": self.train_prefix,
            "train_old_heads": self.train_old_heads,
            "ewc_lambda": self.ewc_lambda,
            "fisher_label_mode": self.fisher_label_mode,
            "fisher_samples": self.fisher_samples,
            "ewc_mode": self.ewc_mode,
            "ewc_gamma": self.ewc_gamma,
            "lwf_alpha": self.lwf_alpha,
            "lwf_temperature": self.lwf_temperature,
            "lwf_targets": self.lwf_targets,
            "seed": self.seed,
            "eval_batch_size": self.eval_batch_size,
            "bn_mode": self.bn_mode,
            "amp": self.amp,
            "grad_clip": self.grad_clip,
            "scheduler": None if self.scheduler is None else _callable_name(self.scheduler),
            "scheduler_interval": self.scheduler_interval,
        }
        if self.user_plugins:
            cfg["plugins"] = [p.config() for p in self.user_plugins]
        return cfg

    def metadata(self) -> dict:
        """What this run decided: device, AMP dtype, BatchNorm mode, schedule, plugins and their
        choices (e.g. ``lwf_targets`` and why)."""
        md: dict[str, Any] = {
            "device": str(self.device), "amp": self._amp_dtype_name(), "bn_mode": self.bn_mode,
            "schedule": self.schedule, "plugins": [p.config() for p in self.plugins],
            "train_data": None if self.data is None else (
                "DataLoader" if self.data.loader is not None else type(self.data.dataset).__name__),
            "augmented": None if self.data is None else self.data.augmented,
        }
        for p in self.plugins:
            md.update(p.metadata())
        return md

    def __repr__(self) -> str:
        opt = self.optimizer if isinstance(self.optimizer, str) else _callable_name(self.optimizer)
        extra = f", plugins={self.plugins!r}" if self.user_plugins else ""
        return (
            f"SequentialTrainer(strategy={self.strategy!r}, exits={self.net.num_exits}, "
            f"epochs_per_stage={self.epochs_per_stage}, lr={self.lr}, optimizer={opt!r}{extra})"
        )

    def _emit(self, record: dict, callbacks_only: bool = False) -> None:
        """Send an event to the callbacks and (unless ``callbacks_only``: the events added with
        the callbacks, so ``log`` streams stay as they were) to ``log`` or the logger."""
        for c in self.callbacks:
            c.on_event(self, record)
        if callbacks_only:
            return
        if self.log is not None:
            self.log(record)
        else:
            logger.info("%s", record)

    def stop_stage(self) -> None:
        """End the current stage after this epoch (what EarlyStopping calls)."""
        self._stop = True
