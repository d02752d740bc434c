"""Magnitude criteria: mean filter norm per unit. p=2 is LayerPrune's weight criterion (Eq. 1)."""

from __future__ import annotations

import torch
from torch import nn

from sglp.core.errors import InvalidArgument
from sglp.core.units import prunable_units
from sglp.methods.criteria.base import Batches, UnitCriterion, check_has_filters, filter_weights


def mean_filter_norm(unit: nn.Module, p: float) -> float:
    """(1/F) sum_i ||W[i]||_p over all filters i of all conv/linear layers in the unit (Elkerdawy et al.,
    Eq. 1 for p = 2, with F the unit's total filter count)."""
    norms = [w.detach().flatten(1).norm(p=p, dim=1).double() for w in filter_weights(unit)]
    return torch.cat(norms).mean().item()


class Magnitude(UnitCriterion):
    """Mean L`p` norm of the unit's filters (l1: p=1, l2: p=2 = LayerPrune Eq. 1). Reads no data."""

    def __init__(self, p: float = 2.0) -> None:
        super().__init__(num_batches=0)
        if p <= 0:
            raise InvalidArgument(f"scorer.p={p} must be positive")
        self.p = p

    def unit_importance(self, model: nn.Module, batches: Batches) -> torch.Tensor:
        units = prunable_units(model)
        for name, unit in units:
            check_has_filters(name, unit, f"l{self.p:g} magnitude")
        return torch.tensor([mean_filter_norm(unit, self.p) for _, unit in units])
