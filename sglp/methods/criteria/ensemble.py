"""LayerPrune's ensemble (Elkerdawy et al., Eq. 4): the sum over criteria of each unit's rank."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sglp.core.errors import InvalidArgument
from sglp.methods.criteria.base import Batches, UnitCriterion
from sglp.methods.scorers.base import CalibrationSource


def ascending_ranks(values: torch.Tensor) -> torch.Tensor:
    """Rank 0 for the smallest value, L-1 for the largest (ties: the earlier unit ranks lower)."""
    order = sorted(range(len(values)), key=lambda i: (float(values[i]), i))
    ranks = torch.empty(len(values), dtype=torch.float64)
    ranks[order] = torch.arange(len(values), dtype=torch.float64)
    return ranks


class Ensemble(UnitCriterion):
    """ensemble-rank[l] = sum_m LayerRank(m, l), each criterion's ranks ascending in importance, so a larger
    sum is a more important unit."""

    def __init__(self, criteria: Sequence[UnitCriterion]) -> None:
        super().__init__(num_batches=0)
        if not criteria:
            raise InvalidArgument("scorer.criteria is empty: give the criteria to ensemble")
        self.criteria = list(criteria)

    def prepare(self, calibration: CalibrationSource, model: nn.Module | None = None) -> None:
        for c in self.criteria:
            c.prepare(calibration, model)
        super().prepare(calibration, model)

    def unit_importance(self, model: nn.Module, batches: Batches) -> torch.Tensor:
        return sum(ascending_ranks(c.importance) for c in self.criteria)  # type: ignore[arg-type, return-value]
