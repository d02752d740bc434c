"""Measurements of the dense model, computed once per (weights, settings) and shared by every run that prunes it.

A sweep prunes one backbone dozens of times; its test accuracy, cost and latency are the same each time. The
cache is one JSON file per key in a folder, the key being a hash of the weights' bytes and of every setting the
measurement depends on (the task's options, dataset, threads, device, torch version, host). Writes are atomic and
merged under a lock, so racing or killed runs leave a readable file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

log = logging.getLogger(__name__)


def machine_settings() -> dict[str, Any]:
    """What a latency or accuracy measurement also depends on besides the task's own options."""
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "host": platform.node(),
            "machine": platform.machine(), "cuda": torch.version.cuda}  # fmt: skip


class DenseCache:
    """`get(weights, name, compute)`: `compute()` once per (weights digest, settings, name), then from disk."""

    def __init__(self, folder: str | Path, settings: Mapping[str, Any]) -> None:
        self.folder = Path(folder)
        self.settings = {**dict(settings), **machine_settings()}

    def key(self, weights: str) -> str:
        blob = json.dumps({"weights": weights, **self.settings}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def path(self, weights: str) -> Path:
        return self.folder / f"{self.key(weights)}.json"

    def load(self, weights: str) -> dict[str, Any]:
        path = self.path(weights)
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text())["values"]
        except (OSError, ValueError, KeyError) as e:  # unreadable: measure again (and rewrite it)
            log.warning("dense cache %s unreadable (%s): measuring again", path, e)
            return {}

    def get(self, weights: str, name: str, compute: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
        """(the values of `name`, whether they came from the cache)."""
        cached = self.load(weights)
        if name in cached:
            log.info("dense %s from the cache %s", name, self.path(weights))
            return cached[name], True
        values = compute()
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(weights)
        with FileLock(str(path) + ".lock"):
            merged = {**self.load(weights), name: values}
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps({"settings": self.settings, "weights": weights, "values": merged}, indent=1))
            os.replace(tmp, path)
        return values, False


class NoCache:
    """Measures every time (no weights digest, or the cache switched off)."""

    def get(self, weights: str | None, name: str, compute: Callable[[], dict[str, Any]]) -> tuple[dict, bool]:
        return compute(), False
