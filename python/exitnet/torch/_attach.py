"""attach_exits: cut a researcher's own network (torchvision ResNet, MobileNet, EfficientNet, ...)
into stages with torch.fx and attach an exit head after each cut.

The model is traced once (:mod:`._trace`); every node knows the module it came from. A cut "after
module M" falls after M's last node in graph order. It is valid only when exactly one value
crosses it: M's output. A residual branch that skips over the cut (the identity path of a
``BasicBlock`` when cutting after ``layer1.0.conv1``) would be a second crossing edge; such cuts are
refused with the edge named. Parameters are constants (``get_attr``) and are copied into the stage
that reads them.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch
from torch import fx, nn

from ._model import EarlyExitNet
from ._trace import device_of, first_tensor_input, output_node, scope_of, trace

__all__ = ["attach_exits", "default_head"]

HeadFactory = Callable[[int, tuple], nn.Module]


def default_head(num_classes: int, feature_shape: Sequence[int]) -> nn.Module:
    """Global average pool + Linear for (C, H, W) features; Linear alone for (F,) features."""
    shape = tuple(int(v) for v in feature_shape)
    if len(shape) == 3:
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(shape[0], num_classes))
    if len(shape) == 1:
        return nn.Sequential(nn.Linear(shape[0], num_classes))
    raise ValueError(f"head: no default head for features of shape {shape}; pass head=callable(k, feature_shape)")


class _Cuts:
    """Where each module's cut would fall in one traced graph, and whether it is valid."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.nodes = [n for n in gm.graph.nodes if n.op != "output"]
        self.index = {n: i for i, n in enumerate(self.nodes)}
        out = [n for n in gm.graph.nodes if n.op == "output"][0]
        self.last_use = [i for i in range(len(self.nodes))]
        for i, n in enumerate(self.nodes):
            for u in n.users:
                j = len(self.nodes) if u is out else self.index[u]
                self.last_use[i] = max(self.last_use[i], j)
        self.end: dict[str, int] = {}  # module path -> index of its last node
        for i, n in enumerate(self.nodes):
            s = scope_of(n)
            while s:
                self.end[s] = i
                s = s.rpartition(".")[0]
        self.result = self.index[output_node(gm, "model")]

    def crossing(self, p: int) -> list[fx.Node]:
        """Values computed at or before node p and used after it (get_attr constants excluded)."""
        return [n for i, n in enumerate(self.nodes[: p + 1]) if self.last_use[i] > p and n.op != "get_attr"]

    def problem(self, name: str) -> Optional[str]:
        """None when cutting after module ``name`` is valid, else why not."""
        p = self.end[name]
        if p >= self.result:
            return f"{name!r} computes the model's output, which is already the last exit"
        bad = [n for n in self.crossing(p) if n is not self.nodes[p]]
        if bad:
            n = bad[0]
            user = next(u for u in n.users if u.op == "output" or self.index[u] > p)
            where = scope_of(n) or "the input"
            to = scope_of(user) or "the top level"
            return (f"{name!r} is inside a branch: the edge {n.name} ({where}) -> {user.name} ({to}) "
                    f"crosses the cut after {name!r}")
        if self.nodes[p].op == "placeholder":
            return f"{name!r} runs no operation"
        return None

    def valid_names(self) -> list[str]:
        return [m for m, _ in sorted(self.end.items(), key=lambda kv: kv[1]) if self.problem(m) is None]


def _listing(names: list[str], limit: int = 60) -> str:
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(repr(n) for n in names[:limit]) + more


def _stage(root: nn.Module, nodes: list[fx.Node], inp: fx.Node, out: fx.Node, k: int) -> fx.GraphModule:
    """A GraphModule computing ``out`` from ``inp`` with ``nodes`` (graph order)."""
    g = fx.Graph()
    env: dict[fx.Node, fx.Node] = {inp: g.placeholder("x")}

    def arg(n: fx.Node) -> fx.Node:
        if n not in env:
            if n.op != "get_attr":  # _Cuts guarantees only constants come from earlier stages
                raise AssertionError(f"stage {k}: value {n.name} from an earlier stage")
            env[n] = g.node_copy(n)
        return env[n]

    for n in nodes:
        env[n] = g.node_copy(n, arg)
    g.output(arg(out))
    g.lint()
    return fx.GraphModule(root, g, class_name=f"Stage{k}")


def attach_exits(
    model: nn.Module,
    at: Union[str, Sequence[str]],
    head: Optional[HeadFactory] = None,
    *,
    example_input: torch.Tensor,
) -> EarlyExitNet:
    """Cut ``model`` into stages after the modules named in ``at`` and attach an exit after each.

    Parameters
    ----------
    model : nn.Module
        A classifier whose ``forward`` takes one tensor and returns (N, num_classes) logits, and
        which ``torch.fx.symbolic_trace`` can capture (no Python control flow on tensor values).
        Its modules are shared, not copied: training the result trains ``model``.
    at : str or sequence of str
        Names from ``model.named_modules()`` (``"layer1", "layer2", "layer3"`` for a torchvision
        ResNet; ``"features.3", "features.6", "features.13"`` for MobileNetV2), in execution order.
        An exit is attached after each; the model's own output is the last exit (K = len(at) + 1).
    head : callable ``(k, feature_shape) -> nn.Module``, optional
        Builds exit k's head for features of shape ``feature_shape`` (no batch dimension). Default:
        global average pool + Linear to the model's number of classes.
    example_input : Tensor
        A batch (N, C, H, W) used to find the feature shapes and the number of classes (run once in
        eval mode without gradients) and to check the cut network reproduces the model.

    Returns
    -------
    EarlyExitNet
        Stages are ``torch.fx.GraphModule``s holding ``model``'s submodules under their original
        names (``stages.1.layer1.0.conv1.weight``); the last head is ``nn.Identity``.

    Examples
    --------
    >>> import torch, torchvision
    >>> m = torchvision.models.resnet18(num_classes=10)
    >>> net = attach_exits(m, ["layer1", "layer2"], example_input=torch.zeros(2, 3, 32, 32))
    >>> [tuple(z.shape) for z in net.eval()(torch.zeros(2, 3, 32, 32))]
    [(2, 10), (2, 10), (2, 10)]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    names = [at] if isinstance(at, str) else list(at)
    if not names or not all(isinstance(a, str) for a in names):
        raise TypeError(f"at: expected a module name or a non-empty sequence of module names, got {at!r}")
    if head is not None and not callable(head):
        raise TypeError(f"head: expected None or a callable (k, feature_shape) -> nn.Module, got {type(head).__name__}")
    if not isinstance(example_input, torch.Tensor) or example_input.dim() < 2 or example_input.shape[0] < 1:
        raise ValueError("example_input: expected a batch tensor (N, ...) with N >= 1")

    gm = trace(model)
    inp = first_tensor_input(gm, "model")
    cuts = _Cuts(gm)
    modules = dict(model.named_modules())
    points: list[int] = []
    for a in names:
        if a not in cuts.end:
            why = "is not a module of the model" if a not in modules else "runs no operation in forward"
            raise ValueError(f"at: {a!r} {why}; valid names (in execution order): {_listing(cuts.valid_names())}")
        why = cuts.problem(a)
        if why is not None:
            raise ValueError(f"at: {why}; valid names (in execution order): {_listing(cuts.valid_names())}")
        p = cuts.end[a]
        if points and p <= points[-1]:
            raise ValueError(
                f"at: {a!r} runs before (or within) {names[len(points) - 1]!r}; names must be in execution "
                f"order: {_listing(cuts.valid_names())}")
        points.append(p)

    result = output_node(gm, "model")
    stages: list[nn.Module] = []
    prev, start = inp, 0
    for k, p in enumerate(points + [len(cuts.nodes) - 1]):
        body = [n for n in cuts.nodes[start: p + 1] if n.op not in ("placeholder", "get_attr")]
        out = cuts.nodes[p] if k < len(points) else result
        stages.append(_stage(gm, body, prev, out, k))
        prev, start = out, p + 1

    # feature shapes and classes from one eval pass; the cut net must reproduce the model
    was = [(m, m.training) for m in model.modules()]
    x = example_input.to(device_of(model))
    try:
        model.eval()
        with torch.no_grad():
            ref = model(x)
            shapes: list[tuple] = []
            h = x
            for s in stages:
                h = s(h)
                shapes.append(tuple(h.shape[1:]))
    finally:
        for m, t in was:
            m.train(t)
    if not isinstance(ref, torch.Tensor) or ref.dim() != 2:
        raise ValueError(f"model: forward must return (N, num_classes) logits, got {getattr(ref, 'shape', type(ref))}")
    if not torch.equal(h, ref):
        raise AssertionError("attach_exits: the cut network does not reproduce the model's output (please report)")
    classes = int(ref.shape[1])
    heads: list[nn.Module] = []
    for k in range(len(points)):
        hk = default_head(classes, shapes[k]) if head is None else head(k, shapes[k])
        if not isinstance(hk, nn.Module):
            raise TypeError(f"head: head({k}, {shapes[k]}) returned {type(hk).__name__}, expected an nn.Module")
        heads.append(hk.to(x.device))
    heads.append(nn.Identity())
    net = EarlyExitNet(stages, heads)
    net.input_shape = tuple(int(v) for v in example_input.shape[1:])
    net.train(model.training)
    return net
