"""LayerPrune's BatchNorm criterion (Elkerdawy et al., Eq. 3): mean over the unit's BN channels of gamma^2."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from sglp.core.errors import InvalidArgument
from sglp.core.units import prunable_units
from sglp.methods.criteria.base import Batches, UnitCriterion


class BNGamma(UnitCriterion):
    """(1/F) sum_i gamma_i^2 over every BatchNorm channel inside the unit (network slimming's saliency
    averaged per layer). Reads no data. Units without BatchNorm cannot be ranked this way."""

    def __init__(self) -> None:
        super().__init__(num_batches=0)

    def unit_importance(self, model: nn.Module, batches: Batches) -> torch.Tensor:
        scores = []
        for name, unit in prunable_units(model):
            gammas = [m.weight.detach().double() for m in unit.modules() if isinstance(m, _BatchNorm) and m.affine]
            if not gammas:
                raise InvalidArgument(f"bn_gamma: unit {name} ({type(unit).__name__}) has no affine BatchNorm")
            scores.append((torch.cat(gammas) ** 2).mean().item())
        return torch.tensor(scores)
