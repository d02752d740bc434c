"""Base class of scorers that read calibration batches."""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from sglp.errors import InvalidArgument

# calibration(batch_size, num_batches) -> (x, y) batches from the held-out calibration split
CalibrationSource = Callable[[int, int], Iterable[tuple[torch.Tensor, torch.Tensor]]]


class CalibrationScorer:
    """Holds `num_batches` calibration batches of `batch_size` examples, prepared once."""

    maximize: bool = True

    def __init__(self, num_batches: int = 1, batch_size: int = 64) -> None:
        self.num_batches, self.batch_size = num_batches, batch_size
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []

    def prepare(self, calibration: CalibrationSource, model: nn.Module | None = None) -> None:
        """Fetch this scorer's batches once: `calibration(batch_size, num_batches)`."""
        batches = calibration(self.batch_size, self.num_batches)
        self.batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in batches]
        if not self.batches:
            raise InvalidArgument(
                f"the scorer got no calibration batch of {self.batch_size} examples: lower scorer.batch_size"
            )

    def __call__(self, model: nn.Module, removed: tuple[int, ...], segment: Sequence[int] | None = None,
                 kept: Sequence[int] | None = None) -> float:
        raise NotImplementedError
