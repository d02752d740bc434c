"""The config resolvers sglp's yamls use, registered with OmegaConf by `register()` (run.py and anything else that
composes `configs/` call it first)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from omegaconf import OmegaConf

from sglp.core.errors import InvalidArgument


def slug(text: str, max_len: int = 100) -> str:
    """`${slug:...}`: a file-name-safe, bounded version of `text` (Hydra override strings can hold paths)."""
    safe = re.sub(r"[^A-Za-z0-9=,._+-]+", "_", str(text)).strip("_")
    return safe[:max_len] or "default"


def pick(options: Sequence[Any], index: int) -> Any:
    """`${pick:${list},${seed}}`: the list's entry at `index` (e.g. one pretrained backbone per seed)."""
    if not 0 <= int(index) < len(options):
        raise InvalidArgument(f"no entry {index} among {len(options)} ({list(options)}): choose 0..{len(options) - 1}")
    return options[int(index)]


def timm_data(name: str, key: str) -> Any:
    """`${timm_data:<timm name>,<key>}`: one entry of timm's preprocessing for that model (image_size, resize, mean,
    std, interpolation: sglp.kinds.classification.models.timm_nets.timm_data_config; timm is imported only when a
    config uses it)."""
    from sglp.kinds.classification.models.timm_nets import timm_data_config

    return timm_data_config(name)[key]


def package_path(relative: str) -> str:
    """`${package_path:<path>}`: a file shipped inside the sglp package (e.g. a model's published config.json), as
    an absolute path wherever the job runs from."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / relative  # sglp/
    if not path.exists():
        raise InvalidArgument(f"${{package_path:{relative}}}: no such file in the sglp package ({path.name})")
    return str(path)


def register() -> None:
    """Register every resolver (idempotent)."""
    for name, fn in (("slug", slug), ("pick", pick), ("timm_data", timm_data), ("package_path", package_path)):
        OmegaConf.register_new_resolver(name, fn, replace=True)
