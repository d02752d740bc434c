"""Saving and loading weights with metadata; corrupt or mismatched files give a clear error."""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sglp.core.errors import CheckpointError, InvalidArgument


def save_checkpoint(path: str | Path, model: nn.Module, **meta: Any) -> Path:
    """Write {"state_dict", "meta"} atomically (temp file + rename): a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"state_dict": model.state_dict(), "meta": meta}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the file is unusable
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a torch file ({type(e).__name__}). "
            "Fix: delete it and re-create it (`python run.py mode=pretrain ...`), or point `checkpoint=` elsewhere."
        ) from e
    if not isinstance(obj, dict) or "state_dict" not in obj:
        raise CheckpointError(
            f"checkpoint {path} has no 'state_dict': not written by sglp.core.checkpoint.save_checkpoint"
        )
    return obj


def load_weights(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load weights into `model` (strict); returns the checkpoint's metadata."""
    obj = load_checkpoint(path)
    _load_state(model, obj["state_dict"], path)
    return obj.get("meta", {})


def _load_state(model: nn.Module, state: dict, path: str | Path) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise CheckpointError(
            f"checkpoint {path} does not fit {type(model).__name__} ({first}). "
            "Fix: choose the model/dataset it was trained for, or another checkpoint."
        ) from e


# What a pruned model's save records beyond `removed`, replayed in this order by `load_pruned`: meta key ->
# "module:function(model, value)" that redoes it in place. Named, not imported: the methods that write these sit
# above this layer (sglp.methods.channels writes its removal plan).
REPLAYS = {"channel_plan": "sglp.methods.channels.groups:apply_plan"}


def load_pruned(dense: nn.Module, path: str | Path) -> nn.Module:
    """Rebuild a pruned model saved by the pipeline: remove the recorded units from a freshly
    built dense model of the same architecture, replay what else it records (REPLAYS: channel pruning's plan), then
    load the pruned weights."""
    from sglp.core.surgery import remove_layers

    obj = load_checkpoint(path)
    removed = obj.get("meta", {}).get("removed")
    if removed is None:
        raise CheckpointError(f"{path} records no removed units: it is not a pruned model")
    try:
        pruned = remove_layers(dense, removed)
    except InvalidArgument as e:
        raise CheckpointError(f"{path} was pruned from another architecture ({e})") from e
    for key, target in REPLAYS.items():
        if obj["meta"].get(key) is None:
            continue
        module, function = target.split(":")
        try:
            getattr(importlib.import_module(module), function)(pruned, obj["meta"][key])
        except InvalidArgument as e:
            raise CheckpointError(f"{path} was pruned from another architecture ({e})") from e
    _load_state(pruned, obj["state_dict"], path)
    return pruned


def file_digest(paths: list[Path], chunk: int = 1 << 20) -> str:
    """sha256 over the bytes of `paths`, in the given order (names and places do not count)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    return h.hexdigest()
