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

import copy
import logging
import math
import os
import tempfile
import time
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from . import _batches, _dist
from ._checkpoints import load_checkpoint, save_checkpoint
from ._model import EarlyExitNet
from ._options import (
    EWC_MODES,
    FISHER_LABEL_MODES,
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
from ._results import TrainingResult

__all__ = ["SequentialTrainer", "TrainingResult", "STRATEGIES", "OPTIONS", "available_strategies"]


logger = logging.getLogger("exitnet.trainer")


class SequentialTrainer:
    """Train an :class:`EarlyExitNet`'s exits one after another with a continual-learning strategy.

    Parameters
    ----------
    net : EarlyExitNet
        The network; trained in place.
    strategy : {"naive", "frozen", "ewc", "lwf", "ewc+lwf", "joint"}
        Default ``"naive"``. See the module documentation.
    epochs_per_stage : int
        Epochs per stage (``joint``: per chunk, K chunks). Default 2.
    lr : float
        Learning rate. Default 1e-3.
    optimizer : {"adam", "adamw", "sgd"}
        A fresh optimizer per stage over the trainable parameters. Default ``"adam"``.
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
    lwf_targets : {"recorded", "online"}
        ``recorded``: before stage k, run the model once over the training set and store exits
        0..k-1's logits keyed by sample id (an Arrow IPC file via :mod:`exitnet.distill`; no data
        augmentation is applied by this trainer, so the recorded view is the view the student
        sees). ``online``: a frozen teacher copy runs on every minibatch. Default ``"recorded"``.
    seed : int
        Seeds shuffling and the Fisher subsets (each stage from (seed, stage), so resumed runs
        repeat uninterrupted ones; torch's global RNG is also seeded at the start of each
        stage). Default 0. Model initialisation is the caller's.
    device : str or torch.device
        Default ``"cpu"``.
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
        epochs_per_stage: int = 2,
        lr: float = 1e-3,
        optimizer: str = "adam",
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
        lwf_targets: str = "recorded",
        seed: int = 0,
        device: Union[str, torch.device] = "cpu",
        progress: bool = True,
        log: Optional[Callable[[dict], None]] = None,
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
        self.epochs_per_stage = _posint("epochs_per_stage", epochs_per_stage)
        self.lr = _number("lr", lr, strict=True)
        self.optimizer = _choice("optimizer", optimizer, OPTIMIZERS)
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
        self.ewc_lambda = _number("ewc_lambda", ewc_lambda)
        self.fisher_label_mode = _choice("fisher_label_mode", fisher_label_mode, FISHER_LABEL_MODES)
        self.fisher_samples = _posint("fisher_samples", fisher_samples, allow_none=True)
        self.ewc_mode = _choice("ewc_mode", ewc_mode, EWC_MODES)
        self.ewc_gamma = _number("ewc_gamma", ewc_gamma, strict=True)
        if self.ewc_gamma > 1.0:
            raise ValueError(f"ewc_gamma: must be in (0, 1], got {ewc_gamma!r}")
        if self.ewc_mode != "online" and self.ewc_gamma != 1.0:
            raise ValueError(
                f"ewc_gamma: only used by ewc_mode='online' (got {ewc_gamma!r} with {ewc_mode!r})"
            )
        self.lwf_alpha = _number("lwf_alpha", lwf_alpha)
        self.lwf_temperature = _number("lwf_temperature", lwf_temperature, strict=True)
        self.lwf_targets = _choice("lwf_targets", lwf_targets, LWF_TARGETS)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
        self.seed = int(seed)
        self.device = torch.device(device)
        self.progress = bool(progress)
        if log is not None and not callable(log):
            raise TypeError("log: expected a callable taking one dict")
        self.log = log
        self.checkpoint_dir = None if checkpoint_dir is None else os.fspath(checkpoint_dir)
        self.eval_batch_size = _posint("eval_batch_size", eval_batch_size)
        self._ewc = None  # exitnet.torch.EWC, created by fit() for the ewc strategies
        self._tmpdir: Optional[tempfile.TemporaryDirectory] = None

    # ------------------------------------------------------------------ config / repr

    @property
    def uses_ewc(self) -> bool:
        return self.strategy in ("ewc", "ewc+lwf")

    @property
    def uses_lwf(self) -> bool:
        return self.strategy in ("lwf", "ewc+lwf")

    def config(self) -> dict:
        """The options as a JSON-compatible dict (what checkpoints store)."""
        return {
            "strategy": self.strategy,
            "epochs_per_stage": self.epochs_per_stage,
            "lr": self.lr,
            "optimizer": self.optimizer,
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
        }

    def __repr__(self) -> str:
        return (
            f"SequentialTrainer(strategy={self.strategy!r}, exits={self.net.num_exits}, "
            f"epochs_per_stage={self.epochs_per_stage}, lr={self.lr}, optimizer={self.optimizer!r})"
        )

    def _emit(self, record: dict) -> None:
        if self.log is not None:
            self.log(record)
        else:
            logger.info("%s", record)

    # ------------------------------------------------------------------ data

    _as_dataset = staticmethod(_batches.as_dataset)

    def _batches(self, ds: Dataset, bs: int, perm: Optional[torch.Tensor] = None):
        return _batches.iter_batches(ds, bs, perm)

    def _stage_gen(self, stage: int, salt: int = 0) -> torch.Generator:
        return _batches.stage_generator(self.seed, stage, salt)

    def _check_classes(self, ds: Dataset, num_classes: Optional[int]) -> int:
        x0 = ds[0][0].unsqueeze(0).to(self.device)
        was = self.net.training
        self.net.eval()
        with torch.no_grad():
            outs = self.net(x0)
        self.net.train(was)
        widths = {int(o.shape[-1]) for o in outs}
        if len(widths) != 1:
            raise ValueError(f"net: the exits output different numbers of classes: {sorted(widths)}")
        c = widths.pop()
        if num_classes is not None and c != num_classes:
            raise ValueError(f"net: the exits output {c} classes but the data has {num_classes}")
        if isinstance(ds, TensorDataset):
            y = ds.tensors[1]
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= c):
                raise ValueError(
                    f"train: labels span [{int(y.min())}, {int(y.max())}] but the exits output {c} classes"
                )
        return c

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def predict_logits(self, ds: Dataset, upto: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
        """Logits of exits 0..upto on ``ds`` in eval mode: an array (K, N, C) and the labels (N,)."""
        was = self.net.training
        self.net.eval()
        outs: list[list[torch.Tensor]] = []
        ys = []
        for x, y, _ in self._batches(ds, self.eval_batch_size):
            z = self.net.forward_exits(x.to(self.device), upto=upto)
            outs.append([t.float().cpu() for t in z])
            ys.append(y)
        self.net.train(was)
        K = len(outs[0])
        logits = np.stack([torch.cat([o[k] for o in outs]).numpy() for k in range(K)])
        return logits, torch.cat(ys).numpy()

    def _accuracies(self, ds: Dataset, upto: int) -> list[float]:
        logits, y = self.predict_logits(ds, upto)
        return [float((logits[k].argmax(1) == y).mean()) for k in range(logits.shape[0])]

    # ------------------------------------------------------------------ trainable sets

    def _trainable_stages(self, k: int) -> list[int]:
        if self.strategy == "joint":
            return list(range(self.net.num_exits))
        tp = self.train_prefix
        if tp == "all":
            return list(range(k + 1))
        if tp == "new_stage":
            return [k]
        if tp == "head":
            return []
        return list(range(max(0, k - int(tp) + 1), k + 1))

    def _setup_stage(self, k: int) -> list[nn.Parameter]:
        net = self.net
        K = net.num_exits
        stages = set(self._trainable_stages(k))
        if self.strategy == "joint":
            heads = set(range(K))
        else:
            heads = {k} | (set(range(k)) if self.train_old_heads else set())
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
        return params

    def _make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)

    # ------------------------------------------------------------------ EWC

    def _fisher_subset(self, train: Dataset, stage: int) -> Dataset:
        n = len(train)
        g = self._stage_gen(stage, salt=1)
        perm = torch.randperm(n, generator=g)
        if self.fisher_samples is not None:
            perm = perm[: self.fisher_samples]
        perm, _ = torch.sort(perm)
        rank, world = _dist.rank_and_world()
        return torch.utils.data.Subset(train, perm[rank::world].tolist())

    def _compute_fisher(self, train: Dataset, j: int) -> tuple[dict, int]:
        """Diagonal Fisher of exit j over parameters_for_exit(j), eval mode, merged over ranks."""
        from ._fisher import fisher_diagonal

        net = self.net
        sub = self._fisher_subset(train, j)
        was = net.training
        net.eval()
        params = net.parameters_for_exit(j)
        req = {n: p.requires_grad for n, p in net.named_parameters()}
        for p in params.values():
            p.requires_grad_(True)

        def batches():
            for x, y, _ in self._batches_subset(sub):
                yield x.to(self.device), y.to(self.device)

        try:
            res = fisher_diagonal(
                net,
                batches(),
                forward=lambda m, x: m.forward_exit(x, j),
                params=params,
                label_mode=self.fisher_label_mode,
                max_samples=None,
                seed=self.seed * 1000 + j,
            )
        finally:
            for n, p in net.named_parameters():
                p.requires_grad_(req[n])
            net.train(was)
        fisher = {n: t.detach().clone() for n, t in res.items()}
        return _dist.all_reduce_fisher(fisher, int(res.n_samples))

    def _batches_subset(self, sub: torch.utils.data.Subset):
        return _batches.subset_batches(sub, self.eval_batch_size)

    def _new_ewc(self):
        from ._ewc import EWC

        return EWC(self.ewc_lambda, mode=self.ewc_mode, gamma=self.ewc_gamma)

    def _ewc_penalty(self) -> torch.Tensor:
        return self._ewc.penalty(self.net)

    # ------------------------------------------------------------------ LwF

    def _record_targets(self, train: Dataset, k: int):
        """Record exits 0..k-1's logits on the training set; returns a reader keyed by sample id."""
        from ..distill import TargetWriter, read_targets

        if self._tmpdir is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="exitnet-lwf-")
        rank, _ = _dist.rank_and_world()
        path = os.path.join(self._tmpdir.name, f"targets_stage{k}_rank{rank}.arrow")
        was = self.net.training
        self.net.eval()
        with TargetWriter(path, num_exits=k, num_classes=self._num_classes) as w:
            with torch.no_grad():
                for x, _, ids in self._batches(train, self.eval_batch_size):
                    z = self.net.forward_exits(x.to(self.device), upto=k - 1)
                    w.write(ids, [t.float().cpu() for t in z])
        self.net.train(was)
        return read_targets(path)

    # ------------------------------------------------------------------ fit

    def fit(
        self,
        train: Any,
        val: Optional[Dataset] = None,
        test: Optional[Dataset] = None,
        *,
        resume: bool = True,
        analyse: bool = True,
    ) -> TrainingResult:
        """Train all exits and evaluate.

        Parameters
        ----------
        train : Dataset or exitnet.data.Splits
            ``(x, y)`` or ``(x, y, ids)`` samples (ids key recorded LwF targets; default the row
            index). A :class:`exitnet.data.Splits` supplies train, val and test at once.
        val : Dataset, optional
            Calibration split for the operating points.
        test : Dataset, optional
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
        """
        num_classes = None
        if hasattr(train, "train") and hasattr(train, "num_classes") and not isinstance(train, Dataset):
            splits = train
            train, val, test = splits.train, splits.val, splits.test
            num_classes = int(splits.num_classes)
            if val is not None and len(val) == 0:
                val = None
        train = self._as_dataset(train, "train")
        val = self._as_dataset(val, "val")
        test = self._as_dataset(test, "test")
        if val is None and test is None:
            raise ValueError("val: need a validation or a test split to evaluate the exits")
        eval_ds = test if test is not None else val
        self.net.to(self.device)
        self._num_classes = self._check_classes(train, num_classes)
        K = self.net.num_exits

        A = np.full((K, K), np.nan)
        history: list[dict] = []
        timings = {"train": 0.0, "fisher": 0.0, "targets": 0.0, "eval": 0.0}
        start_stage = 0
        self._ewc = self._new_ewc() if self.uses_ewc else None
        if resume:
            doc = load_checkpoint(self)
            if doc is not None:
                start_stage = int(doc["completed_stages"])
                for k, row in enumerate(doc["stability"]):
                    A[k, : len(row)] = row
                history = list(doc.get("history", []))
                timings.update(doc.get("timings", {}))
                self._emit({"event": "resume", "completed_stages": start_stage})
        t_all = time.perf_counter()
        try:
            for k in range(start_stage, K):
                self._run_stage(k, train, eval_ds, A, history, timings)
                state = {
                    "completed_stages": k + 1,
                    "stability": [A[i, : i + 1].tolist() for i in range(k + 1)],
                    "history": history,
                    "timings": timings,
                }
                save_checkpoint(self, state)
                self._emit({"event": "stage_end", "stage": k, "accuracy": A[k, : k + 1].tolist()})
        finally:
            for p in self.net.parameters():
                p.requires_grad_(True)
            self.net.eval()
            if self._tmpdir is not None:
                self._tmpdir.cleanup()
                self._tmpdir = None
        timings["total"] = time.perf_counter() - t_all
        res = TrainingResult(
            strategy=self.strategy,
            stability=A,
            history=history,
            timings=dict(timings),
            config=self.config(),
        )
        if analyse and val is not None and test is not None:
            t0 = time.perf_counter()
            res.val_logits, res.val_labels = self.predict_logits(val)
            res.test_logits, res.test_labels = self.predict_logits(test)
            res.costs = self._costs(train)
            res.analyse()
            res.timings["analysis"] = time.perf_counter() - t0
        self._emit({"event": "done", "final_accuracy": A[K - 1].tolist()})
        return res

    def _costs(self, ds: Dataset) -> Optional[np.ndarray]:
        """Cumulative MACs of leaving at each exit (stage_costs), or None if unavailable."""
        try:
            from ._macs import stage_costs
        except ImportError:
            return None
        x0 = ds[0][0].unsqueeze(0).to(self.device)
        was = self.net.training
        self.net.eval()
        try:
            s_macs, h_macs = stage_costs(self.net.stages, self.net.heads, x0)
        finally:
            self.net.train(was)
        return np.cumsum(np.asarray(s_macs, np.float64) + np.asarray(h_macs, np.float64))

    def _run_stage(self, k: int, train: Dataset, eval_ds: Dataset, A: np.ndarray, history: list, timings: dict) -> None:
        net = self.net
        K = net.num_exits
        self._emit({"event": "stage_start", "stage": k, "strategy": self.strategy})
        rank, world = _dist.rank_and_world()
        torch.manual_seed(self.seed * 1_000_003 + k)

        # EWC: consolidate exit k-1 (trained in the previous stage) before training stage k
        if self.uses_ewc and k > 0:
            t0 = time.perf_counter()
            fisher, n = self._compute_fisher(train, k - 1)
            # anchors: the current parameters (θ* at the end of stage k-1); sum/online modes
            # re-anchor every parameter consolidated so far at the latest values
            self._ewc.consolidate(fisher, dict(net.named_parameters()))
            dt = time.perf_counter() - t0
            timings["fisher"] += dt
            self._emit({"event": "fisher", "stage": k, "exit": k - 1, "n_samples": n, "seconds": dt})

        teacher_file = None
        teacher_net = None
        if self.uses_lwf and k > 0:
            t0 = time.perf_counter()
            if self.lwf_targets == "recorded":
                teacher_file = self._record_targets(train, k)
            else:
                teacher_net = copy.deepcopy(net).eval()
                for p in teacher_net.parameters():
                    p.requires_grad_(False)
            dt = time.perf_counter() - t0
            timings["targets"] += dt
            self._emit({"event": "targets", "stage": k, "mode": self.lwf_targets, "seconds": dt})

        params = self._setup_stage(k)
        opt = self._make_optimizer(params)
        need_old = self.strategy == "joint" or (self.uses_lwf and k > 0)
        t0 = time.perf_counter()
        n = len(train)
        bar = None
        if self.progress and rank == 0:
            from tqdm.auto import tqdm

            nb = math.ceil(n / self.batch_size)
            bar = tqdm(total=self.epochs_per_stage * nb, desc=f"{self.strategy} stage {k + 1}/{K}", leave=False)
        try:
            for epoch in range(self.epochs_per_stage):
                g = self._stage_gen(k, salt=2 + epoch)
                perm = torch.randperm(n, generator=g)
                tot = {"loss": 0.0, "ce": 0.0, "ewc": 0.0, "lwf": 0.0}
                nb = 0
                for s in range(0, n, self.batch_size):
                    gidx = perm[s : s + self.batch_size]
                    B = len(gidx)
                    lidx = gidx[rank::world]
                    opt.zero_grad(set_to_none=True)
                    if len(lidx) > 0:
                        x, y, ids = next(self._batches(train, len(lidx), lidx))
                        x, y = x.to(self.device), y.to(self.device)
                        scale = len(lidx) / B  # local share of the global minibatch mean
                        if need_old:
                            outs = net.forward_exits(x, upto=K - 1 if self.strategy == "joint" else k)
                        else:
                            outs = [net.forward_exit(x, k)]
                        if self.strategy == "joint":
                            ce = sum(F.cross_entropy(o, y) for o in outs)
                        else:
                            ce = F.cross_entropy(outs[-1], y)
                        loss = ce * scale
                        lwf_term = torch.zeros(())
                        if self.uses_lwf and k > 0:
                            lwf_term = self._lwf_term(outs[:k], x, ids, teacher_file, teacher_net, k)
                            loss = loss + self.lwf_alpha * lwf_term * scale
                    else:
                        ce = lwf_term = torch.zeros(())
                        loss = torch.zeros((), device=self.device)
                    ewc_term = torch.zeros(())
                    if self.uses_ewc and self._ewc.fishers:
                        ewc_term = self._ewc_penalty()
                        loss = loss + ewc_term / world
                    if loss.requires_grad:
                        loss.backward()
                    _dist.sum_gradients(params)
                    opt.step()
                    tot["loss"] += float(loss.detach()) * world
                    tot["ce"] += float(ce.detach() if torch.is_tensor(ce) else ce)
                    tot["ewc"] += float(ewc_term.detach())
                    tot["lwf"] += float(lwf_term.detach())
                    nb += 1
                    if bar is not None:
                        bar.update(1)
                _dist.broadcast_state(net)
                rec = {"event": "epoch", "stage": k, "epoch": epoch, **{m: v / max(nb, 1) for m, v in tot.items()}}
                history.append({k2: v for k2, v in rec.items() if k2 != "event"})
                self._emit(rec)
        finally:
            if bar is not None:
                bar.close()
            if teacher_file is not None and hasattr(teacher_file, "close"):
                teacher_file.close()
        timings["train"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        acc = self._accuracies(eval_ds, upto=k)
        A[k, : k + 1] = acc
        timings["eval"] += time.perf_counter() - t0

    def _lwf_term(self, student: list[torch.Tensor], x, ids, teacher_file, teacher_net, k: int) -> torch.Tensor:
        from ..distill import kd_loss_torch

        T = self.lwf_temperature
        if teacher_net is not None:
            with torch.no_grad():
                teacher = teacher_net.forward_exits(x, upto=k - 1)
        else:
            teacher = self._lookup(teacher_file, ids)
        total = torch.zeros((), device=self.device)
        for j in range(k):
            total = total + kd_loss_torch(student[j], teacher[j].to(student[j].device), T)
        return total

    def _lookup(self, teacher_file, ids) -> list[torch.Tensor]:
        got = teacher_file.lookup(ids.numpy() if torch.is_tensor(ids) else np.asarray(ids))
        return [torch.as_tensor(np.asarray(g), dtype=torch.float32) for g in got]


