"""Random scores (the "without GradNorm" ablation): a seeded hash of the candidate."""

from __future__ import annotations

import random

from torch import nn


class RandomScorer:
    """Deterministic per (seed, candidate): the same candidate always gets the same score,
    whatever the order of evaluation."""

    maximize = True

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def prepare(self, calibration: object, model: nn.Module | None = None) -> None:
        """Reads no data."""

    def __call__(self, model: nn.Module, removed: tuple[int, ...], segment=None, kept=None) -> float:
        return random.Random(f"{self.seed}:{sorted(removed)}").random()
