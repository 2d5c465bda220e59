"""Planning of the Fisher runner (:class:`._fisher_runner._FisherRunner`): on the first batch,
decide the path of every parameter (and, with ``backend="auto"``, the faster factor backend per
layer), then build the accumulator."""

from __future__ import annotations

import time
from typing import Any, Optional

import torch
from torch import Tensor

from ._fisher_layers import _close, _Site, _uses_batch_stats, factor_sums, feed_factors
from ._fisher_result import _go


class _RunnerPlan:
    """The planning half of :class:`._fisher_runner._FisherRunner` (a mixin; the state lives there)."""

    # -- planning ------------------------------------------------------------------------------

    def plan(self, batch: Any) -> None:
        """First batch: decide the path of every parameter and build the Go accumulator."""
        x, y = self._prepare(batch)
        N = int(x.shape[0])
        if self.label_mode == "batched":
            logits = self._forward(x)
            labels = next(self._label_passes(logits, y))[0]
            grads = torch.autograd.grad(
                logits, list(self.cand.values()), self._grad_logits(logits, labels), allow_unused=True
            )
            for (n, p), g in zip(self.cand.items(), grads):
                if g is None and not self.explicit:
                    continue
                self.methods[n] = "batched" if g is not None else "unreached"
                self.layout[n] = tuple(p.shape)
            self._make_acc()
            return
        self._install()
        logits = self._forward(x)
        moved = [
            s for s in self.sites
            if s.calls == 1 and s.out is not None
            and (s.inp._version != s.vin or s.out._version != s.vout)
        ]
        if moved:
            # Their input or output is modified in place later in the forward (an inplace ReLU,
            # say): keep a copy of the input and hand the rest of the forward a clone of the
            # output, so the captured factors are the values the layer saw and produced.
            for s in moved:
                s.clone = True
            del logits
            logits = self._forward(x)
        labels = next(self._label_passes(logits, y))[0]
        gl = self._grad_logits(logits, labels)
        fired = [s for s in self.sites if s.calls == 1 and s.out is not None]
        plist = list(self.cand.values())
        grads = torch.autograd.grad(
            logits, [s.out for s in fired] + plist, gl, allow_unused=True
        )
        gouts = dict(zip(map(id, fired), grads[: len(fired)]))
        batched = {n: g for n, g in zip(self.cand, grads[len(fired) :])}
        for n, g in batched.items():
            if g is not None:
                self._check_finite(n, g)
        method: dict[str, str] = {}
        for s in self.sites:
            G = gouts.get(id(s))
            # The layer's leading dimension must be the batch: a layer that sees (N·T, d) rows
            # (a reshape folding time into the batch) or (T, N, d) cannot be split per sample
            # from its factors, although their sum still matches; such layers use rows.
            ok = (s.calls == 1 and s.out is not None and G is not None
                  and s.inp.ndim >= 2 and s.inp.shape[0] == N and s.out.shape[0] == N)
            sums = factor_sums(s, s.inp, G) if ok else {}
            if ok and self.backend_arg == "auto" and self.device.type == "cpu" and self.accumulator == "go":
                s.backend = self._faster_backend(s, s.inp, G)
            for role, n in s.names.items():
                b = batched[n]
                if b is None:
                    method[n] = "unreached"
                elif ok and _close(sums[role], b):
                    method[n] = s.kind if not (s.kind == "linear" and s.inp.ndim > 2) else "linear_seq"
                else:
                    method[n] = "rows"  # called twice, used outside its module, or shared
        sited = {n for s in self.sites for n in s.names.values()}
        for n in self.cand:
            if n not in sited:
                method[n] = "rows" if batched[n] is not None else "unreached"
        for n, p in self.cand.items():
            if method[n] == "unreached" and not self.explicit:
                continue
            self.methods[n] = method[n]
            self.layout[n] = tuple(p.shape)
        if not self.layout:
            raise ValueError("params: no parameter receives gradient from forward's logits")
        # Keep only the sites (and roles) whose parameters take the factor path.
        keep = []
        for s in self.sites:
            s.names = {r: n for r, n in s.names.items() if self.methods.get(n) in ("linear", "linear_seq", "conv2d", "norm")}
            s.clear()
            if s.names:
                keep.append(s)
        self.remove()
        self.sites = keep
        for s in self.sites:
            self.handles.append(s.module.register_forward_hook(self._make_hook(s)))
        for path, m in self.model.named_modules():
            if _uses_batch_stats(m):
                self.handles.append(m.register_forward_hook(self._make_bn_guard(path)))
        self.rows = [n for n, m in self.methods.items() if m == "rows"]
        if self.rows:
            path: dict[int, str] = {}
            for mp, p in self.model.named_parameters(remove_duplicate=False):
                path.setdefault(id(p), "model." + mp)
            self.row_paths = {n: path[id(self.cand[n])] for n in self.rows}
        self._make_acc()

    def _faster_backend(self, s: _Site, A: Tensor, G: Tensor) -> Optional[str]:
        """backend="auto" on the CPU: form this layer's factor products with Go and with torch on
        the first batch (into a scratch accumulator, five interleaved rounds, best wall time of
        each) and keep the faster. Only Linear (2-D input) and Conv2d have both paths."""
        if not (s.kind == "conv2d" or (s.kind == "linear" and A.ndim == 2)):
            return None
        params = dict(s.module.named_parameters(recurse=False))
        layout = {n: tuple(params[r].shape) for r, n in s.names.items()}
        scratch = _go().FisherAccumulator(layout, label_mode="empirical")
        best = {"go": float("inf"), "torch": float("inf")}
        try:
            # five rounds: the minimum of three still picked the slower path for two of the small
            # CNN's convs on a machine at load 25 (each round can be preempted)
            for _ in range(5):
                for b in best:
                    t0 = time.perf_counter()
                    feed_factors(scratch, b, s, A, G, None, None)
                    best[b] = min(best[b], time.perf_counter() - t0)
        finally:
            scratch.close()
        return min(best, key=best.__getitem__)

    def _make_acc(self) -> None:
        if self.accumulator == "torch":
            from ._fisher_accumulator import TorchFisherAccumulator

            self.acc = TorchFisherAccumulator(self.layout, self.label_mode, device=self.device)
        else:
            self.acc = _go().FisherAccumulator(self.layout, label_mode=self.label_mode)
        self._planned = True
