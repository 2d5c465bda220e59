"""Checkpoints of :class:`~exitnet.torch.SequentialTrainer`: weights (tensors only, loaded with
``weights_only=True``) and the trainer state as JSON, written atomically after every stage."""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Any, Optional

import torch

from . import _dist
from ._options import _RUN_DEFAULTS, _RUN_KEYS
from .._io import atomic_write

CHECKPOINT_FORMAT = "exitnet.sequential_trainer/1"


def architecture(tr: Any) -> list:
    return [[n, list(t.shape), str(t.dtype).replace("torch.", "")] for n, t in tr.net.state_dict().items()]


def save_checkpoint(tr: Any, state: dict) -> None:
    """Checkpoint the trainer ``tr`` after a stage (rank 0 only; atomic writes)."""
    d = tr.checkpoint_dir
    if d is None or _dist.rank_and_world()[0] != 0:
        return
    os.makedirs(d, exist_ok=True)
    k = state["completed_stages"]
    tensors: dict[str, torch.Tensor] = {
        "model." + n: t.detach().cpu().clone() for n, t in tr.net.state_dict().items()
    }
    plugin_docs = {}
    for p in tr.plugins:
        own = p.state_tensors()
        clash = sorted(set(own) & set(tensors))
        if clash:
            raise ValueError(f"plugins: {p.name!r} checkpoints tensors named like others: {clash[:3]}")
        tensors.update(own)
        plugin_docs[p.name] = p.state_json()
    wname = f"weights_stage{k}.pt"
    wpath = os.path.join(d, wname)
    with atomic_write(wpath) as f:
        torch.save(tensors, f)
    with open(wpath, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    doc = dict(state)
    doc["format"] = CHECKPOINT_FORMAT
    doc["weights"] = wname
    doc["sha256"] = digest
    doc["plugins"] = plugin_docs
    ewc = plugin_docs.get("ewc", {})  # kept at the top level too, as before the plugins
    doc["ewc_terms"] = int(ewc.get("ewc_terms", 0))
    doc["ewc_consolidations"] = int(ewc.get("ewc_consolidations", 0))
    doc["config"] = tr.config()
    doc["architecture"] = architecture(tr)
    with atomic_write(os.path.join(d, "state.json"), "w") as f:
        json.dump(doc, f, indent=1)
    # older weight files are no longer referenced
    for name in os.listdir(d):
        if name.startswith("weights_stage") and name != wname:
            try:
                os.unlink(os.path.join(d, name))
            except OSError:
                pass


def load_checkpoint(tr: Any) -> Optional[dict]:
    """Restore the model (and EWC state) from ``tr.checkpoint_dir``; the state dict, or None."""
    d = tr.checkpoint_dir
    if d is None:
        return None
    sp = os.path.join(d, "state.json")
    if not os.path.exists(sp):
        return None
    try:
        with open(sp) as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"checkpoint_dir: {sp} is not a readable trainer state ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint_dir: {sp} is not a {CHECKPOINT_FORMAT} checkpoint")
    mine = architecture(tr)
    theirs = doc.get("architecture")
    if theirs != mine:
        diff = _first_difference(theirs or [], mine)
        raise ValueError(
            f"checkpoint_dir: the checkpoint in {d} is from a different architecture ({diff})"
        )
    cfg = doc.get("config", {})
    mycfg = tr.config()
    bad = [k for k in _RUN_KEYS if cfg.get(k, _RUN_DEFAULTS.get(k)) != mycfg.get(k, _RUN_DEFAULTS.get(k))]
    if bad:
        detail = ", ".join(f"{k}: {cfg.get(k)!r} vs {mycfg.get(k)!r}" for k in bad)
        raise ValueError(
            f"checkpoint_dir: the checkpoint in {d} was made with other options ({detail}); "
            "use another directory or fit(resume=False)"
        )
    K = tr.net.num_exits
    w = doc.get("weights")
    done = doc.get("completed_stages")
    rows = doc.get("stability")
    if (
        not isinstance(w, str) or os.path.basename(w) != w or not w.startswith("weights_stage")
        or isinstance(done, bool) or not isinstance(done, int) or not 0 <= done <= K
        or not isinstance(rows, list) or len(rows) != done
        or any(not isinstance(r, list) or len(r) != i + 1 for i, r in enumerate(rows))
    ):
        raise ValueError(f"checkpoint_dir: {sp} is malformed (weights, completed_stages or stability)")
    wpath = os.path.join(d, w)
    try:
        with open(wpath, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ValueError(f"checkpoint_dir: cannot read {wpath} ({e})") from None
    if hashlib.sha256(raw).hexdigest() != doc.get("sha256"):
        raise ValueError(f"checkpoint_dir: {wpath} does not match its recorded sha256")
    tensors = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    model_sd = {n[len("model."):]: t for n, t in tensors.items() if n.startswith("model.")}
    tr.net.load_state_dict(model_sd, strict=True)
    saved = doc.get("plugins")
    for p in tr.plugins:
        pdoc = saved.get(p.name, {}) if isinstance(saved, dict) else doc  # older: top-level ewc_*
        p.load_state(tensors, pdoc, tr.device)
    return doc


def _first_difference(a: list, b: list) -> str:
    if len(a) != len(b):
        return f"{len(a)} tensors in the checkpoint, {len(b)} in the model"
    for x, y in zip(a, b):
        if x != y:
            return f"checkpoint has {x[0]} {x[1]}, the model has {y[0]} {y[1]}"
    return "unknown difference"
