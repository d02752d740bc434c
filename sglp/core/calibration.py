"""The calibration source every job hands its scorers and criteria: `source(batch_size, num_batches)` -> held-out
(x, y) batches (never the test set)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from sglp.core.errors import InvalidArgument

# calibration(batch_size, num_batches) -> (x, y) batches from the held-out calibration split
CalibrationSource = Callable[[int, int], Iterable[tuple[torch.Tensor, torch.Tensor]]]


class SplitCalibration:
    """A job's calibration source: `source(batch_size, num_batches)` gives batches of the held-out calibration split
    (seeded shuffle, no augmentation); `source.train_per_class(per_class, batch_size)` gives class-balanced training
    examples (what probes are fitted on). Any callable with the first signature is a calibration source too."""

    def __init__(self, data, seed: int = 0) -> None:
        self.data, self.seed = data, seed

    def __call__(self, batch_size: int, num_batches: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return list(self.data.calib_batches(batch_size, num_batches, seed=self.seed))

    def train_per_class(self, per_class: int, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if not hasattr(self.data, "train_per_class"):
            raise InvalidArgument(
                f"{type(self.data).__name__} has no class-balanced training examples: set scorer.fit_per_class=null"
            )
        return list(self.data.train_per_class(per_class, batch_size, seed=self.seed))
