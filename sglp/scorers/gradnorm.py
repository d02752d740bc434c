"""GradNorm, the SGLP paper's in-segment score for vision (Eq. 24)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sglp.scorers.base import CalibrationScorer


def gradnorm(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Mean over batches of the global L2 norm of the gradient of the mean cross-entropy with
    respect to *all* trainable parameters of `model`:  mean_b || d CE_b / d theta ||_2.

    This is the paper's Eq. 24 (one norm over every parameter), not the zero-cost-NAS variant
    that sums per-layer norms of conv/linear weights. BatchNorm runs in eval mode (running
    statistics), so scoring never changes the shared backbone. `.grad` is left untouched.
    """
    was_training = model.training
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    norms = []
    try:
        for x, y in batches:
            loss = F.cross_entropy(model(x), y)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            norms.append(torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None)).item())
    finally:
        model.train(was_training)
    return sum(norms) / len(norms)


class GradNormScorer(CalibrationScorer):
    """GradNorm of the candidate; `maximize=True` is the paper's rule (Eq. 25: keep the largest)."""

    def __init__(self, num_batches: int = 1, batch_size: int = 64, maximize: bool = True) -> None:
        super().__init__(num_batches, batch_size)
        self.maximize = maximize

    def __call__(self, model: nn.Module, removed: tuple[int, ...]) -> float:
        return gradnorm(model, self.batches)
