"""torch.fx tracing shared by :func:`attach_exits` (splitting a model into stages) and
:func:`export` (writing a graph).

The tracer records, for every node, the qualified name of the innermost module whose
``forward`` created it (``node.meta["exitnet_scope"]``), like
``torchvision.models.feature_extraction.NodePathTracer``: that is how a module name given by
the user (``"layer2"``) maps to graph nodes, and how errors name the module a node came from.

Leaf modules (kept as one ``call_module`` node) are fx's defaults (modules defined in
``torch.nn``, except ``nn.Sequential``) plus torchvision's ``StochasticDepth``, whose traced
body would freeze ``self.training`` into the graph. Everything else is traced through, so a
subclass with its own ``forward`` (``class Twice(nn.Sequential)``) is seen as written.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import fx, nn

__all__ = ["UntraceableError", "trace", "scope_of"]

SCOPE = "exitnet_scope"


class UntraceableError(TypeError):
    """The model cannot be captured by torch.fx symbolic tracing."""


def _is_stochastic_depth(m: nn.Module) -> bool:
    t = type(m)
    return t.__name__ == "StochasticDepth" and t.__module__.startswith("torchvision.")


class _Tracer(fx.Tracer):
    def __init__(self) -> None:
        super().__init__()
        self.qualname = ""
        self.failed_scope: Optional[str] = None

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return _is_stochastic_depth(m) or super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        old = self.qualname
        try:
            self.qualname = self.path_of_module(m)
        except NameError:
            pass  # a module created inside forward: keep the caller's scope
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_scope is None:
                self.failed_scope = self.qualname
            raise
        finally:
            self.qualname = old

    def create_proxy(self, kind: str, target: Any, args: Any, kwargs: Any, name: Any = None,
                     type_expr: Any = None, *rest: Any) -> fx.Proxy:
        p = super().create_proxy(kind, target, args, kwargs, name, type_expr, *rest)
        p.node.meta[SCOPE] = self.qualname
        return p


def scope_of(node: fx.Node) -> str:
    """The module path a node came from ("" for the top level)."""
    return str(node.meta.get(SCOPE, ""))


def _describe(module: nn.Module, scope: str) -> str:
    if not scope:
        return f"{type(module).__name__}.forward"
    try:
        sub = module.get_submodule(scope)
        return f"module {scope!r} ({type(sub).__name__})"
    except AttributeError:
        return f"module {scope!r}"


def _trace_once(module: nn.Module, what: str) -> fx.Graph:
    tr = _Tracer()
    try:
        return tr.trace(module)
    except Exception as e:
        where = _describe(module, tr.failed_scope or "")
        raise UntraceableError(
            f"{what}: torch.fx cannot trace {where}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. "
            "Data-dependent control flow (if/for on tensor values) cannot be captured; cut the model "
            "by hand instead: EarlyExitNet(stages, heads) with stages that contain no such code"
        ) from None


def _signature(g: fx.Graph) -> list[tuple[str, str, str, str]]:
    return [(n.op, str(n.target), str(n.args), str(n.kwargs)) for n in g.nodes]


def trace(module: nn.Module, what: str = "model") -> fx.GraphModule:
    """Symbolically trace ``module`` (in its own train/eval mode, which is restored).

    The module is traced in both train and eval mode; if the graphs differ, some ``forward``
    reads ``self.training`` in Python (fx would freeze one branch), and the module is refused,
    naming the module of the first differing node.
    """
    if isinstance(module, fx.GraphModule):
        return module
    modes = [(m, m.training) for m in module.modules()]
    try:
        module.train(True)
        g_train = _trace_once(module, what)
        module.train(False)
        g_eval = _trace_once(module, what)
    finally:
        for m, t in modes:
            m.train(t)
    a, b = _signature(g_train), _signature(g_eval)
    if a != b:
        i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        nodes = list(g_eval.nodes)
        scope = scope_of(nodes[min(i, len(nodes) - 1)])
        raise UntraceableError(
            f"{what}: {_describe(module, scope)} behaves differently in train and eval mode in Python "
            "code (it reads self.training), which torch.fx would freeze into one branch; use nn.Dropout / "
            "BatchNorm modules instead, or cut the model by hand: EarlyExitNet(stages, heads)"
        )
    return fx.GraphModule(module, g_eval, class_name=type(module).__name__)


def first_tensor_input(gm: fx.GraphModule, what: str) -> fx.Node:
    """The single placeholder of a traced module (its one tensor input)."""
    ph = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(ph) != 1:
        raise ValueError(f"{what}: forward must take exactly one tensor input, it takes {len(ph)} ({[n.name for n in ph]})")
    return ph[0]


def output_node(gm: fx.GraphModule, what: str) -> fx.Node:
    """The node whose value a traced module returns (a single tensor)."""
    out = [n for n in gm.graph.nodes if n.op == "output"][0]
    v = out.args[0]
    if not isinstance(v, fx.Node):
        raise ValueError(f"{what}: forward must return one tensor, it returns {type(v).__name__} ({v!r})")
    return v


def device_of(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    if p is None:
        p = next(module.buffers(), None)
    return p.device if p is not None else torch.device("cpu")
