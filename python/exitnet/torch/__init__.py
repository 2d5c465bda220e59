"""exitnet's PyTorch side: early-exit models (built in, or attached to any traceable network
with :func:`attach_exits`), Fisher hooks, EWC and LwF losses, the sequential trainer, MAC
counting and model export.

Names resolve lazily from the submodules below, so ``import exitnet.torch`` is
cheap and a missing optional piece fails only when used.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES: dict[str, str] = {
    # models
    "EarlyExitNet": "._model",
    "small_cnn": "._model",
    "small_cnn_28": "._model",
    "small_cnn_8": "._model",
    "small_resnet_32": "._model",
    "conv_head": "._model",
    "spatial_head": "._model",
    "ResidualBlock": "._export",
    "attach_exits": "._attach",
    # EWC
    "fisher_diagonal": "._fisher",
    "fisher_for_exit": "._fisher",
    "FisherResult": "._fisher",
    "LABEL_MODES": "._fisher",
    "TorchFisherAccumulator": "._fisher_accumulator",
    "ewc_penalty": "._ewc",
    "EWC": "._ewc",
    # LwF (a torch expression: autograd, any device)
    "kd_loss_torch": "..distill",
    "kd_loss": "._kd",  # Go's fused kernel on CPU as an autograd Function, torch elsewhere
    # training and results
    "SequentialTrainer": "._trainer",
    "Plugin": "._plugins",
    "StepContext": "._plugins",
    "EWCPlugin": "._plugins",
    "LwFPlugin": "._plugins",
    "Callback": "._hooks",
    "CSVLogger": "._hooks",
    "TensorBoardLogger": "._hooks",
    "EarlyStopping": "._hooks",
    "available_strategies": "._trainer",
    "STRATEGIES": "._trainer",
    "TrainingResult": "._results",
    "forgetting": "._results",
    "compare": "._results",
    "plot_stability": "._results",
    "plot_stability_matrices": "._results",
    "plot_budget_curves": "._results",
    # costs and export
    "count_macs": "._macs",
    "stage_costs": "._macs",
    "export": "._export",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    mod = _NAMES.get(name)
    if mod is None:
        raise AttributeError(f"module 'exitnet.torch' has no attribute {name!r}")
    return getattr(importlib.import_module(mod, __name__), name)


def __dir__() -> list[str]:
    return __all__
