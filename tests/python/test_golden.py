"""Every reader on the golden files of docs/file-format.md (tests/data, written by
scripts/make_golden.py): container version 2 (checksummed) and version 1 (earlier
releases: loaded through the compatibility path), against the recorded values."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from exitnet import _io, distill, fisher, runtime
from exitnet._errors import ExitnetIOError, NotSupportedError

DATA = os.path.join(os.path.dirname(__file__), "..", "data")
EXP = json.load(open(os.path.join(DATA, "golden_expected.json")))


def g(name):
    return os.path.join(DATA, name)


@pytest.mark.parametrize("v", [1, 2])
def test_golden_targets_every_reader(v):
    e = EXP["targets"]
    ids = np.array(e["ids"], np.int64)
    path = g(f"golden_targets_v{v}.arrow")
    assert _io.verify(open(path, "rb").read()) == ("crc32" if v == 2 else "none")
    with distill.TargetStore(path) as st, distill.TargetFile(path) as tf:
        for j in range(2):
            want = np.array(e["logits"][j], np.float32)
            np.testing.assert_array_equal(st.gather(ids, j), want)
            np.testing.assert_array_equal(tf.gather(ids, j), want)


@pytest.mark.parametrize("v", [1, 2])
def test_golden_state(v):
    e = EXP["state"]
    fishers, anchors, meta = fisher.load_state(g(f"golden_state_v{v}.arrow"))
    f = np.concatenate([fishers[0]["w"].reshape(-1), fishers[0]["b"]])
    a = np.concatenate([anchors[0]["w"].reshape(-1), anchors[0]["b"]])
    np.testing.assert_array_equal(f, np.array(e["fisher"], np.float32))
    np.testing.assert_array_equal(a, np.array(e["anchor"], np.float32))
    assert fishers[0]["w"].shape == (2, 3) and meta["n_samples"] == 10


def test_golden_accumulator():
    e = EXP["accumulator"]
    a = fisher.FisherAccumulator.load(g("golden_accumulator_v2.arrow"))
    assert a.layout == {"w": (2, 3), "b": (3,)} and a.label_mode == e["label_mode"]
    c = a.compute()
    np.testing.assert_allclose(np.concatenate([c["w"].reshape(-1), c["b"]]), e["compute"], rtol=1e-6)


@pytest.mark.parametrize("v", [1, 2])
def test_golden_model(v):
    e = EXP["model"]
    x = np.array(e["input"], np.float32)
    with runtime.Model(g(f"golden_model_v{v}.exitnet")) as m:
        out = m.predict(x, return_logits=True, output="numpy")
    z = out["logits"][-1] if isinstance(out["logits"], list) else out["logits"]
    np.testing.assert_allclose(np.asarray(z).reshape(2, 3), np.array(e["logits"]), rtol=1e-5, atol=1e-5)


def test_newer_container_version_is_refused_naming_it(tmp_path):
    import pyarrow as pa

    with pa.memory_map(g("golden_targets_v2.arrow")) as f:
        b = pa.ipc.open_file(f).get_batch(0)
    md = dict(b.schema.metadata)
    md[b"exitnet.version"] = b"3"
    md[_io.CHECKSUM_KEY.encode()] = _io.CHECKSUM_PLACEHOLDER.encode()
    b = b.replace_schema_metadata(md)
    p = str(tmp_path / "v3.arrow")
    with _io.atomic_write(p, sealed=True) as f, pa.ipc.new_file(f, b.schema) as w:
        w.write_batch(b)
    with pytest.raises(NotSupportedError, match="newer exitnet.*exitnet.version = 3"):
        distill.TargetStore(p)
    with pytest.raises(ExitnetIOError, match="newer exitnet"):
        distill.TargetFile(p)
