#!/usr/bin/env python3
"""Writes the golden files of docs/file-format.md into tests/data (run from the repo root
with PYTHONPATH=python; the files are committed, re-run only when the format changes).

For each kind a container-2 file (checksummed, written by the library or the exporter) and a
container-1 file (as earlier releases wrote them: no exitnet.version, no exitnet.file_crc32;
Fisher files: exitnet.format and a CRC-32C in exitnet.file_crc32c), plus golden_expected.json
with the values every reader must return (model logits computed by torch)."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from exitnet import distill, fisher
from exitnet.torch import EarlyExitNet, export

OUT = "tests/data"


def crc32c(data: bytes) -> int:
    tab = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        tab.append(c)
    c = 0xFFFFFFFF
    for b in data:
        c = tab[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def reencode(src: str, dst: str, edit_md) -> None:
    with pa.memory_map(src) as f:
        r = pa.ipc.open_file(f)
        md = edit_md(dict(r.schema.metadata))
        batches = [r.get_batch(i).replace_schema_metadata(md) for i in range(r.num_record_batches)]
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, batches[0].schema) as w:
        for b in batches:
            w.write_batch(b)
    data = bytearray(sink.getvalue().to_pybytes())
    marker = b"EXITNET-CRC32C-"
    if marker in data:  # legacy Fisher checksum: CRC-32C with the digits zeroed
        slots, i = [], 0
        while (j := data.find(marker, i)) >= 0:
            i = j + len(marker)
            slots.append(i)
        for s in slots:
            data[s:s + 8] = b"00000000"
        digits = b"%08x" % crc32c(bytes(data))
        for s in slots:
            data[s:s + 8] = digits
    with open(dst, "wb") as f:
        f.write(data)


def legacy(md):
    md = {k: v for k, v in md.items() if k not in (b"exitnet.version", b"exitnet.file_crc32")}
    return md


def legacy_fisher(md):
    md = legacy(md)
    md[b"exitnet.format"] = md.pop(b"exitnet.kind")
    md[b"exitnet.file_crc32c"] = b"EXITNET-CRC32C-00000000"
    return md


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    exp = {}
    # LwF targets: 5 ids, 2 exits, 3 classes; logits[j][i, c] = j + i / 10 - c
    ids = np.array([2, 3, 5, 7, 11], np.int64)
    logits = [np.array([[j + i / 10 - c for c in range(3)] for i in range(5)], np.float32) for j in range(2)]
    p = f"{OUT}/golden_targets_v2.arrow"
    with distill.TargetWriter(p, num_exits=2, num_classes=3) as w:
        w.write(ids, logits)
    reencode(p, f"{OUT}/golden_targets_v1.arrow", legacy)
    exp["targets"] = {"ids": ids.tolist(), "logits": [x.tolist() for x in logits]}
    # Fisher state: layout w (2, 3), b (3,); fisher/0 = arange/8, anchor/0 = 1 - arange/4
    P = 9
    f0 = (np.arange(P, dtype=np.float32) / 8)
    a0 = (1 - np.arange(P, dtype=np.float32) / 4)
    split = lambda v: {"w": v[:6].reshape(2, 3), "b": v[6:]}  # noqa: E731
    p = f"{OUT}/golden_state_v2.arrow"
    fisher.save_state(p, [split(f0)], [split(a0)], {"n_samples": 10})
    reencode(p, f"{OUT}/golden_state_v1.arrow", legacy_fisher)
    exp["state"] = {"fisher": f0.tolist(), "anchor": a0.tolist(), "meta": {"n_samples": 10}}
    # Fisher accumulator: the squares of rows [1..9] and [2..10] over 2 samples
    a = fisher.FisherAccumulator({"w": (2, 3), "b": (3,)}, label_mode="exact")
    rows = np.stack([np.arange(1, 10), np.arange(2, 11)]).astype(np.float32)
    a.update_rows(rows)
    a.add_samples(2)
    a.save(f"{OUT}/golden_accumulator_v2.arrow")
    exp["accumulator"] = {"compute": ((rows.astype(np.float64) ** 2).sum(0) / 2).tolist(), "label_mode": "exact"}
    # Model: one conv stage, one linear head, seeded; logits by torch for a fixed input
    torch.manual_seed(12)
    net = EarlyExitNet([nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())],
                       [nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 3))]).eval()
    p = export(net, f"{OUT}/golden_model_v2.exitnet", (1, 6, 6))
    reencode(p, f"{OUT}/golden_model_v1.exitnet", legacy)
    x = (np.arange(2 * 36, dtype=np.float32).reshape(2, 1, 6, 6) % 7 - 3) / 3
    with torch.no_grad():
        z = net(torch.from_numpy(x))[-1].numpy()
    exp["model"] = {"input": x.tolist(), "logits": z.tolist()}
    with open(f"{OUT}/golden_expected.json", "w") as f:
        json.dump(exp, f, indent=1)


if __name__ == "__main__":
    main()
