"""Random importance (seeded): the `random` baseline, and SGLP's "without GradNorm" ablation."""

from __future__ import annotations

import torch
from torch import nn

from sglp.core.units import prunable_units
from sglp.methods.criteria.base import Batches, UnitCriterion


class RandomUnits(UnitCriterion):
    """i.i.d. uniform importance per unit from `seed`. Keeping a segment's m highest draws is a uniformly
    random m-subset of the segment, so with one segment this is random layer pruning. Reads no data."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(num_batches=0)
        self.seed = seed

    def unit_importance(self, model: nn.Module, batches: Batches) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed)
        return torch.rand(len(prunable_units(model)), generator=g, dtype=torch.float64)
