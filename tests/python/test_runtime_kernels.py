"""Model.kernels(): one row per conv2d/linear layer, checked against the file's graph
(node names and ops, in order) and torch forward hooks (per-sample shapes)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
import torch
from torch import nn

from exitnet._errors import InvalidStateError
from exitnet.runtime import LayerKernel, Model
from exitnet.torch import EarlyExitNet
from exitnet.torch._export import export

from test_runtime import every_op_net


def _graph_layers(path) -> list[tuple[str, int, str, str]]:
    """(block, index, node, op) of every conv2d/linear node, stages then heads."""
    g = json.loads(pa.ipc.open_file(str(path)).schema.metadata[b"exitnet.graph"])
    return [(block, k, d["name"], d["op"])
            for block, parts in (("stage", g["stages"]), ("head", g["heads"]))
            for k, part in enumerate(parts) for d in part["nodes"] if d["op"] in ("conv2d", "linear")]


def _hook_shapes(net, shape) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Per-sample (input, output) shapes of every Conv2d/Linear, stages then heads."""
    seen: dict[nn.Module, tuple] = {}

    def hook(m, inp, out):
        seen[m] = (tuple(inp[0].shape[1:]), tuple(out.shape[1:]))

    mods = [m for part in (*net.stages, *net.heads) for m in part.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    hs = [m.register_forward_hook(hook) for m in mods]
    with torch.no_grad():
        net(torch.zeros(1, *shape))
    for h in hs:
        h.remove()
    pad = lambda s: tuple(s) + (1,) * (3 - len(s))  # noqa: E731  linear: (features, 1, 1)
    return [(pad(seen[m][0]), pad(seen[m][1])) for m in mods]


def test_every_op_rows_match_graph_and_torch(tmp_path):
    torch.manual_seed(0)
    net = every_op_net().eval()
    p = export(net, tmp_path / "e.exitnet", (3, 17, 15))
    with Model(p) as m:
        rows = m.kernels()
    assert all(isinstance(r, LayerKernel) for r in rows)
    assert [(r.block, r.index, r.node, r.op) for r in rows] == _graph_layers(p)
    assert [(r.input_shape, r.output_shape) for r in rows] == _hook_shapes(net, (3, 17, 15))
    by_node = {(r.block, r.index, r.node): r.kernel for r in rows}
    # grouped and dilated convolutions take the direct kernel; depthwise its own
    assert by_node[("stage", 0, "_0_3")].startswith("direct 3x3/s1,1/p2,2/d2,2 g2 8→8")
    depthwise = [r for r in rows if r.op == "conv2d" and "depthwise" in r.kernel]
    assert len(depthwise) == 2 and {r.input_shape[0] for r in depthwise} == {8, 12}
    assert all("8px×8ch" in r.kernel for r in depthwise)  # the channel-vectorised kernel, multiplier 2 included
    assert all(r.kernel.startswith("dense ") for r in rows if r.op == "linear")


def test_fused_pool_output_shape(tmp_path):
    """conv → relu → MaxPool2d(2) fused: the row's output shape is the pooled one."""
    net = EarlyExitNet([nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))],
                       [nn.Sequential(nn.Flatten(), nn.Linear(16 * 5 * 5, 3))]).eval()
    p = export(net, tmp_path / "f.exitnet", (1, 11, 11))
    with Model(p) as m:
        conv, lin = m.kernels()
    assert conv.op == "conv2d" and conv.input_shape == (1, 11, 11) and conv.output_shape == (16, 5, 5)
    assert "+relu +maxpool2x2" in conv.kernel
    assert lin == LayerKernel("head", 0, lin.node, "linear", lin.kernel, (400, 1, 1), (3, 1, 1))


def test_closed_model_refused(tmp_path):
    net = every_op_net().eval()
    m = Model(export(net, tmp_path / "e.exitnet", (3, 17, 15)))
    m.close()
    with pytest.raises(InvalidStateError, match="kernels"):
        m.kernels()
