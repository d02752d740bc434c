"""Feature-map Taylor criterion (Molchanov et al. 2017, the feature-map heuristic LayerPrune cites as [39]),
averaged per unit: the first-order estimate of the loss change when a channel of the unit's output is zeroed."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sglp.core.activations import unit_output_hooks
from sglp.core.modes import eval_mode
from sglp.core.units import prunable_units
from sglp.methods.criteria.base import Batches, UnitCriterion


def channel_saliency(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Per example and channel, |mean over positions of a * g|: (B, C, H, W) or (B, T, D) -> (B, C)."""
    prod = (a * g).double()
    if prod.dim() == 4:
        return prod.mean(dim=(2, 3)).abs()
    if prod.dim() == 3:
        return prod.mean(dim=1).abs()
    return prod.abs()


class FeatureMapTaylor(UnitCriterion):
    """Mean over examples and output channels of |mean_positions(a * dL/da)|, a = the unit's output and L
    the per-example cross-entropy (so examples do not dilute one another), BatchNorm in eval mode."""

    needs_grad = True

    def __init__(self, num_batches: int = 2, batch_size: int = 64) -> None:
        super().__init__(num_batches, batch_size)

    def unit_importance(self, model: nn.Module, batches: Batches) -> torch.Tensor:
        sums = torch.zeros(len(prunable_units(model)), dtype=torch.float64)
        count = 0
        outputs: list[torch.Tensor] = []  # this batch's unit outputs, in unit order
        with eval_mode(model), unit_output_hooks(model, lambda _i, out: outputs.append(out)):
            for x, y in batches:
                outputs.clear()
                loss = F.cross_entropy(model(x), y, reduction="sum")
                grads = torch.autograd.grad(loss, outputs)
                for i, (a, g) in enumerate(zip(outputs, grads)):
                    sums[i] += channel_saliency(a.detach(), g).mean(dim=1).sum()
                count += len(y)
        return sums / count
