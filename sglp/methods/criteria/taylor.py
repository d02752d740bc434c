"""LayerPrune's Taylor criterion (Elkerdawy et al., Eq. 2): mean over filters of ||G[i] * W[i]||_2."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sglp.core.modes import eval_mode
from sglp.core.units import prunable_units
from sglp.methods.criteria.base import Batches, UnitCriterion, check_has_filters, filter_weights


def loss_gradients(model: nn.Module, batches: Batches, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """Gradient of the mean cross-entropy over all calibration examples with respect to `params`
    (BatchNorm in eval mode, `.grad` untouched)."""
    total = sum(len(y) for _, y in batches)
    grads = [torch.zeros_like(p) for p in params]
    with eval_mode(model):
        for x, y in batches:
            loss = F.cross_entropy(model(x), y, reduction="sum") / total
            for g, d in zip(grads, torch.autograd.grad(loss, params, allow_unused=True)):
                if d is not None:
                    g += d
    return grads


class Taylor(UnitCriterion):
    """Taylor weights: (1/F) sum_i ||G[i] (.) W[i]||_2 over the unit's conv/linear filters, G the gradient
    of the calibration loss (mean cross-entropy over `num_batches` batches)."""

    needs_grad = True

    def __init__(self, num_batches: int = 2, batch_size: int = 64) -> None:
        super().__init__(num_batches, batch_size)

    def unit_importance(self, model: nn.Module, batches: Batches) -> torch.Tensor:
        units = prunable_units(model)
        weights = []
        for name, unit in units:
            check_has_filters(name, unit, "taylor")
            weights.append(list(filter_weights(unit)))
        flat = [w for ws in weights for w in ws]
        grads = iter(loss_gradients(model, batches, flat))
        scores = []
        for ws in weights:
            per_filter = [(next(grads) * w).detach().flatten(1).norm(dim=1).double() for w in ws]
            scores.append(torch.cat(per_filter).mean().item())
        return torch.tensor(scores)
