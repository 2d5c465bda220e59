"""Accumulation of the Fisher runner (:class:`._fisher_runner._FisherRunner`): batch after batch,
per-sample factors or rows into the accumulator planned on the first batch."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from . import _fisher_layers as _layers
from ._fisher_layers import _FwdWrapper, _to_acc, feed_factors


class _RunnerStep:
    """The accumulation half of :class:`._fisher_runner._FisherRunner` (a mixin; the state lives there)."""

    # -- accumulation --------------------------------------------------------------------------

    def step(self, batch: Any) -> int:
        """Accumulate one batch; returns its number of samples."""
        if not self._planned:
            raise RuntimeError("internal: step before plan")
        x, y = self._prepare(batch)
        N = int(x.shape[0])
        if self.label_mode == "batched":
            self._step_batched(x, y)
        else:
            self._step_per_sample(x, y)
        self.acc.add_samples(N)
        self.n_seen += N
        return N

    def _step_batched(self, x: Tensor, y: Tensor) -> None:
        logits = self._forward(x)
        labels = next(self._label_passes(logits, y))[0]
        names = [n for n in self.layout if self.methods[n] == "batched"]
        if not names:
            return
        B = x.shape[0]
        gl = self._grad_logits(logits, labels) / B  # mean-reduced loss
        grads = torch.autograd.grad(logits, [self.cand[n] for n in names], gl, allow_unused=True)
        for n, g in zip(names, grads):
            if g is not None:
                self._check_finite(n, g)
                self.acc.update_squared(n, _to_acc(self.acc, g.double() * g.double()), B)

    def _step_per_sample(self, x: Tensor, y: Optional[Tensor]) -> None:
        logits = self._forward(x)
        fired = []
        for s in self.sites:
            if s.calls > 1:
                raise RuntimeError(
                    f"model: module {s.path!r} ran {s.calls} times in this forward but once in the "
                    "first batch (data-dependent control flow); its per-sample factors are ambiguous"
                )
            if s.calls == 1 and s.out is not None:
                if s.inp.shape[0] != x.shape[0] or s.out.shape[0] != x.shape[0]:
                    raise RuntimeError(
                        f"model: {s.path!r} saw a leading dimension of {s.inp.shape[0]} for a batch "
                        f"of {x.shape[0]} samples, unlike in the first batch"
                    )
                if not s.clone and (s.inp._version != s.vin or s.out._version != s.vout):
                    raise RuntimeError(
                        f"model: the input or output of {s.path!r} was modified in place in this "
                        "forward but not in the first batch"
                    )
                fired.append(s)
        passes = list(self._label_passes(logits, y))
        # With several weighted label passes (exact mode), a Linear layer's per-sample gradient
        # g_nc a_nᵀ is rank one and a_n does not depend on the class, so
        #     Σ_c p_nc (g_nc a_nᵀ)² = (Σ_c p_nc g_nc²) (a_n²)ᵀ = H_n (a_n²)ᵀ:
        # H is summed over the passes in torch and Go runs one GEMM per layer instead of C.
        fold = {id(s): None for s in fired if s.kind == "linear" and s.inp.ndim == 2} if len(passes) > 1 else {}
        H: dict[int, Tensor] = {}
        for i, (labels, w_t, w_np) in enumerate(passes):
            last = i == len(passes) - 1
            gl = self._grad_logits(logits, labels)
            if fired:
                grads = torch.autograd.grad(
                    logits, [s.out for s in fired], gl, retain_graph=not last, allow_unused=True
                )
                for s, G in zip(fired, grads):
                    if G is None:
                        continue
                    if id(s) in fold:
                        h = G * G
                        if w_t is not None:
                            h = h * w_t.to(h.dtype).unsqueeze(1)
                        H[id(s)] = h if id(s) not in H else H[id(s)].add_(h)
                    else:
                        feed_factors(self.acc, s.backend or self.backend, s, s.inp, G, w_t, w_np)
            if self.rows:
                self._feed_rows(x, labels, w_np)
        for s in fired:
            h = H.get(id(s))
            if h is not None:
                # update_linear squares its G: hand it √H (exact up to one rounding).
                feed_factors(self.acc, s.backend or self.backend, s, s.inp, h.sqrt_(), None, None)
        for s in self.sites:
            s.clear()

    def _check_finite(self, name: str, t: Tensor) -> None:
        if not torch.isfinite(t).all():
            raise ValueError(f"gradients: NaN or Inf in the gradient of {name!r}")

    def _feed_rows(self, x: Tensor, labels: Tensor, w_np: Optional[np.ndarray]) -> None:
        from torch.func import functional_call, grad, vmap

        wrapper = _FwdWrapper(self.model, self.forward)
        path = self.row_paths
        primal = {path[n]: self.cand[n].detach() for n in self.rows}

        def loss(pr: dict[str, Tensor], xn: Tensor, yn: Tensor) -> Tensor:
            z = functional_call(wrapper, pr, (xn.unsqueeze(0),))
            return -torch.log_softmax(z, dim=-1)[0].gather(0, yn.reshape(1)).sum()

        # Chunk the samples so that at most ~_layers._ROWS_BUDGET gradient values exist at once.
        P = sum(self.cand[n].numel() for n in self.rows)
        step = max(1, min(x.shape[0], _layers._ROWS_BUDGET // max(P, 1)))
        for a in range(0, x.shape[0], step):
            b = min(a + step, x.shape[0])
            try:
                g = vmap(grad(loss), in_dims=(None, 0, 0))(primal, x[a:b], labels[a:b])
            except Exception as e:  # torch.func cannot trace some models
                raise RuntimeError(
                    f"parameters {self.rows} need per-sample gradient rows from torch.func.vmap, "
                    f"which failed on this model: {e}"
                ) from e
            w = None if w_np is None else np.ascontiguousarray(w_np[a:b])
            for n in self.rows:
                r = g[path[n]].reshape(b - a, -1)
                self._check_finite(n, r)
                self.acc.update_rows(_to_acc(self.acc, r), param=n, weights=w)
            del g
