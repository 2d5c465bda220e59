"""exitnet.runtime on format-2 files written here by hand (pyarrow), against torch.

Covers what the runtime adds with format 2, independently of the exporter: stored
preprocessing applied with ``predict(..., raw=True)``, the MACs returned by each
call, temperature refusal, the work bound, and version refusal.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch import nn

from exitnet._errors import ExitnetIOError, InvalidArgumentError, NotSupportedError
from exitnet.runtime import MACS_KEY, Model, max_work_per_sample, set_max_work_per_sample

MEAN, STD = [0.5, -0.25], [0.2, 3.0]


def _write(path, graph: dict, weights: dict, version: str = "2") -> str:
    names = list(weights)
    t = pa.table({
        "name": pa.array(names, pa.string()),
        "shape": pa.array([list(weights[n].shape) for n in names], pa.list_(pa.int32())),
        "data": pa.array([weights[n].detach().double().numpy().astype(np.float32).reshape(-1) for n in names],
                         pa.list_(pa.float32())),
    })
    md = {b"exitnet.kind": b"model", b"exitnet.format_version": version.encode(),
          b"exitnet.graph": json.dumps(graph).encode()}
    t = t.replace_schema_metadata(md)
    with pa.ipc.new_file(str(path), t.schema) as w:
        w.write_table(t)
    return str(path)


@pytest.fixture(scope="module")
def net_and_file(tmp_path_factory):
    """A 2-exit net: stage 0 conv(2→4, 3×3, pad 1) + SiLU, head 0 mean + linear;
    stage 1 conv(4→6, 3×3, stride 2) + ReLU, head 1 flatten + linear. Input 2×7×6."""
    g = torch.Generator().manual_seed(3)
    c0, l0 = nn.Conv2d(2, 4, 3, padding=1), nn.Linear(4, 3)
    c1, l1 = nn.Conv2d(4, 6, 3, stride=2), nn.Linear(6 * 3 * 2, 3)
    for m in (c0, l0, c1, l1):
        for p in m.parameters():
            p.data.copy_(torch.randn(p.shape, generator=g) * 0.5)
    graph = {
        "format_version": 2, "producer": "test_runtime_v2", "input_shape": [2, 7, 6], "num_classes": 3,
        "preprocess": {"mean": MEAN, "std": STD},
        "stages": [
            {"nodes": [{"name": "c0", "op": "conv2d", "inputs": ["input"], "weight": "c0.w", "bias": "c0.b",
                        "padding": [1, 1]},
                       {"name": "a0", "op": "silu", "inputs": ["c0"]}], "output": "a0"},
            {"nodes": [{"name": "c1", "op": "conv2d", "inputs": ["input"], "weight": "c1.w", "bias": "c1.b",
                        "stride": [2, 2]},
                       {"name": "a1", "op": "relu", "inputs": ["c1"]}], "output": "a1"},
        ],
        "heads": [
            {"nodes": [{"name": "m", "op": "mean", "inputs": ["input"], "dims": [2, 3]},
                       {"name": "fc", "op": "linear", "inputs": ["m"], "weight": "l0.w", "bias": "l0.b"}],
             "output": "fc"},
            {"nodes": [{"name": "f", "op": "flatten", "inputs": ["input"]},
                       {"name": "fc", "op": "linear", "inputs": ["f"], "weight": "l1.w", "bias": "l1.b"}],
             "output": "fc"},
        ],
        "costs": {"stages": [4 * 42 * 18, 6 * 6 * 36], "heads": [12, 36 * 3]},
    }
    weights = {"c0.w": c0.weight, "c0.b": c0.bias, "c1.w": c1.weight, "c1.b": c1.bias,
               "l0.w": l0.weight, "l0.b": l0.bias, "l1.w": l1.weight, "l1.b": l1.bias}

    def torch_logits(x: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():
            h0 = nn.functional.silu(c0(x))
            h1 = torch.relu(c1(h0))
            return [l0(h0.mean((2, 3))), l1(h1.flatten(1))]

    d = tmp_path_factory.mktemp("v2")
    path = _write(d / "m.exitnet", graph, weights)
    return torch_logits, path, graph, weights, d


def test_predict_raw_applies_stored_preprocessing(net_and_file):
    torch_logits, path, *_ = net_and_file
    raw = torch.rand(9, 2, 7, 6, generator=torch.Generator().manual_seed(1)) * 4 - 1
    norm = (raw - torch.tensor(MEAN).view(1, 2, 1, 1)) / torch.tensor(STD).view(1, 2, 1, 1)
    want = torch_logits(norm.double().float())
    with Model(path) as m:
        mean, std = m.preprocess
        np.testing.assert_array_equal(mean, np.float32(MEAN))
        np.testing.assert_array_equal(std, np.float32(STD))
        for x in (raw.numpy(), pa.FixedSizeListArray.from_arrays(pa.array(raw.numpy().reshape(-1)), 84)):
            out = m.predict(x, raw=True, return_logits=True, output="numpy")
            for k in range(2):
                w = want[k].numpy()
                np.testing.assert_allclose(out["logits"][k], w, rtol=1e-4, atol=1e-4 * np.abs(w).max())
        # raw=True on raw input equals raw=False on the caller's own normalisation
        a = m.predict(raw.numpy(), raw=True, return_logits=True, output="numpy")["logits"]
        b = m.predict(norm.numpy(), return_logits=True, output="numpy")["logits"]
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_raw_refused_without_preprocessing(net_and_file, tmp_path):
    _, _, graph, weights, _ = net_and_file
    g = dict(graph)
    del g["preprocess"]
    with Model(_write(tmp_path / "np.exitnet", g, weights)) as m:
        assert m.preprocess is None
        with pytest.raises(InvalidArgumentError, match="raw"):
            m.predict(np.zeros((1, 2, 7, 6), np.float32), raw=True)


def test_predict_returns_macs(net_and_file):
    _, path, graph, *_ = net_and_file
    x = np.random.default_rng(2).normal(size=(20, 2, 7, 6)).astype(np.float32)
    with Model(path) as m:
        c = graph["costs"]
        assert m.exit_costs.tolist() == [c["stages"][0] + c["heads"][0], sum(c["stages"]) + sum(c["heads"])]
        assert not hasattr(m, "last_macs")
        z = m.predict(x, return_logits=True, output="numpy")["logits"][0]
        p = np.exp(z - z.max(1, keepdims=True))
        tau = float(np.median((p / p.sum(1, keepdims=True)).max(1)))  # half the samples leave at exit 0
        for out in (m.predict(x, thresholds=tau, output="numpy"),
                    m.predict(pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 84), thresholds=tau,
                              output="numpy")):
            assert out["macs"] == int(m.exit_costs[out["exit"]].sum())
            assert 0 < (out["exit"] == 0).sum() < 20, "want a mix of exits"
        full = m.predict(x, output="numpy")["macs"]
        assert full == 20 * int(m.exit_costs[-1])
        t = m.predict(x, thresholds=tau)
        assert int(t.schema.metadata[MACS_KEY]) == int(m.exit_costs[t.column("exit").to_numpy()].sum())
        t = m.predict(pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 84))
        assert int(t.schema.metadata[MACS_KEY]) == full


@pytest.mark.parametrize("temperature", [0.0, 1e-50, -1.0, float("inf"), float("nan"), 1e39])
def test_temperature_refused(net_and_file, temperature):
    _, path, *_ = net_and_file
    with Model(path) as m:
        with pytest.raises(InvalidArgumentError, match="temperature") as e:
            m.predict(np.zeros((2, 2, 7, 6), np.float32), thresholds=0.5, temperature=temperature)
        if temperature == 1e-50:
            assert "underflows" in str(e.value)


def test_work_bound(net_and_file):
    _, path, *_ = net_and_file
    default = max_work_per_sample()
    assert default == 100_000_000_000
    try:
        set_max_work_per_sample(1000)
        with pytest.raises(ExitnetIOError, match="operations per sample"):
            Model(path)
        with pytest.raises(InvalidArgumentError):
            set_max_work_per_sample(0)
    finally:
        set_max_work_per_sample(default)
    Model(path).close()


def test_versions_and_costs_refused(net_and_file, tmp_path):
    _, _, graph, weights, _ = net_and_file
    g = dict(graph, format_version=3, producer="exitnet 9.9")
    with pytest.raises(NotSupportedError, match=r"format_version 3, written by a newer exitnet \(exitnet 9.9\)"):
        Model(_write(tmp_path / "v3.exitnet", g, weights, version="3"))
    g = dict(graph, costs={"stages": [10, 0], "heads": [0, 0]})
    with pytest.raises(ExitnetIOError, match="stage 0: declared cost 10"):
        Model(_write(tmp_path / "c.exitnet", g, weights))
    g = json.loads(json.dumps(graph))
    g["stages"][1]["nodes"][1]["inputs"] = ["a1"]
    with pytest.raises(ExitnetIOError, match='stage 1 node "a1" \\(relu\\): reads "a1"'):
        Model(_write(tmp_path / "cy.exitnet", g, weights))
