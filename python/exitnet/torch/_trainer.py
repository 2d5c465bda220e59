"""Sequential training of early exits: naive, frozen, EWC, LwF, EWC+LwF and joint.

Exits are trained one at a time, shallow to deep. Stage k trains head k together with (part of)
the backbone prefix s_0..s_k it reads; earlier heads are frozen by default. Because the prefix is
shared, earlier exits drift ("forgetting"). Strategies:

``naive``
    plain sequential fine-tuning: loss = CE(exit k).
``frozen``
    layer-wise training: stages 0..k-1 frozen, only stage k and head k train (nothing to forget).
``ewc``
    CE(exit k) + Σ_{j<k} λ/2 · Σ_i F_{j,i} (θ_i − θ*_{j,i})², with F_j the diagonal Fisher of
    exit j over ``parameters_for_exit(j)`` (computed in eval mode after stage j) and θ*_j the
    parameters at the end of stage j. The 1/2 is part of the convention: the gradient is
    λ F (θ − θ*).
``lwf``
    CE(exit k) + α · Σ_{j<k} T² · KL(softmax(z_j^old/T) ‖ softmax(z_j/T)), z^old from the model at
    the start of stage k (recorded once per stage, or an online frozen teacher copy).
``ewc+lwf``
    both terms.
``joint``
    all exits trained together from the start on Σ_k CE(exit k), the usual upper reference; it runs
    K chunks of ``epochs_per_stage`` epochs so its stability matrix is comparable.

``naive``, ``frozen`` and ``joint`` are schedules; EWC and LwF are plugins
(:class:`~exitnet.torch.EWCPlugin`, :class:`~exitnet.torch.LwFPlugin`, :mod:`._plugins`) added to
the ``naive`` schedule: ``"ewc+lwf"`` is shorthand for ``plugins=[EWCPlugin(...), LwFPlugin(...)]``,
and a user's own :class:`~exitnet.torch.Plugin` composes with them. Callbacks, loggers and early
stopping: :mod:`._hooks`; the stage loop: :mod:`._loop`; checkpoints: :mod:`._checkpoints`.

Data-parallel: when ``torch.distributed`` is initialised with W > 1 ranks, every rank draws the
same shuffled order and takes a strided share of each global minibatch; gradients are summed across
ranks with the loss scaled by the local share, so the update equals the single-process update on
the global minibatch (exactly, for models without BatchNorm; BatchNorm batch statistics are per
rank, and buffers are broadcast from rank 0 after every epoch). Fisher passes are sharded the same
way and merged exactly from (sum, count) (:mod:`exitnet.torch._dist`). Start ranks with the
``spawn`` method: a forked child of a process that loaded the Go library hangs.

After every stage every exit trained so far is evaluated: the K×K stability matrix A[k][j] =
accuracy of exit j after stage k (j ≤ k), forgetting of exit j = max_k A[k][j] − A[K-1][j]. At the
end the exits' logits on the validation and test splits give the budget curve and calibrated
operating points (:mod:`exitnet.policy`, MAC costs from :func:`exitnet.torch.stage_costs`).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ._batches import TrainData, as_eval
from ._checkpoints import load_checkpoint, save_checkpoint
from ._hooks import Callback
from ._loop import run_stage
from ._model import EarlyExitNet
from ._options import (
    BN_MODES,
    LWF_TARGETS,
    OPTIMIZERS,
    OPTIONS,
    STRATEGIES,
    TRAIN_PREFIX,
    _choice,
    _number,
    _posint,
    available_strategies,
)
from ._plugins import Plugin, shorthand_plugins
from ._results import TrainingResult
from ._trainer_config import ConfigAndEvents, _callable_name, logger  # noqa: F401  (re-exported)
from ._trainer_eval import PrecisionAndEval

__all__ = ["SequentialTrainer", "TrainingResult", "STRATEGIES", "OPTIONS", "available_strategies"]


def _resolve_device(device: Union[str, torch.device]) -> torch.device:
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device: {device!r} is not a torch device or 'auto' ({e})") from None


class SequentialTrainer(ConfigAndEvents, PrecisionAndEval):
    """Train an :class:`EarlyExitNet`'s exits one after another with a continual-learning strategy.

    Parameters
    ----------
    net : EarlyExitNet
        The network; trained in place.
    strategy : {"naive", "frozen", "ewc", "lwf", "ewc+lwf", "joint"}
        Default ``"naive"``. See the module documentation. ``ewc``/``lwf``/``ewc+lwf`` are the
        ``naive`` schedule with the EWC/LwF plugins built from the ``ewc_*``/``lwf_*`` options.
    plugins : list of Plugin, optional
        Plugins added to the strategy's (e.g. ``[EWCPlugin(100), LwFPlugin(targets="online")]`` or
        a user's :class:`~exitnet.torch.Plugin`); names must be unique. Not with ``joint``.
    epochs_per_stage : int
        Epochs per stage (``joint``: per chunk, K chunks). Default 2.
    lr : float
        Learning rate. Default 1e-3.
    optimizer : {"adam", "adamw", "sgd"} or callable
        A fresh optimizer per stage over the trainable parameters. Default ``"adam"``. A factory
        ``lambda params: torch.optim.SGD(params, lr=0.1)`` is called at every stage (``lr``,
        ``weight_decay`` and ``momentum`` are then the factory's business).
    scheduler : callable, optional
        ``lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=2)``: a fresh
        scheduler per stage, stepped after every epoch (``scheduler_interval="epoch"``) or step.
    batch_size : int
        Global minibatch size (split over ranks when data-parallel). Default 64.
    weight_decay : float
        Default 0. ``momentum``: SGD momentum, default 0.9.
    train_prefix : {"all", "new_stage", "head"} or int, optional
        Which backbone stages train at stage k: ``"all"`` = s_0..s_k, ``"new_stage"`` = s_k only,
        ``"head"`` = none (only head k), an int m = the last m stages s_{k-m+1}..s_k. Default
        ``None`` = ``"all"``, except ``"new_stage"`` for the ``frozen`` strategy (which requires
        it). Frozen stages stay in eval mode (BatchNorm statistics do not move).
    train_old_heads : bool
        Let heads 0..k-1 train at stage k (they get gradients only from the EWC / LwF terms; they
        see no cross-entropy on new data). Default False.
    ewc_lambda : float
        λ of the EWC penalty λ/2·ΣF(θ−θ*)² (with the 1/2). Default 100.
    fisher_label_mode : {"exact", "sampled", "empirical", "argmax"}
        Labels of the Fisher pass. Default ``"exact"`` (expectation over classes, the best in
        van de Ven 2025).
    fisher_samples : int, optional
        Training samples (seeded subset) in each Fisher pass. Default 500; None = all.
    ewc_mode : {"separate", "sum", "online"}
        One penalty per earlier exit with its own anchor (``separate``), the summed Fishers with
        the latest anchor (``sum``), or online consolidation F ← γF + F_new (``online``). Default
        ``"separate"``.
    ewc_gamma : float
        γ of online consolidation. Default 1.0.
    lwf_alpha, lwf_temperature : float
        α and T of the LwF term α·Σ_j T²·KL. Defaults 1.0 and 2.0.
    lwf_targets : {"recorded", "online"}, optional
        ``recorded``: before stage k, run the model once over the training set and store exits
        0..k-1's logits keyed by sample id (an Arrow IPC file via :mod:`exitnet.distill`), valid
        only if the student sees the recorded input. ``online``: a frozen teacher copy runs on
        every minibatch. Default None: recorded when the data yields ids and is not randomly
        augmented, else online (said once; ``result.metadata["lwf_targets"]``). An explicit
        ``"recorded"`` on data without ids or with random augmentation is refused.
    seed : int
        Seeds shuffling and the Fisher subsets (each stage from (seed, stage), so resumed runs
        repeat uninterrupted ones; torch's global RNG is also seeded at the start of each
        stage). Default 0. Model initialisation is the caller's.
    device : str or torch.device
        Default ``"cpu"``; ``"auto"`` = CUDA when available, else CPU.
    amp : bool or {"bf16", "fp16"}
        Mixed precision (``torch.autocast``): ``True`` = float16 with a gradient scaler on CUDA,
        bfloat16 on CPU; ``"bf16"``/``"fp16"`` choose. Default False.
    grad_clip : float, optional
        Clip the global norm of the trainable parameters' gradients to this value.
    bn_mode : {"freeze", "adapt"}, optional
        BatchNorm of the protected stages (and heads) 0..k-1 while stage k trains: ``"freeze"``
        keeps them in eval mode (running statistics neither used from the batch nor updated,
        so earlier exits keep the statistics they were evaluated with); ``"adapt"`` lets them
        follow the new training (the behaviour before this option). Default: ``"freeze"`` for the
        protective strategies (frozen, ewc, lwf, ewc+lwf, and any plugin), ``"adapt"`` for
        ``naive`` and ``joint``. Recorded in the result's ``metadata``.
    callbacks : list of Callback, optional
        Called at every event (:mod:`exitnet.torch._hooks`: stage/epoch/step hooks,
        :class:`CSVLogger`, :class:`TensorBoardLogger`, :class:`EarlyStopping`).
    progress : bool
        tqdm progress bars. Default True.
    log : callable, optional
        Called with one dict per event (``{"event": "epoch", "stage": k, "epoch": e, "loss": ...}``;
        events ``stage_start``, ``fisher``, ``targets``, ``epoch``, ``stage_end``, ``done``).
        Default: the ``exitnet.trainer`` logger at INFO.
    checkpoint_dir : path, optional
        Where to checkpoint after every stage (atomically: weights via ``torch.save`` of tensors
        only, loaded with ``weights_only=True``; trainer state as JSON). :meth:`fit` resumes from
        it. Default None (no checkpoints).
    eval_batch_size : int
        Batch size of evaluation and recording passes. Default 512.

    Examples
    --------
    >>> from exitnet import data
    >>> from exitnet.torch import small_cnn_8, SequentialTrainer
    >>> splits = data.digits()
    >>> net = small_cnn_8()
    >>> res = SequentialTrainer(net, "lwf", epochs_per_stage=1, progress=False).fit(splits)  # doctest: +SKIP
    >>> res.stability_frame()  # doctest: +SKIP
    """

    def __init__(
        self,
        net: EarlyExitNet,
        strategy: str = "naive",
        *,
        plugins: Optional[Sequence[Plugin]] = None,
        epochs_per_stage: int = 2,
        lr: float = 1e-3,
        optimizer: Union[str, Callable[[list], torch.optim.Optimizer]] = "adam",
        scheduler: Optional[Callable[[torch.optim.Optimizer], Any]] = None,
        scheduler_interval: str = "epoch",
        batch_size: int = 64,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        train_prefix: Union[str, int, None] = None,
        train_old_heads: bool = False,
        ewc_lambda: float = 100.0,
        fisher_label_mode: str = "exact",
        fisher_samples: Optional[int] = 500,
        ewc_mode: str = "separate",
        ewc_gamma: float = 1.0,
        lwf_alpha: float = 1.0,
        lwf_temperature: float = 2.0,
        lwf_targets: Optional[str] = None,
        seed: int = 0,
        device: Union[str, torch.device] = "cpu",
        amp: Union[bool, str] = False,
        grad_clip: Optional[float] = None,
        bn_mode: Optional[str] = None,
        progress: bool = True,
        log: Optional[Callable[[dict], None]] = None,
        callbacks: Optional[Sequence[Callback]] = None,
        checkpoint_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
        eval_batch_size: int = 512,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise TypeError(
                f"unknown option(s) {', '.join(sorted(unknown))}; valid: {', '.join(OPTIONS)}"
            )
        if not isinstance(net, EarlyExitNet):
            raise TypeError(f"net: expected an EarlyExitNet, got {type(net).__name__}")
        self.net = net
        self.strategy = _choice("strategy", strategy, STRATEGIES)
        self.schedule = strategy if strategy in ("frozen", "joint") else "naive"
        self.epochs_per_stage = _posint("epochs_per_stage", epochs_per_stage)
        self.lr = _number("lr", lr, strict=True)
        if callable(optimizer):
            self.optimizer: Any = optimizer
        else:
            self.optimizer = _choice("optimizer", optimizer, OPTIMIZERS)
        if scheduler is not None and not callable(scheduler):
            raise TypeError("scheduler: expected a callable optimizer -> LR scheduler")
        self.scheduler = scheduler
        self.scheduler_interval = _choice("scheduler_interval", scheduler_interval, ("epoch", "step"))
        self.batch_size = _posint("batch_size", batch_size)
        self.weight_decay = _number("weight_decay", weight_decay)
        self.momentum = _number("momentum", momentum)
        if train_prefix is None:
            train_prefix = "new_stage" if strategy == "frozen" else "all"
        if isinstance(train_prefix, (int, np.integer)) and not isinstance(train_prefix, bool):
            train_prefix = _posint("train_prefix", train_prefix)
        else:
            train_prefix = _choice("train_prefix", train_prefix, TRAIN_PREFIX + ("<int m>",))
            if train_prefix == "<int m>":
                raise ValueError("train_prefix: pass an int, not the placeholder")
        if strategy == "frozen" and train_prefix != "new_stage":
            raise ValueError(
                f"train_prefix: the 'frozen' strategy trains only the new stage; got {train_prefix!r}"
            )
        self.train_prefix = train_prefix
        if not isinstance(train_old_heads, bool):
            raise TypeError("train_old_heads: expected a bool")
        self.train_old_heads = train_old_heads
        if lwf_targets is not None:
            _choice("lwf_targets", lwf_targets, LWF_TARGETS)
        opts = dict(ewc_lambda=ewc_lambda, ewc_mode=ewc_mode, ewc_gamma=ewc_gamma,
                    fisher_label_mode=fisher_label_mode, fisher_samples=fisher_samples,
                    lwf_alpha=lwf_alpha, lwf_temperature=lwf_temperature,
                    lwf_targets=lwf_targets or "auto")
        # the shorthand options are checked whatever the strategy (as before the plugins)
        from ._plugins import EWCPlugin, LwFPlugin

        ewc_p = EWCPlugin(ewc_lambda, ewc_mode, ewc_gamma, label_mode=fisher_label_mode, samples=fisher_samples)
        lwf_p = LwFPlugin(lwf_alpha, lwf_temperature, lwf_targets or "auto")
        self.ewc_lambda, self.ewc_mode, self.ewc_gamma = ewc_p.lam, ewc_p.mode, ewc_p.gamma
        self.fisher_label_mode, self.fisher_samples = ewc_p.label_mode, ewc_p.samples
        self.lwf_alpha, self.lwf_temperature = lwf_p.alpha, lwf_p.temperature
        self._lwf_targets_arg = lwf_targets
        self.user_plugins = list(plugins or [])
        for p in self.user_plugins:
            if not isinstance(p, Plugin):
                raise TypeError(f"plugins: expected Plugin instances, got {type(p).__name__}")
        if self.user_plugins and self.schedule == "joint":
            raise ValueError("plugins: the 'joint' schedule trains every exit from the start; it takes no plugins")
        self.plugins: list[Plugin] = shorthand_plugins(self.strategy, opts) + self.user_plugins
        names = [p.name for p in self.plugins]
        if len(set(names)) != len(names):
            raise ValueError(f"plugins: names must be unique, got {names} (strategy {strategy!r} adds its own)")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
        self.seed = int(seed)
        self.device = _resolve_device(device)
        if amp not in (False, True, "bf16", "fp16"):
            raise ValueError(f"amp: expected False, True, 'bf16' or 'fp16', got {amp!r}")
        self.amp = amp
        if grad_clip is not None:
            grad_clip = _number("grad_clip", grad_clip, strict=True)
        self.grad_clip = grad_clip
        protective = self.schedule == "frozen" or bool(self.plugins)
        self.bn_mode = _choice("bn_mode", bn_mode, BN_MODES) if bn_mode is not None else (
            "freeze" if protective else "adapt")
        self.progress = bool(progress)
        if log is not None and not callable(log):
            raise TypeError("log: expected a callable taking one dict")
        self.log = log
        self.callbacks = list(callbacks or [])
        for c in self.callbacks:
            if not isinstance(c, Callback):
                raise TypeError(f"callbacks: expected Callback instances, got {type(c).__name__}")
        self._step_listeners = bool(self.callbacks)
        self.checkpoint_dir = None if checkpoint_dir is None else os.fspath(checkpoint_dir)
        self.eval_batch_size = _posint("eval_batch_size", eval_batch_size)
        self.data: Optional[TrainData] = None
        self.val: Any = None
        self.eval_data: Any = None
        self.num_classes: Optional[int] = None
        self._stop = False

    # ------------------------------------------------------------------ fit

    def fit(
        self,
        train: Any,
        val: Optional[Any] = None,
        test: Optional[Any] = None,
        *,
        resume: bool = True,
        analyse: bool = True,
    ) -> TrainingResult:
        """Train all exits and evaluate.

        Parameters
        ----------
        train : Dataset, DataLoader or exitnet.data.Splits
            A Dataset of ``(x, y)`` or ``(x, y, ids)`` samples (ids key recorded LwF targets;
            default the row index), batched by the trainer in a seeded order; or the user's own
            DataLoader (its sampler, augmentation and ``collate_fn``; ids only if its batches
            are ``(x, y, ids)``). A :class:`exitnet.data.Splits` supplies train, val and test.
        val : Dataset or DataLoader, optional
            Calibration split for the operating points (and EarlyStopping's validation).
        test : Dataset or DataLoader, optional
            Evaluation split of the stability matrix and the budget curve (default: ``val``).
            At least one of ``val`` and ``test`` is required.
        resume : bool
            Continue from ``checkpoint_dir`` if it holds a checkpoint of this run. Default True.
        analyse : bool
            Compute the budget curve and operating points at the end (needs ``val`` and
            ``test``). Default True.

        Returns
        -------
        TrainingResult
            With ``metadata`` (what the run decided) and ``stage_timings`` (per stage: train,
            fisher, targets, eval seconds).
        """
        num_classes = None
        if hasattr(train, "train") and hasattr(train, "num_classes") and not isinstance(train, (Dataset, DataLoader)):
            splits = train
            train, val, test = splits.train, splits.val, splits.test
            num_classes = int(splits.num_classes)
            if val is not None and len(val) == 0:
                val = None
        if not isinstance(train, (Dataset, DataLoader)):
            raise TypeError(f"train: expected a torch Dataset or DataLoader, got {type(train).__name__}")
        val = as_eval(val, "val")
        test = as_eval(test, "test")
        if val is None and test is None:
            raise ValueError("val: need a validation or a test split to evaluate the exits")
        self.data = TrainData(train, "train")
        self.val = val
        self.eval_data = test if test is not None else val
        self.net.to(self.device)
        self.num_classes = self._check_classes(self.data, num_classes)
        K = self.net.num_exits

        A = np.full((K, K), np.nan)
        history: list[dict] = []
        timings = {"train": 0.0, "fisher": 0.0, "targets": 0.0, "eval": 0.0}
        stage_timings: list[dict] = []
        start_stage = 0
        for p in self.plugins:
            p.before_fit(self)
        self._emit({"event": "fit_start", "stages": K, "strategy": self.strategy, "device": str(self.device)},
                   callbacks_only=True)
        if resume:
            doc = load_checkpoint(self)
            if doc is not None:
                start_stage = int(doc["completed_stages"])
                for k, row in enumerate(doc["stability"]):
                    A[k, : len(row)] = row
                history = list(doc.get("history", []))
                timings.update(doc.get("timings", {}))
                stage_timings = list(doc.get("stage_timings", []))
                self._emit({"event": "resume", "completed_stages": start_stage})
        t_all = time.perf_counter()
        try:
            for k in range(start_stage, K):
                split = run_stage(self, k, A, history, timings)
                stage_timings.append({"stage": k, **split})
                state = {
                    "completed_stages": k + 1,
                    "stability": [A[i, : i + 1].tolist() for i in range(k + 1)],
                    "history": history,
                    "timings": timings,
                    "stage_timings": stage_timings,
                }
                save_checkpoint(self, state)
                self._emit({"event": "stage_end", "stage": k, "accuracy": A[k, : k + 1].tolist(),
                            **{f"seconds_{n}": v for n, v in split.items()}})
        finally:
            for p in self.net.parameters():
                p.requires_grad_(True)
            self.net.eval()
            for p in self.plugins:
                p.after_fit(self)
        timings["total"] = time.perf_counter() - t_all
        res = TrainingResult(
            strategy=self.strategy if not self.user_plugins else "+".join([self.strategy] + [p.name for p in self.user_plugins]),
            stability=A,
            history=history,
            timings=dict(timings),
            config=self.config(),
            metadata=self.metadata(),
            stage_timings=stage_timings,
        )
        if analyse and val is not None and test is not None:
            t0 = time.perf_counter()
            res.val_logits, res.val_labels = self.predict_logits(val)
            res.test_logits, res.test_labels = self.predict_logits(test)
            res.costs = self._costs()
            res.analyse()
            res.timings["analysis"] = time.perf_counter() - t0
        self._emit({"event": "done", "final_accuracy": A[K - 1].tolist()})
        return res
