"""sglp: similarity-guided layer pruning and its baselines. `sglp.prune(model, calibration, keep=...)` is the one
call; the rest of the library is imported where it is used (importing sglp stays light)."""

from typing import Any

__all__ = ["prune"]


def __getattr__(name: str) -> Any:  # lazy: `import sglp` does not import torch
    if name == "prune":
        from sglp.api import prune

        return prune
    raise AttributeError(f"module 'sglp' has no attribute {name!r}")
