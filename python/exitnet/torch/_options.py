"""Options of :class:`~exitnet.torch.SequentialTrainer`: the valid values and their checks."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np

STRATEGIES = ("naive", "frozen", "ewc", "lwf", "ewc+lwf", "joint")
OPTIMIZERS = ("adam", "adamw", "sgd")
TRAIN_PREFIX = ("all", "new_stage", "head")
FISHER_LABEL_MODES = ("exact", "sampled", "empirical", "argmax")
EWC_MODES = ("separate", "sum", "online")
LWF_TARGETS = ("recorded", "online")
BN_MODES = ("freeze", "adapt")
OPTIONS = (
    "strategy", "plugins", "epochs_per_stage", "lr", "optimizer", "scheduler", "scheduler_interval",
    "batch_size", "weight_decay", "momentum", "train_prefix", "train_old_heads", "ewc_lambda",
    "fisher_label_mode", "fisher_samples", "ewc_mode", "ewc_gamma", "lwf_alpha", "lwf_temperature",
    "lwf_targets", "seed", "device", "amp", "grad_clip", "bn_mode", "progress", "log", "callbacks",
    "checkpoint_dir", "eval_batch_size",
)

# options that must match for a checkpoint to be resumed
_RUN_KEYS = (
    "strategy", "epochs_per_stage", "lr", "optimizer", "weight_decay", "momentum", "batch_size",
    "train_prefix", "train_old_heads", "ewc_lambda", "fisher_label_mode", "fisher_samples",
    "ewc_mode", "ewc_gamma", "lwf_alpha", "lwf_temperature", "lwf_targets", "seed",
    "bn_mode", "amp", "grad_clip", "scheduler", "scheduler_interval", "plugins",
)
# what a checkpoint written before an option existed implies (the behaviour of that time)
_RUN_DEFAULTS = {"bn_mode": "adapt", "amp": False, "grad_clip": None, "scheduler": None,
                 "scheduler_interval": "epoch", "plugins": None}


def available_strategies() -> tuple[str, ...]:
    """The strategies whose supporting modules import here (EWC needs the Fisher and EWC modules,
    LwF needs :mod:`exitnet.distill`); normally all of :data:`STRATEGIES`."""
    import importlib

    ok = {"naive", "frozen", "joint"}
    try:
        importlib.import_module("exitnet.torch._fisher")
        importlib.import_module("exitnet.torch._ewc")
        importlib.import_module("exitnet.fisher")
        ok.add("ewc")
    except ImportError:
        pass
    try:
        importlib.import_module("exitnet.distill")
        ok.add("lwf")
    except ImportError:
        pass
    if "ewc" in ok and "lwf" in ok:
        ok.add("ewc+lwf")
    return tuple(s for s in STRATEGIES if s in ok)


def _choice(name: str, value: Any, valid: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"{name}: unknown value {value!r}; valid: {', '.join(valid)}")
    return value


def _number(name: str, value: Any, *, lo: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v < lo or (strict and v == lo):
        raise ValueError(f"{name}: must be {'>' if strict else '>='} {lo}, got {value!r}")
    return v


def _posint(name: str, value: Any, *, allow_none: bool = False) -> Optional[int]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive int{' or None' if allow_none else ''}, got {value!r}")
    return int(value)
